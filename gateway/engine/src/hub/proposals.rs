//! `/update` entry point and standalone proposals: each proposal is validated by openmls,
//! attributed to a member whose user the caller speaks for, checked against the room policy
//! with the proposals accepted before it this epoch, then queued and fanned out.

use bytes::Bytes;
use mimi_proto::client_api::DeliveryKind;
use mimi_proto::codec::Wire;
use mimi_proto::components::{ParticipantListUpdate, ids as cid};
use mimi_proto::directory::Endpoint;
use mimi_proto::messages::{FanoutExtra, FanoutMessage, HandshakeBundle, UpdateOutcome};
use mimi_proto::mls::MlsMessage;
use mimi_proto::uri::{RoomUri, UserUri};
use openmls::prelude::{AppDataUpdateOperation, ProcessedMessageContent, Proposal, Sender};
use openmls_traits::crypto::OpenMlsCrypto;

use super::{Caller, update_response, user_of};
use crate::policy;
use crate::store::rows::PendingRow;
use crate::store::{Table, keys};
use crate::{Engine, Refusal, RequestId};

impl<C: OpenMlsCrypto> Engine<C> {
    pub(crate) fn hub_update(
        &mut self,
        id: RequestId,
        caller: &Caller,
        room: &RoomUri,
        body: &Bytes,
    ) {
        let bundle = match HandshakeBundle::from_bytes(body) {
            Ok(b) => b,
            Err(e) => return self.refuse(id, Refusal::malformed("UpdateRequest", e)),
        };
        let Some(r) = self.hub.rooms.get(room) else {
            return;
        };
        let current = r.epoch();
        let msg_epoch = bundle.proposal_or_commit().epoch().unwrap_or(u64::MAX);
        if msg_epoch != current {
            self.stats.hub_refused += 1;
            return self.respond(
                id,
                update_response(
                    UpdateOutcome::WrongEpoch {
                        current_epoch: current,
                    },
                    &format!("the room is at epoch {current}"),
                ),
            );
        }
        if bundle.proposal_or_commit().group_id() != Some(r.group.group_id().as_slice()) {
            return self.refuse_hub(
                id,
                Endpoint::Update,
                "the handshake is for another MLS group",
            );
        }
        match bundle {
            HandshakeBundle::Commit {
                commit,
                welcome,
                group_info_option,
                ratchet_tree_option,
            } => self.hub_commit(
                id,
                caller,
                room,
                &commit,
                welcome,
                group_info_option,
                ratchet_tree_option,
            ),
            HandshakeBundle::Proposal {
                proposal,
                more_proposals,
            } => {
                let mut all = vec![proposal];
                all.extend(more_proposals);
                self.hub_proposals(id, caller, room, all);
            }
        }
    }

    fn hub_proposals(
        &mut self,
        id: RequestId,
        caller: &Caller,
        room: &RoomUri,
        msgs: Vec<MlsMessage>,
    ) {
        let checked = match self.check_proposals(caller, room, &msgs) {
            Ok(c) => c,
            Err(Rejected::Policy(why)) => return self.refuse_hub(id, Endpoint::Update, &why),
            Err(Rejected::Refusal(r)) => {
                self.stats.hub_refused += 1;
                return self.refuse(id, r);
            }
        };
        let now = self.now_ms;
        let Some(r) = self.hub.rooms.get_mut(room) else {
            return;
        };
        let mut list_updates = Vec::with_capacity(checked.len());
        for (qp, lu) in checked {
            if let Err(e) = r.group.add_proposal(&r.storage, qp) {
                let why = format!("cannot queue proposal: {e:?}");
                return self.refuse_hub(id, Endpoint::Update, &why);
            }
            list_updates.push(lu);
        }
        let first = r.pending.len() as u64;
        let mut new_rows = Vec::new();
        for (i, (m, list_update)) in msgs.iter().zip(list_updates).enumerate() {
            let row = PendingRow {
                message: m.to_bytes(),
                accepted_ms: now,
                list_update,
            };
            new_rows.push((first + i as u64, row.clone()));
            r.pending.push(row);
        }
        let followers = r.followers_now.clone();
        for (n, row) in new_rows {
            self.writes.put(
                Table::HubPending,
                keys::with_seq(&[room.as_str().as_bytes()], n),
                &row,
            );
        }
        self.flush_mls(room);
        let fanout = FanoutMessage {
            timestamp: now,
            message: msgs[0].clone(),
            extra: FanoutExtra::Proposal {
                more_proposals: msgs[1..].to_vec(),
            },
        };
        self.fan_out(
            room,
            fanout.to_bytes(),
            &followers,
            now,
            DeliveryKind::Proposal,
            true,
        );
        self.stats.hub_accepted += 1;
        self.respond(
            id,
            update_response(
                UpdateOutcome::Success {
                    accepted_timestamp: now,
                },
                "",
            ),
        );
    }

