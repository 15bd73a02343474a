//! `/submitMessage`: an application message from an active participant allowed to send, in
//! the current epoch or one of the tolerated past ones, franked when the room names this hub
//! as franking agent, stamped and fanned out.

use bytes::Bytes;
use mimi_proto::client_api::DeliveryKind;
use mimi_proto::codec::{Uri, Wire};
use mimi_proto::components::{FrankingAgentData, SafeAad, ids as cid};
use mimi_proto::directory::Endpoint;
use mimi_proto::franking::{ServerFrankingContext, make_frank};
use mimi_proto::messages::{FanoutExtra, FanoutMessage, SubmitMessageRequest, SubmitOutcome};
use mimi_proto::mls::MlsMessageBody;
use mimi_proto::uri::{RoomUri, UserUri};
use openmls_traits::crypto::OpenMlsCrypto;

use super::{Caller, submit_response};
use crate::store::{Table, keys};
use crate::{Engine, Refusal, RequestId, Response};

impl<C: OpenMlsCrypto> Engine<C> {
    pub(crate) fn hub_submit(
        &mut self,
        id: RequestId,
        caller: &Caller,
        room: &RoomUri,
        body: &Bytes,
    ) {
        let req = match SubmitMessageRequest::from_bytes(body) {
            Ok(r) => r,
            Err(e) => return self.refuse(id, Refusal::malformed("SubmitMessageRequest", e)),
        };
        let sender: UserUri = match (&req.sending_uri).try_into() {
            Ok(u) => u,
            Err(e) => return self.refuse(id, Refusal::uri("sendingUri", e)),
        };
        if !caller.speaks_for(&sender) {
            self.stats.hub_refused += 1;
            return self.refuse(id, caller.not_yours(sender.as_str(), "send"));
        }
        let MlsMessageBody::PrivateMessage(pm) = &req.app_message.body else {
            return self.refuse(
                id,
                Refusal::Invalid("appMessage must be an MLS PrivateMessage".into()),
            );
        };
        let Some(r) = self.hub.rooms.get_ref(room) else {
            return;
        };
        if pm.group_id.0 != r.group.group_id().as_slice() {
            return self.refuse_hub(id, Endpoint::SubmitMessage, "message for another group");
        }
        // Authorization before anything that reveals room state (such as its epoch).
        if !r.may_send(&sender) {
            return self.refuse_hub(
                id,
                Endpoint::SubmitMessage,
                "sender is not an active participant allowed to send",
            );
        }
        // A retry of a message this hub accepted (its answer was lost): the same answer.
        let hash = crate::sha256(&req.app_message.to_bytes());
        let seen_key = keys::join(&[room.as_str().as_bytes(), &hash]);
        let seen = match self.step_submissions.get(&seen_key) {
            Some(a) => Ok(Some(a.clone())),
            None => self.store.get(Table::SubmitSeen, &seen_key),
        };
        match seen {
            Ok(Some(answer)) => {
                self.stats.hub_duplicates += 1;
                return self.respond(id, Response::mimi(answer));
            }
            Ok(None) => {}
            Err(e) => return self.store_failed(Some(id), e),
        }
        let current = r.epoch();
        if pm.epoch > current {
            return self.refuse_hub(id, Endpoint::SubmitMessage, "epoch in the future");
        }
        if current - pm.epoch > self.cfg.limits.epoch_tolerance {
            self.stats.hub_refused += 1;
            return self.respond(
                id,
                submit_response(SubmitOutcome::EpochTooOld {
                    current_epoch: current,
                }),
            );
        }
        let now = self.now_ms;
        // Frank when the room names this hub as franking agent and the message carries a tag.
        let frank = r
            .dict_get(cid::FRANKING_AGENT)
            .and_then(|d| FrankingAgentData::from_bytes(&d).ok())
            .filter(|fa| fa.franking_signature_key.0 == self.cfg.hub_signer.public())
            .and_then(|_| {
                let tag = SafeAad::from_authenticated_data(&pm.authenticated_data)
                    .ok()?
                    .0
                    .franking_tag()?;
                let ctx = ServerFrankingContext {
                    sender_uri: Uri::from(&sender),
                    room_uri: Uri::from(room),
                    accepted_timestamp: now,
                };
                make_frank(
                    &self.cfg.franking_key,
                    &self.cfg.hub_signer,
                    r.group.ciphersuite().into(),
                    &tag,
                    ctx,
                )
                .ok()
            });
        let followers = r.followers_now.clone();
        let fanout = FanoutMessage {
            timestamp: now,
            message: req.app_message,
            extra: FanoutExtra::Application {
                frank: frank.clone(),
            },
        };
        self.fan_out(
            room,
            fanout.to_bytes(),
            &followers,
            now,
            DeliveryKind::Application,
            true,
        );
        self.stats.hub_accepted += 1;
        let answer = submit_response(SubmitOutcome::Accepted {
            accepted_timestamp: now,
            frank,
        });
        if let crate::Body::Mimi(b) = &answer.body {
            self.remember_submission(room, seen_key, hash, b.to_vec());
        }
        self.respond(id, answer);
    }

    /// Remembers an accepted submission in the room's window, forgetting the one that falls
    /// out of it.
    fn remember_submission(
        &mut self,
        room: &RoomUri,
        seen_key: Vec<u8>,
        hash: [u8; 32],
        answer: Vec<u8>,
    ) {
        let window = self.cfg.limits.notify_dedup_window.max(1);
        let Some(r) = self.hub.rooms.get_mut(room) else {
            return;
        };
        let n = r.submit_next;
        r.submit_next += 1;
        let rk = room.as_str().as_bytes();
        self.step_submissions
            .insert(seen_key.clone(), answer.clone());
        self.writes.put_raw(Table::SubmitSeen, seen_key, answer);
        self.writes
            .put_raw(Table::SubmitOrder, keys::with_seq(&[rk], n), hash.to_vec());
        if let Some(old_n) = n.checked_sub(window) {
            let old_key = keys::with_seq(&[rk], old_n);
            if let Ok(Some(old_hash)) = self.store.get(Table::SubmitOrder, &old_key) {
                self.writes
                    .delete(Table::SubmitSeen, keys::join(&[rk, &old_hash]));
            }
            self.writes.delete(Table::SubmitOrder, old_key);
        }
    }
}
