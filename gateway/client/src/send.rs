//! Application messages.

use mimi_content::{Message, builder::Builder};
use mimi_proto::codec::{Uri, Wire};
use mimi_proto::components::ids;
use mimi_proto::messages::{Protocol, SubmitMessageRequest};
use mimi_proto::mls::MlsMessage;
use openmls::prelude::*;

use crate::{ClientError, Member, mls};

impl Member {
    /// Encrypts a MIMI content message built by `build(sender_uri, room_uri, salt)`; returns
    /// the SubmitMessageRequest body and the message.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn send(
        &mut self,
        room: &str,
        build: impl FnOnce(&str, &str, [u8; 16]) -> Builder,
    ) -> Result<(Vec<u8>, Message), ClientError> {
        let salt: [u8; 16] = rand::random();
        let msg = build(&self.user, room, salt)
            .build()
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let body = self.send_message(room, &msg)?;
        Ok((body, msg))
    }

    /// Encrypts an already built MIMI message (e.g. translated by a bridge) for `room`; returns
    /// the SubmitMessageRequest. The message's sender must be this member's user.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn send_message(&mut self, room: &str, msg: &Message) -> Result<Vec<u8>, ClientError> {
        if msg
            .content()
            .extensions
            .sender_uri()
            .is_some_and(|s| s != self.user)
        {
            return Err(ClientError::Invalid(format!(
                "the message's senderUri is not {}",
                self.user
            )));
        }
        let salt = msg.content().salt;
        let franking = self.groups.get(room).is_some_and(|g| {
            g.extensions()
                .app_data_dictionary()
                .is_some_and(|d| d.dictionary().get(&ids::SAFE_AAD).is_some())
        });
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self
            .groups
            .get_mut(room)
            .ok_or_else(|| ClientError::NoSuchRoom(room.to_owned()))?;
        if franking {
            let tag = mimi_proto::franking::franking_tag(&salt, msg.bytes());
            group
                .set_safe_aad(vec![SafeAadItem::new(ids::FRANK_AAD, tag.to_vec())])
                .map_err(mls)?;
        }
        let out = group
            .create_message(provider, signer, msg.bytes())
            .map_err(mls)?
            .to_bytes()
            .map_err(mls)?;
        let app_message =
            MlsMessage::from_bytes(&out).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if self.own_messages.len() > 10_000 {
            self.own_messages.clear();
        }
        self.own_messages.insert(out);
        let req = SubmitMessageRequest {
            protocol: Protocol::Mls10,
            app_message,
            sending_uri: Uri::from(self.user.as_str()),
        };
        Ok(req.to_bytes())
    }
}