    /// Validates every proposal; returns each openmls proposal with the participant-list
    /// update it carries.
    fn check_proposals(
        &self,
        caller: &Caller,
        room: &RoomUri,
        msgs: &[MlsMessage],
    ) -> Result<Vec<Checked>, Rejected> {
        let Some(r) = self.hub.rooms.get_ref(room) else {
            return Err(Rejected::Policy("no such room".into()));
        };
        let before = r
            .effective_policy()
            .map_err(|e| Rejected::Policy(e.to_string()))?;
        // (leaf index, user), in leaf order: looked up by binary search, not copied.
        let members = r.member_users();
        let member_at = |leaf: u32| {
            members
                .binary_search_by_key(&leaf, |(i, _)| i.u32())
                .ok()
                .map(|k| &members[k].1)
        };
        let mut policy = (*before).clone();
        let mut out = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            let pm = m
                .to_openmls()
                .ok()
                .and_then(|x| x.try_into_protocol_message().ok())
                .ok_or(())
                .map_err(|_| Rejected::Policy(format!("proposal {i} is not a protocol message")))?;
            let processed = r
                .group
                .process_message(&self.crypto, pm)
                .map_err(|e| Rejected::Policy(format!("proposal {i} is invalid: {e}")))?;
            let actor = user_of(processed.credential()).ok_or_else(|| {
                Rejected::Policy(format!(
                    "proposal {i}: the sender's credential is not a MIMI client URI"
                ))
            })?;
            if !matches!(processed.sender(), Sender::Member(_)) {
                return Err(Rejected::Policy(format!(
                    "proposal {i}: only members may send proposals through /update"
                )));
            }
            if !caller.speaks_for(&actor) {
                return Err(Rejected::Refusal(
                    caller.not_yours(actor.as_str(), "send proposals"),
                ));
            }
            let ProcessedMessageContent::ProposalMessage(qp) = processed.into_content() else {
                return Err(Rejected::Policy(format!("message {i} is not a proposal")));
            };
            let user_str = |u: Option<&Option<UserUri>>| {
                u.and_then(|x| x.as_ref())
                    .map(ToString::to_string)
                    .unwrap_or_default()
            };
            let (mut transitions, mut removes, mut adds, mut list_update) =
                (Vec::new(), Vec::new(), Vec::new(), None);
            match qp.proposal() {
                Proposal::Remove(rp) => removes.push(user_str(member_at(rp.removed().u32()))),
                Proposal::SelfRemove => removes.push(actor.to_string()),
                Proposal::Add(ap) => adds.push(
                    user_of(ap.key_package().leaf_node().credential())
                        .map(|u| u.to_string())
                        .unwrap_or_default(),
                ),
                Proposal::Update(_) | Proposal::PreSharedKey(_) => {}
                Proposal::AppDataUpdate(a) if a.component_id() == cid::PARTICIPANT_LIST => {
                    let AppDataUpdateOperation::Update(d) = a.operation() else {
                        return Err(Rejected::Policy(
                            "the participant list cannot be removed".into(),
                        ));
                    };
                    let upd = ParticipantListUpdate::from_bytes(d.as_slice())
                        .map_err(|e| Rejected::Policy(format!("participant_list update: {e}")))?;
                    let (new, t) = policy
                        .participants
                        .apply(std::slice::from_ref(&upd))
                        .map_err(|e| Rejected::Policy(e.to_string()))?;
                    transitions = t;
                    policy.participants = new;
                    list_update = Some(upd.to_bytes());
                }
                Proposal::AppDataUpdate(_) => {
                    if !before.can(
                        actor.as_str(),
                        mimi_proto::components::capability::CAN_CHANGE_ROLE_DEFINITIONS,
                    ) {
                        return Err(Rejected::Policy(format!(
                            "{actor}'s role may not propose policy changes"
                        )));
                    }
                }
                _ => {
                    return Err(Rejected::Policy(format!(
                        "proposal {i}: this proposal type is not accepted by the hub"
                    )));
                }
            }
            policy::authorize_proposal(
                &before,
                &policy,
                actor.as_str(),
                &transitions,
                &removes,
                &adds,
            )
            .map_err(|e| Rejected::Policy(e.to_string()))?;
            out.push((*qp, list_update));
        }
        Ok(out)
    }
}

/// A validated proposal with the participant-list update it carries.
type Checked = (openmls::prelude::QueuedProposal, Option<Vec<u8>>);

/// Why proposals are refused: by the protocol (200 with UpdateRoomResponse notAllowed) or as
/// an unauthorized request (a 4xx refusal).
enum Rejected {
    Policy(String),
    Refusal(Refusal),
}
