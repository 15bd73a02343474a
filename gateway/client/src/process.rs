//! Processing deliveries: Welcomes, commits, proposals and application messages.

use mimi_content::Message;
use mimi_proto::codec::{Uri, Wire};
use mimi_proto::components::{AppDataOp, FrankingAgentData, ids};
use mimi_proto::messages::{FanoutExtra, FanoutMessage, Frank, RatchetTreeOption};
use mimi_proto::mls::{MlsMessage, MlsMessageBody};
use openmls::component::ComponentData;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;

use crate::{ClientError, Event, Member, join_config, mls, user_of_credential};

impl Member {
    /// Processes one delivery (`kind` and FanoutMessage bytes from the gateway).
    pub fn process(&mut self, room: &str, body: &[u8]) -> Vec<Event> {
        let ignored = |reason: String| {
            vec![Event::Ignored {
                room: room.to_owned(),
                reason,
            }]
        };
        let fm = match FanoutMessage::from_bytes(body) {
            Ok(m) => m,
            Err(e) => return ignored(format!("not a FanoutMessage: {e}")),
        };
        if self.own_messages.remove(&fm.message.to_bytes()) {
            // Our own commit came back in the fan-out: the hub accepted it, even if its answer
            // never reached us.
            let own_commit =
                fm.message.content_type() == Some(mimi_proto::mls::ContentType::Commit);
            let pending = self.joining.contains_key(room)
                || self
                    .groups
                    .get(room)
                    .is_some_and(|g| g.pending_commit().is_some());
            if own_commit && pending {
                return match self.commit_accepted(room) {
                    Ok(()) => vec![Event::Committed {
                        room: room.to_owned(),
                        epoch: self.epoch(room).unwrap_or_default(),
                    }],
                    Err(e) => ignored(e.to_string()),
                };
            }
            return ignored("own message".into());
        }
        match (&fm.message.body, &fm.extra) {
            (
                MlsMessageBody::Welcome(_),
                FanoutExtra::Welcome {
                    ratchet_tree_option,
                },
            ) => self.process_welcome(room, &fm.message, ratchet_tree_option),
            (_, FanoutExtra::Proposal { more_proposals }) if !more_proposals.is_empty() => {
                // Every proposal of the bundle, in order (the commit must reference all).
                let mut out = self.process_group_message(room, &fm);
                for p in more_proposals {
                    let one = FanoutMessage {
                        timestamp: fm.timestamp,
                        message: p.clone(),
                        extra: FanoutExtra::Proposal {
                            more_proposals: Vec::new(),
                        },
                    };
                    if self.own_messages.remove(&one.message.to_bytes()) {
                        continue;
                    }
                    out.extend(self.process_group_message(room, &one));
                }
                out
            }
            _ => self.process_group_message(room, &fm),
        }
    }

    fn process_welcome(
        &mut self,
        room: &str,
        msg: &MlsMessage,
        tree: &RatchetTreeOption,
    ) -> Vec<Event> {
        if self.groups.contains_key(room) {
            return vec![Event::Ignored {
                room: room.to_owned(),
                reason: "already in the room".into(),
            }];
        }
        let result = (|| {
            let MlsMessageBodyIn::Welcome(w) = MlsMessageIn::tls_deserialize_exact(msg.to_bytes())
                .map_err(mls)?
                .extract()
            else {
                return Err(ClientError::Protocol("not a Welcome".into()));
            };
            let tree = match tree {
                RatchetTreeOption::Full { ratchet_tree } => Some(
                    ratchet_tree
                        .to_openmls()
                        .map_err(|e| ClientError::Mls(e.to_string()))?,
                ),
                _ => None,
            };
            let g = StagedWelcome::new_from_welcome(&self.provider, &join_config(), w, tree)
                .map_err(mls)?
                .into_group(&self.provider)
                .map_err(mls)?;
            Ok(g)
        })();
        match result {
            Ok(g) => {
                self.groups.insert(room.to_owned(), g);
                vec![Event::Joined {
                    room: room.to_owned(),
                }]
            }
            // A Welcome for another client of the same provider lands here too.
            Err(e) => vec![Event::Ignored {
                room: room.to_owned(),
                reason: format!("Welcome not for this client: {e}"),
            }],
        }
    }

    fn process_group_message(&mut self, room: &str, fm: &FanoutMessage) -> Vec<Event> {
        let ignored = |reason: String| {
            vec![Event::Ignored {
                room: room.to_owned(),
                reason,
            }]
        };
        let Some(group) = self.groups.get(room) else {
            return ignored("not a member".into());
        };
        if let (Some(e), MlsMessageBody::PublicMessage(_)) = (fm.message.epoch(), &fm.message.body)
            && e < group.epoch().as_u64()
        {
            return ignored(format!("handshake for past epoch {e}"));
        }
        let franking_key = group
            .extensions()
            .app_data_dictionary()
            .and_then(|d| d.dictionary().get(&ids::FRANKING_AGENT))
            .and_then(|b| FrankingAgentData::from_bytes(b).ok())
            .map(|f| f.franking_signature_key.0);
        let protocol = match fm
            .message
            .to_openmls()
            .map_err(|e| e.to_string())
            .and_then(|m| m.try_into_protocol_message().map_err(|e| e.to_string()))
        {
            Ok(p) => p,
            Err(e) => return ignored(e),
        };
        let (provider, signer) = (&self.provider, &self.signer);
        let _ = signer;
        let Some(group) = self.groups.get_mut(room) else {
            return ignored("not a member".into());
        };
        let processed = match group.process_message(provider, protocol) {
            Ok(p) => p,
            Err(e) => return ignored(format!("MLS: {e}")),
        };
        let sender = user_of_credential(processed.credential()).unwrap_or_default();
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => {
                let bytes = app.into_bytes();
                let message = match Message::decode(bytes) {
                    Ok(m) => m,
                    Err(e) => return ignored(format!("not MIMI content: {e}")),
                };
                let id = match message.id_with(&sender, room) {
                    Ok(id) => id,
                    Err(e) => return ignored(e.to_string()),
                };
                let ext = &message.content().extensions;
                if ext.sender_uri().is_some_and(|s| s != sender)
                    || ext.room_uri().is_some_and(|r| r != room)
                {
                    return ignored(
                        "senderUri or roomUri does not match the MLS sender and group".into(),
                    );
                }
                let frank_ok = match (&fm.extra, &franking_key) {
                    (FanoutExtra::Application { frank: Some(f) }, Some(key)) => {
                        Some(check_frank(provider, key, f, &sender, room, fm.timestamp))
                    }
                    (FanoutExtra::Application { frank: Some(_) }, None) => Some(false),
                    _ => None,
                };
                vec![Event::Message {
                    room: room.to_owned(),
                    sender,
                    message,
                    id,
                    timestamp: fm.timestamp,
                    frank_ok,
                }]
            }
            ProcessedMessageContent::ProposalMessage(qp) => {
                match group.store_pending_proposal(provider.storage(), *qp) {
                    Ok(()) => vec![Event::Proposed {
                        room: room.to_owned(),
                    }],
                    Err(e) => ignored(format!("cannot store proposal: {e:?}")),
                }
            }
            ProcessedMessageContent::StagedCommitMessage(sc) => self.merge(room, *sc),
            ProcessedMessageContent::UnresolvedAppDataCommit(u) => {
                let ops: Vec<(u16, AppDataOp)> = u
                    .app_data_update_proposals()
                    .map(|p| {
                        (
                            p.component_id(),
                            match p.operation() {
                                AppDataUpdateOperation::Update(d) => {
                                    AppDataOp::Update(d.as_slice().to_vec())
                                }
                                AppDataUpdateOperation::Remove => AppDataOp::Remove,
                            },
                        )
                    })
                    .collect();
                let Some(group) = self.groups.get(room) else {
                    return ignored("not a member".into());
                };
                let mut updater = group.app_data_dictionary_updater();
                let resolved = match mimi_proto::components::resolve_app_data(
                    |id| updater.old_value(id).map(<[u8]>::to_vec),
                    &ops,
                ) {
                    Ok(r) => r,
                    Err(e) => return ignored(e),
                };
                for (id, v) in resolved.changes {
                    match v {
                        Some(d) => updater.set(ComponentData::from_parts(id, d.into())),
                        None => updater.remove(&id),
                    }
                }
                let changes = updater.changes();
                match group.stage_app_data_commit(&self.provider, *u, changes) {
                    Ok(sc) => self.merge(room, sc),
                    Err(e) => ignored(format!("cannot stage commit: {e}")),
                }
            }
            ProcessedMessageContent::ExternalJoinProposalMessage(_) => {
                ignored("external join proposals are not used".into())
            }
            ProcessedMessageContent::OwnPendingCommit
            | ProcessedMessageContent::OwnPrivateMessage => ignored("own message".into()),
        }
    }

    fn merge(&mut self, room: &str, sc: StagedCommit) -> Vec<Event> {
        let removed = sc.self_removed();
        let provider = &self.provider;
        let Some(group) = self.groups.get_mut(room) else {
            return vec![];
        };
        if let Err(e) = group.merge_staged_commit(provider, sc) {
            return vec![Event::Ignored {
                room: room.to_owned(),
                reason: format!("cannot merge: {e:?}"),
            }];
        }
        if removed {
            self.groups.remove(room);
            return vec![Event::Removed {
                room: room.to_owned(),
            }];
        }
        vec![Event::Committed {
            room: room.to_owned(),
            epoch: group.epoch().as_u64(),
        }]
    }
}

fn check_frank(
    provider: &crate::Provider,
    key: &[u8],
    frank: &Frank,
    sender: &str,
    room: &str,
    ts: u64,
) -> bool {
    let ctx = mimi_proto::franking::ServerFrankingContext {
        sender_uri: Uri::from(sender),
        room_uri: Uri::from(room),
        accepted_timestamp: ts,
    };
    mimi_proto::franking::verify_frank(provider.crypto(), key, frank, &ctx).is_ok()
}
