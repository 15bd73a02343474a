//! The hub side: rooms hosted by this provider, each tracked by an openmls `PublicGroup` (no
//! group secrets), with the MIMI room policy enforced on every handshake, accepted timestamps,
//! franking, GroupInfo for external joins, KeyPackage proxying and fan-out.

use std::collections::{BTreeMap, BTreeSet};

use mimi_proto::codec::{Bytes, Uri, Wire};
use mimi_proto::components::{
    AppDataOp, FrankingAgentData, ParticipantListUpdate, SafeAad, ids as cid,
};
use mimi_proto::directory::Endpoint;
use mimi_proto::franking::{
    ServerFrankingContext, franking_tag, hub_recognises, make_frank, verify_frank,
};
use mimi_proto::messages::{
    AbuseReport, FanoutExtra, FanoutMessage, GroupInfoCode, GroupInfoOption,
    GroupInfoRatchetTreeTbe, GroupInfoRequest, GroupInfoResponse, GroupInfoSuccess,
    HandshakeBundle, KeyMaterialRequest, KeyMaterialResponse, PendingProposal, Protocol,
    RatchetTreeOption, SubmitMessageRequest, SubmitMessageResponse, SubmitOutcome, UpdateOutcome,
    UpdateRoomResponse,
};
use mimi_proto::mls::{ExternalSender, GroupInfo, MlsMessage, MlsMessageBody, RatchetTree};
use openmls::component::ComponentData;
use openmls::messages::group_info::VerifiableGroupInfo;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{
    AppDataUpdateOperation, BasicCredential, Credential, GroupId, LeafNodeIndex,
    ProcessedMessageContent, Proposal, ProposalStore, PublicGroup, PublicProcessMessageError,
    RatchetTreeIn, Sender, ValidationError,
};
use openmls_memory_storage::MemoryStorage;
use serde_json::json;

use crate::policy::{self, Change, Refusal, RoomPolicy};
use crate::state::{AbuseRecord, ClientRecord, HubRoomRecord, decode, keys};
use crate::{Engine, Output, Pending, RequestId, Response, ids};

/// Who is asking: a peer provider (authenticated by certificate) or a local client.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// A federation peer.
    Peer(String),
    /// A client of this provider.
    Local(ClientRecord),
}

impl Caller {
    fn label(&self) -> String {
        match self {
            Self::Peer(p) => format!("provider {p}"),
            Self::Local(c) => format!("client {}", c.client_uri),
        }
    }

    /// Whether this caller may speak for `user`.
    fn speaks_for(&self, user: &str) -> bool {
        match self {
            Self::Peer(p) => ids::domain_of(user) == Some(p.as_str()),
            Self::Local(c) => c.user == user,
        }
    }
}

/// One hosted room.
pub(crate) struct HubRoom {
    pub(crate) rec: HubRoomRecord,
    storage: MemoryStorage,
    group: PublicGroup,
}

impl std::fmt::Debug for HubRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubRoom")
            .field("room", &self.rec.room_id)
            .field("epoch", &self.group.group_context().epoch().as_u64())
            .finish_non_exhaustive()
    }
}

/// Everything the hub side keeps.
#[derive(Debug, Default)]
pub(crate) struct HubState {
    pub(crate) rooms: BTreeMap<String, HubRoom>,
    loading: BTreeMap<String, HubRoomRecord>,
    abuse_reports: usize,
}

fn storage_blob(s: &MemoryStorage) -> Vec<u8> {
    let values = s.values.read().map(|v| v.clone()).unwrap_or_default();
    let mut entries: Vec<_> = values.into_iter().collect();
    entries.sort();
    let mut out = Vec::new();
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (k, v) in entries {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(&k);
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(&v);
    }
    out
}

fn storage_from_blob(b: &[u8]) -> Option<MemoryStorage> {
    fn chunk<'a>(b: &'a [u8], p: &mut usize) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(b.get(*p..*p + 4)?.try_into().ok()?) as usize;
        *p += 4;
        let s = b.get(*p..*p + len)?;
        *p += len;
        Some(s)
    }
    let n = u32::from_be_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    let mut p = 4;
    let mut map = std::collections::HashMap::with_capacity(n.min(b.len() / 8));
    for _ in 0..n {
        let k = chunk(b, &mut p)?.to_vec();
        let v = chunk(b, &mut p)?.to_vec();
        map.insert(k, v);
    }
    (p == b.len()).then_some(())?;
    let s = MemoryStorage::default();
    if let Ok(mut w) = s.values.write() {
        *w = map;
    }
    Some(s)
}

impl HubState {
    pub(crate) fn restore_record(&mut self, key: &str, v: &[u8]) -> bool {
        if let Some(room) = key.strip_prefix(keys::HUB_ROOM) {
            let Some(r) = decode::<HubRoomRecord>(v) else {
                return false;
            };
            self.loading.insert(room.to_owned(), r);
        } else if key.starts_with(keys::ABUSE) {
            self.abuse_reports += 1;
        }
        true
    }

    pub(crate) fn restore_mls(&mut self, key: &str, blob: &[u8]) -> Result<(), String> {
        let room = key.strip_prefix(keys::HUB_MLS).unwrap_or_default();
        let rec = self.loading.remove(room).ok_or("no room record")?;
        let storage = storage_from_blob(blob).ok_or("corrupt MLS storage blob")?;
        let gid = GroupId::from_slice(&hex::decode(&rec.group_id).map_err(|e| e.to_string())?);
        let group = PublicGroup::load(&storage, &gid)
            .map_err(|e| format!("{e:?}"))?
            .ok_or("group not in storage")?;
        self.rooms.insert(
            room.to_owned(),
            HubRoom {
                rec,
                storage,
                group,
            },
        );
        Ok(())
    }
}

/// The credential identity of a BasicCredential.
fn identity(c: &Credential) -> Option<Vec<u8>> {
    BasicCredential::try_from(c.clone())
        .ok()
        .map(|b| b.identity().to_vec())
}

fn user_of(c: &Credential) -> Option<String> {
    identity(c).and_then(|i| ids::user_of_identity(&i))
}

fn update_response(outcome: UpdateOutcome, description: &str) -> Response {
    Response::mimi(
        UpdateRoomResponse {
            error_description: description.into(),
            outcome,
        }
        .to_bytes(),
    )
}

fn submit_response(outcome: SubmitOutcome) -> Response {
    Response::mimi(
        SubmitMessageResponse {
            protocol: Protocol::Mls10,
            outcome,
        }
        .to_bytes(),
    )
}

impl HubRoom {
    fn dict_get(&self, id: u16) -> Option<Vec<u8>> {
        self.group
            .group_context()
            .extensions()
            .app_data_dictionary()
            .and_then(|d| d.dictionary().get(&id))
            .map(<[u8]>::to_vec)
    }

    fn policy(&self) -> Result<RoomPolicy, String> {
        policy::read_policy(|id| self.dict_get(id))
    }

    /// The policy with accepted-but-uncommitted participant-list proposals applied.
    fn effective_policy(&self) -> Result<RoomPolicy, String> {
        let mut p = self.policy()?;
        let updates: Vec<ParticipantListUpdate> = self
            .rec
            .pending_list_updates
            .iter()
            .filter_map(|h| ParticipantListUpdate::from_bytes(&hex::decode(h).ok()?).ok())
            .collect();
        if !updates.is_empty() {
            p.participants = p.participants.apply(&updates).map_err(|e| e.to_string())?.0;
        }
        Ok(p)
    }

    fn member_users(&self) -> Vec<(LeafNodeIndex, String)> {
        self.group
            .members()
            .map(|m| (m.index, user_of(&m.credential).unwrap_or_default()))
            .collect()
    }

    /// Providers to fan out to: domains of current members and participants, excluding ours.
    fn follower_domains(&self, ours: &str) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self
            .member_users()
            .into_iter()
            .filter_map(|(_, u)| ids::domain_of(&u).map(str::to_owned))
            .collect();
        if let Ok(p) = self.policy() {
            out.extend(
                p.participants
                    .participants
                    .iter()
                    .filter_map(|x| ids::domain_of(x.user.as_str()).map(str::to_owned)),
            );
        }
        out.remove(ours);
        out
    }

    fn epoch(&self) -> u64 {
        self.group.group_context().epoch().as_u64()
    }
}

/// What a commit's AppDataUpdate proposals do: the dictionary changes for openmls, the
/// participant-list transitions and the other components touched.
type Resolved = (
    Option<openmls::prelude::AppDataUpdates>,
    Vec<mimi_proto::components::RoleTransition>,
    BTreeSet<u16>,
);

/// Applies a commit's AppDataUpdate proposals to the group's dictionary (the rule itself is
/// `mimi_proto::components::resolve_app_data`).
fn resolve_app_data(
    group: &PublicGroup,
    proposals: &[(u16, AppDataUpdateOperation)],
) -> Result<Resolved, String> {
    let ops: Vec<(u16, AppDataOp)> = proposals
        .iter()
        .map(|(id, op)| {
            (
                *id,
                match op {
                    AppDataUpdateOperation::Update(d) => AppDataOp::Update(d.as_slice().to_vec()),
                    AppDataUpdateOperation::Remove => AppDataOp::Remove,
                },
            )
        })
        .collect();
    let mut updater = group.app_data_dictionary_updater();
    let resolved = mimi_proto::components::resolve_app_data(
        |id| updater.old_value(id).map(<[u8]>::to_vec),
        &ops,
    )?;
    for (id, v) in resolved.changes {
        match v {
            Some(d) => updater.set(ComponentData::from_parts(id, d.into())),
            None => updater.remove(&id),
        }
    }
    Ok((updater.changes(), resolved.transitions, resolved.touched))
}

impl Engine {
    fn external_sender(&self) -> ExternalSender {
        ExternalSender {
            signature_key: Bytes(self.cfg.hub_signer.public().to_vec()),
            credential: mimi_proto::mls::Credential::basic(self.cfg.domain.as_bytes()),
        }
    }

    pub(crate) fn hub_info(&mut self, id: RequestId) {
        let es = self.external_sender();
        let body = json!({
            "domain": self.cfg.domain,
            "external_sender": hex::encode(es.to_bytes()),
            "signature_key": hex::encode(&es.signature_key.0),
            "signature_scheme": "ed25519",
        });
        self.respond(id, Response::json(200, &body));
    }

    fn persist_room(&mut self, room: &str) {
        let Some(r) = self.hub.rooms.get(room) else {
            return;
        };
        let rec = r.rec.clone();
        let blob = storage_blob(&r.storage);
        self.writes.put(format!("{}{room}", keys::HUB_ROOM), &rec);
        self.writes
            .put_raw(format!("{}{room}", keys::HUB_MLS), blob);
    }

    pub(crate) fn hub_create_room(
        &mut self,
        id: RequestId,
        client: &ClientRecord,
        room: &str,
        group_info: &[u8],
        ratchet_tree: &[u8],
    ) {
        if !ids::is_room_uri(room) || ids::domain_of(room) != Some(self.cfg.domain.as_str()) {
            return self.respond(
                id,
                Response::text(
                    400,
                    format!(
                        "{room} is not a room URI of this hub (mimi://{}/r/<id>)",
                        self.cfg.domain
                    ),
                ),
            );
        }
        if self.hub.rooms.contains_key(room) {
            return self.respond(
                id,
                Response::text(409, format!("room {room} already exists")),
            );
        }
        let vgi = match VerifiableGroupInfo::tls_deserialize_exact(group_info) {
            Ok(v) => v,
            Err(e) => {
                return self.respond(
                    id,
                    Response::text(400, format!("group_info is not a GroupInfo: {e}")),
                );
            }
        };
        let tree = match RatchetTreeIn::tls_deserialize_exact(ratchet_tree) {
            Ok(t) => t,
            Err(e) => {
                return self.respond(
                    id,
                    Response::text(400, format!("ratchet_tree is not a ratchet tree: {e}")),
                );
            }
        };
        let storage = MemoryStorage::default();
        let group = match PublicGroup::from_external(
            &self.crypto,
            &storage,
            tree,
            vgi,
            ProposalStore::new(),
        ) {
            Ok((g, _)) => g,
            Err(e) => {
                return self.respond(
                    id,
                    Response::text(
                        400,
                        format!("the GroupInfo and tree do not form a valid group: {e:?}"),
                    ),
                );
            }
        };
        // The hub must be external sender 0, and the MIMI components must be present.
        let es = self.external_sender().to_bytes();
        let first_es = group
            .group_context()
            .extensions()
            .external_senders()
            .and_then(|x| x.first())
            .and_then(|e| e.tls_serialize_detached().ok());
        if first_es.as_deref() != Some(es.as_slice()) {
            return self.respond(id, Response::text(400, "the group's external_senders extension must list this hub first (see GET /client/v1/hub)"));
        }
        let room_state = HubRoom {
            rec: HubRoomRecord::default(),
            storage,
            group,
        };
        let policy = match room_state.policy() {
            Ok(p) => p,
            Err(e) => return self.respond(id, Response::text(400, e)),
        };
        let members = room_state.member_users();
        if members.iter().any(|(_, u)| *u != client.user) {
            return self.respond(
                id,
                Response::text(
                    400,
                    "a new room's MLS group may only contain the creator's clients",
                ),
            );
        }
        if !policy
            .participants
            .participants
            .iter()
            .any(|p| p.user.as_str() == client.user)
        {
            return self.respond(
                id,
                Response::text(
                    400,
                    format!(
                        "the creator {} must be in the participant list",
                        client.user
                    ),
                ),
            );
        }
        let group_id = room_state.group.group_id().as_slice().to_vec();
        let mut rs = room_state;
        rs.rec = HubRoomRecord {
            room_id: room.to_owned(),
            group_id: hex::encode(&group_id),
            created_ms: self.now_ms,
            group_info: hex::encode(group_info),
            ..Default::default()
        };
        let epoch = rs.epoch();
        self.hub.rooms.insert(room.to_owned(), rs);
        self.persist_room(room);
        self.subscribe(&client.client_id, room, true);
        self.respond(
            id,
            Response::json(
                201,
                &json!({"room": room, "group_id": hex::encode(group_id), "epoch": epoch}),
            ),
        );
    }

    /// `/update`, `/submitMessage`, `/groupInfo`, `/reportAbuse`: handled here when the room is
    /// hosted here, forwarded to the room's hub for local clients otherwise.
    pub(crate) fn hub_request(
        &mut self,
        id: RequestId,
        caller: &Caller,
        endpoint: Endpoint,
        room: &str,
        body: &[u8],
    ) {
        if !ids::is_room_uri(room) {
            return self.respond(
                id,
                Response::text(
                    400,
                    format!("{room} is not a room URI (mimi://domain/r/id)"),
                ),
            );
        }
        if !self.hub.rooms.contains_key(room) {
            let hub = ids::domain_of(room).unwrap_or_default().to_owned();
            return match caller {
                Caller::Local(_) if hub != self.cfg.domain => {
                    let why = Pending::Relay {
                        reply_to: id,
                        endpoint,
                        room: Some(room.to_owned()),
                        target_domain: hub.clone(),
                    };
                    self.send(&hub, endpoint, room, body.to_vec(), why);
                }
                _ if endpoint == Endpoint::GroupInfo => {
                    let resp = GroupInfoResponse {
                        version: Protocol::Mls10,
                        room_id: Uri::from(room),
                        status: GroupInfoCode::NoSuchRoom,
                        success: None,
                    };
                    self.respond(id, Response::mimi(resp.to_bytes()));
                }
                _ => self.respond(
                    id,
                    Response::text(404, format!("no room {room} on this hub")),
                ),
            };
        }
        match endpoint {
            Endpoint::Update => self.hub_update(id, caller, room, body),
            Endpoint::SubmitMessage => self.hub_submit(id, caller, room, body),
            Endpoint::GroupInfo => self.hub_group_info(id, caller, room, body),
            Endpoint::ReportAbuse => self.hub_report_abuse(id, caller, room, body),
            _ => self.respond(id, Response::text(404, "not a room endpoint")),
        }
    }

    fn refuse(&mut self, id: RequestId, endpoint: Endpoint, why: &str) {
        self.stats.hub_refused += 1;
        let r = match endpoint {
            Endpoint::SubmitMessage => submit_response(SubmitOutcome::NotAllowed),
            _ => update_response(UpdateOutcome::NotAllowed, why),
        };
        self.respond(id, r);
    }

    /// Fails when a follower's outbox is full (the hub cannot promise delivery).
    fn outbox_full(&self, followers: &BTreeSet<String>) -> Option<String> {
        followers
            .iter()
            .find(|f| self.outboxes.depth(f) >= self.cfg.limits.max_outbox_per_follower)
            .cloned()
    }

    /// Queues one FanoutMessage for `followers` and delivers it to local subscribers.
    fn fan_out(&mut self, room: &str, m: &FanoutMessage, followers: &BTreeSet<String>) {
        let bytes = m.to_bytes();
        for f in followers {
            let mut w = std::mem::take(&mut self.writes);
            self.outboxes.push(f, room, &bytes, &mut w);
            self.writes = w;
        }
        self.route_fanout(room, m, &bytes);
    }

    fn hub_update(&mut self, id: RequestId, caller: &Caller, room: &str, body: &[u8]) {
        let bundle = match HandshakeBundle::from_bytes(body) {
            Ok(b) => b,
            Err(e) => {
                return self.respond(
                    id,
                    Response::text(400, format!("malformed UpdateRequest: {e}")),
                );
            }
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
            return self.refuse(
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
            } => {
                self.hub_commit(
                    id,
                    caller,
                    room,
                    &commit,
                    welcome,
                    group_info_option,
                    ratchet_tree_option,
                );
            }
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

    fn hub_proposals(&mut self, id: RequestId, caller: &Caller, room: &str, msgs: Vec<MlsMessage>) {
        let Some(r) = self.hub.rooms.get(room) else {
            return;
        };
        let before = match r.effective_policy() {
            Ok(p) => p,
            Err(e) => return self.refuse(id, Endpoint::Update, &e),
        };
        let members: BTreeMap<u32, String> = r
            .member_users()
            .into_iter()
            .map(|(i, u)| (i.u32(), u))
            .collect();
        let mut queued = Vec::new();
        let mut list_updates = Vec::new();
        let mut policy = before.clone();
        for (i, m) in msgs.iter().enumerate() {
            let Ok(pm) = m
                .to_openmls()
                .and_then(|x| x.try_into_protocol_message().map_err(|e| e.to_string()))
            else {
                return self.refuse(
                    id,
                    Endpoint::Update,
                    &format!("proposal {i} is not a protocol message"),
                );
            };
            let processed = match r.group.process_message(&self.crypto, pm) {
                Ok(p) => p,
                Err(e) => {
                    return self.refuse(
                        id,
                        Endpoint::Update,
                        &format!("proposal {i} is invalid: {e}"),
                    );
                }
            };
            let Some(actor) = user_of(processed.credential()) else {
                return self.refuse(
                    id,
                    Endpoint::Update,
                    &format!("proposal {i}: the sender's credential is not a MIMI client URI"),
                );
            };
            if !matches!(processed.sender(), Sender::Member(_)) {
                return self.refuse(
                    id,
                    Endpoint::Update,
                    &format!("proposal {i}: only members may send proposals through /update"),
                );
            }
            if !caller.speaks_for(&actor) {
                self.stats.hub_refused += 1;
                return self.respond(
                    id,
                    Response::text(
                        403,
                        format!(
                            "{} may not send proposals signed by {actor}",
                            caller.label()
                        ),
                    ),
                );
            }
            let ProcessedMessageContent::ProposalMessage(qp) = processed.into_content() else {
                return self.refuse(
                    id,
                    Endpoint::Update,
                    &format!("message {i} is not a proposal"),
                );
            };
            let (mut transitions, mut removes, mut adds) = (Vec::new(), Vec::new(), Vec::new());
            match qp.proposal() {
                Proposal::Remove(rp) => removes.push(
                    members
                        .get(&rp.removed().u32())
                        .cloned()
                        .unwrap_or_default(),
                ),
                Proposal::SelfRemove => removes.push(actor.clone()),
                Proposal::Add(ap) => adds
                    .push(user_of(ap.key_package().leaf_node().credential()).unwrap_or_default()),
                Proposal::Update(_) | Proposal::PreSharedKey(_) => {}
                Proposal::AppDataUpdate(a) if a.component_id() == cid::PARTICIPANT_LIST => {
                    let AppDataUpdateOperation::Update(d) = a.operation() else {
                        return self.refuse(
                            id,
                            Endpoint::Update,
                            "the participant list cannot be removed",
                        );
                    };
                    let upd = match ParticipantListUpdate::from_bytes(d.as_slice()) {
                        Ok(u) => u,
                        Err(e) => {
                            return self.refuse(
                                id,
                                Endpoint::Update,
                                &format!("participant_list update: {e}"),
                            );
                        }
                    };
                    match policy.participants.apply(std::slice::from_ref(&upd)) {
                        Ok((new, t)) => {
                            transitions = t;
                            policy.participants = new;
                            list_updates.push(hex::encode(upd.to_bytes()));
                        }
                        Err(e) => return self.refuse(id, Endpoint::Update, &e.to_string()),
                    }
                }
                Proposal::AppDataUpdate(_) => {
                    if !before.can(
                        &actor,
                        mimi_proto::components::capability::CAN_CHANGE_ROLE_DEFINITIONS,
                    ) {
                        return self.refuse(
                            id,
                            Endpoint::Update,
                            &format!("{actor}'s role may not propose policy changes"),
                        );
                    }
                }
                _ => {
                    return self.refuse(
                        id,
                        Endpoint::Update,
                        &format!("proposal {i}: this proposal type is not accepted by the hub"),
                    );
                }
            }
            if let Err(Refusal(why)) =
                policy::authorize_proposal(&before, &policy, &actor, &transitions, &removes, &adds)
            {
                return self.refuse(id, Endpoint::Update, &why);
            }
            queued.push(qp);
        }
        let followers = r.follower_domains(&self.cfg.domain);
        if let Some(f) = self.outbox_full(&followers) {
            return self.respond(
                id,
                Response {
                    retry_after_s: Some(5),
                    ..Response::text(503, format!("the outbox to {f} is full; retry later"))
                },
            );
        }
        let Some(r) = self.hub.rooms.get_mut(room) else {
            return;
        };
        for qp in queued {
            if let Err(e) = r.group.add_proposal(&r.storage, *qp) {
                return self.refuse(
                    id,
                    Endpoint::Update,
                    &format!("cannot queue proposal: {e:?}"),
                );
            }
        }
        let now = self.now_ms;
        for m in &msgs {
            r.rec.pending.push((hex::encode(m.to_bytes()), now));
        }
        r.rec.pending_list_updates.extend(list_updates);
        r.rec.accepted += 1;
        let fanout = FanoutMessage {
            timestamp: now,
            message: msgs[0].clone(),
            extra: FanoutExtra::Proposal {
                more_proposals: msgs[1..].to_vec(),
            },
        };
        self.fan_out(room, &fanout, &followers);
        self.persist_room(room);
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

    #[allow(clippy::too_many_lines)] // the commit path reads best in one place
    fn hub_commit(
        &mut self,
        id: RequestId,
        caller: &Caller,
        room: &str,
        commit: &MlsMessage,
        welcome: Option<mimi_proto::mls::Welcome>,
        group_info_option: GroupInfoOption,
        ratchet_tree_option: RatchetTreeOption,
    ) {
        let Some(r) = self.hub.rooms.get(room) else {
            return;
        };
        let Ok(pm) = commit
            .to_openmls()
            .and_then(|x| x.try_into_protocol_message().map_err(|e| e.to_string()))
        else {
            return self.refuse(id, Endpoint::Update, "the commit is not a protocol message");
        };
        let processed = match r.group.process_message(&self.crypto, pm) {
            Ok(p) => p,
            Err(PublicProcessMessageError::ValidationError(ValidationError::WrongEpoch)) => {
                let current = r.epoch();
                return self.respond(
                    id,
                    update_response(
                        UpdateOutcome::WrongEpoch {
                            current_epoch: current,
                        },
                        "stale epoch",
                    ),
                );
            }
            Err(e) => {
                return self.refuse(id, Endpoint::Update, &format!("the commit is invalid: {e}"));
            }
        };
        let external = matches!(processed.sender(), Sender::NewMemberCommit);
        let Some(actor) = user_of(processed.credential()) else {
            return self.refuse(
                id,
                Endpoint::Update,
                "the committer's credential is not a MIMI client URI",
            );
        };
        if !caller.speaks_for(&actor) {
            self.stats.hub_refused += 1;
            return self.respond(
                id,
                Response::text(
                    403,
                    format!(
                        "{} may not submit a commit signed by {actor}",
                        caller.label()
                    ),
                ),
            );
        }
        if let Caller::Local(c) = caller
            && identity(processed.credential()).as_deref() != Some(c.client_uri.as_bytes())
        {
            return self.respond(
                id,
                Response::text(403, format!("the commit is not signed by {}", c.client_uri)),
            );
        }
        let before = match r.effective_policy() {
            Ok(p) => p,
            Err(e) => return self.refuse(id, Endpoint::Update, &e),
        };
        let committed_before = r.policy().unwrap_or_else(|_| before.clone());
        let (staged, transitions, touched) = match processed.into_content() {
            ProcessedMessageContent::StagedCommitMessage(sc) => (*sc, Vec::new(), BTreeSet::new()),
            ProcessedMessageContent::UnresolvedAppDataCommit(u) => {
                let ops: Vec<(u16, AppDataUpdateOperation)> = u
                    .app_data_update_proposals()
                    .map(|p| (p.component_id(), p.operation().clone()))
                    .collect();
                let (changes, transitions, touched) = match resolve_app_data(&r.group, &ops) {
                    Ok(x) => x,
                    Err(e) => return self.refuse(id, Endpoint::Update, &e),
                };
                match r.group.stage_app_data_commit(&self.crypto, *u, changes) {
                    Ok(sc) => (sc, transitions, touched),
                    Err(e) => {
                        return self.refuse(
                            id,
                            Endpoint::Update,
                            &format!("the commit does not stage: {e}"),
                        );
                    }
                }
            }
            _ => return self.refuse(id, Endpoint::Update, "not a commit"),
        };
        // Every proposal the hub accepted this epoch must be in the commit (external commits
        // cannot carry proposals by reference; the pending ones lapse with the epoch).
        if !external {
            let committed: BTreeSet<Vec<u8>> = staged
                .queued_proposals()
                .map(|q| q.proposal_reference_ref().as_slice().to_vec())
                .collect();
            let pending = r.group.queued_proposals(&r.storage).unwrap_or_default();
            if let Some((missing, _)) = pending
                .iter()
                .find(|(pr, _)| !committed.contains(pr.as_slice()))
            {
                return self.respond(
                    id,
                    update_response(
                        UpdateOutcome::InvalidProposal {
                            invalid_proposals: vec![Bytes(missing.as_slice().to_vec())],
                        },
                        "the commit must include every pending proposal",
                    ),
                );
            }
        }
        let members_before = r.member_users();
        let removed: BTreeSet<u32> = staged
            .remove_proposals()
            .map(|q| q.remove_proposal().removed().u32())
            .collect();
        let removed_clients_of: Vec<String> = members_before
            .iter()
            .filter(|(i, _)| removed.contains(&i.u32()))
            .map(|(_, u)| u.clone())
            .collect();
        let mut added_clients_of = Vec::new();
        let mut welcome_routes: BTreeMap<String, String> = r.rec.kp_routes.clone();
        for a in staged.add_proposals() {
            let kp = a.add_proposal().key_package();
            let u = user_of(kp.leaf_node().credential()).unwrap_or_default();
            if let Ok(kpref) = kp.hash_ref(&self.crypto)
                && let Some(d) = ids::domain_of(&u)
            {
                welcome_routes
                    .entry(hex::encode(kpref.as_slice()))
                    .or_insert_with(|| d.to_owned());
            }
            added_clients_of.push(u);
        }
        let mut members_after: Vec<String> = members_before
            .iter()
            .filter(|(i, _)| !removed.contains(&i.u32()))
            .map(|(_, u)| u.clone())
            .collect();
        members_after.extend(added_clients_of.iter().cloned());
        if external {
            members_after.push(actor.clone());
        }
        let after = {
            let mut a = policy::read_policy(|cid| {
                staged
                    .group_context()
                    .extensions()
                    .app_data_dictionary()
                    .and_then(|d| d.dictionary().get(&cid))
                    .map(<[u8]>::to_vec)
            })
            .unwrap_or_else(|_| before.clone());
            if a.participants == committed_before.participants
                && before.participants != committed_before.participants
            {
                a.participants = before.participants;
            }
            a
        };
        let change = Change {
            actor: actor.clone(),
            external,
            transitions,
            policy_components: touched,
            added_clients_of,
            removed_clients_of,
            members_after,
            members_before: members_before.iter().map(|(_, u)| u.clone()).collect(),
        };
        if let Err(Refusal(why)) = policy::authorize(&committed_before, &after, &change) {
            return self.refuse(id, Endpoint::Update, &why);
        }
        let mut followers = r.follower_domains(&self.cfg.domain);
        for u in change.members_after.iter().chain(
            after
                .participants
                .participants
                .iter()
                .map(|p| p.user.as_str().to_owned())
                .collect::<Vec<_>>()
                .iter(),
        ) {
            if let Some(d) = ids::domain_of(u)
                && d != self.cfg.domain
            {
                followers.insert(d.to_owned());
            }
        }
        if let Some(f) = self.outbox_full(&followers) {
            return self.respond(
                id,
                Response {
                    retry_after_s: Some(5),
                    ..Response::text(503, format!("the outbox to {f} is full; retry later"))
                },
            );
        }
        // Accept: merge, keep the new GroupInfo, fan out the commit then the Welcome.
        let Some(r) = self.hub.rooms.get_mut(room) else {
            return;
        };
        let committer_leaf = members_before
            .iter()
            .find(|(_, u)| *u == actor)
            .map(|(i, _)| i.u32());
        if let Err(e) = r.group.merge_commit(&r.storage, staged) {
            return self.respond(
                id,
                Response::text(500, format!("internal error merging the commit: {e:?}")),
            );
        }
        let new_epoch = r.epoch();
        match stored_group_info(r, &group_info_option, committer_leaf, new_epoch) {
            Some(gi) => r.rec.group_info = hex::encode(gi),
            None => r.rec.group_info.clear(),
        }
        r.rec.pending.clear();
        r.rec.pending_list_updates.clear();
        r.rec.kp_routes = welcome_routes.clone();
        r.rec.followers.extend(followers.iter().cloned());
        r.rec.accepted += 1;
        let tree_option = match ratchet_tree_option {
            RatchetTreeOption::DistributionService => RatchetTreeOption::Full {
                ratchet_tree: export_tree(&r.group),
            },
            other => other,
        };
        let now = self.now_ms;
        let fanout = FanoutMessage {
            timestamp: now,
            message: commit.clone(),
            extra: FanoutExtra::Commit {
                external_proposals: vec![],
            },
        };
        self.fan_out(room, &fanout, &followers);
        if let Some(w) = welcome {
            let mut targets: BTreeSet<String> = BTreeSet::new();
            for nm in w.new_members() {
                if let Some(d) = welcome_routes.get(&hex::encode(&nm.0)) {
                    targets.insert(d.clone());
                }
            }
            let wm = FanoutMessage {
                timestamp: now,
                message: MlsMessage {
                    body: MlsMessageBody::Welcome(w),
                },
                extra: FanoutExtra::Welcome {
                    ratchet_tree_option: tree_option,
                },
            };
            let bytes = wm.to_bytes();
            let remote: BTreeSet<String> = targets
                .iter()
                .filter(|d| **d != self.cfg.domain)
                .cloned()
                .collect();
            for f in &remote {
                let mut wb = std::mem::take(&mut self.writes);
                self.outboxes.push(f, room, &bytes, &mut wb);
                self.writes = wb;
            }
            if targets.contains(&self.cfg.domain) {
                self.route_fanout(room, &wm, &bytes);
            }
        }
        self.persist_room(room);
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

    fn hub_submit(&mut self, id: RequestId, caller: &Caller, room: &str, body: &[u8]) {
        let req = match SubmitMessageRequest::from_bytes(body) {
            Ok(r) => r,
            Err(e) => {
                return self.respond(
                    id,
                    Response::text(400, format!("malformed SubmitMessageRequest: {e}")),
                );
            }
        };
        let sender = req.sending_uri.as_str().to_owned();
        if !caller.speaks_for(&sender) {
            self.stats.hub_refused += 1;
            return self.respond(
                id,
                Response::text(403, format!("{} may not send as {sender}", caller.label())),
            );
        }
        let Some(r) = self.hub.rooms.get(room) else {
            return;
        };
        let MlsMessageBody::PrivateMessage(pm) = &req.app_message.body else {
            return;
        };
        if pm.group_id.0 != r.group.group_id().as_slice() {
            return self.refuse(id, Endpoint::SubmitMessage, "message for another group");
        }
        // Authorization before anything that reveals room state (such as its epoch).
        let policy = match r.effective_policy() {
            Ok(p) => p,
            Err(e) => return self.refuse(id, Endpoint::SubmitMessage, &e),
        };
        let active = r.member_users().iter().any(|(_, u)| *u == sender);
        if !active
            || policy.is_banned(&sender)
            || !policy.can(
                &sender,
                mimi_proto::components::capability::CAN_SEND_MESSAGE,
            )
        {
            return self.refuse(
                id,
                Endpoint::SubmitMessage,
                "sender is not an active participant allowed to send",
            );
        }
        let current = r.epoch();
        if pm.epoch > current {
            return self.refuse(id, Endpoint::SubmitMessage, "epoch in the future");
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
        let followers = r.follower_domains(&self.cfg.domain);
        if let Some(f) = self.outbox_full(&followers) {
            return self.respond(
                id,
                Response {
                    retry_after_s: Some(5),
                    ..Response::text(503, format!("the outbox to {f} is full; retry later"))
                },
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
                    sender_uri: req.sending_uri.clone(),
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
        let fanout = FanoutMessage {
            timestamp: now,
            message: req.app_message.clone(),
            extra: FanoutExtra::Application {
                frank: frank.clone(),
            },
        };
        if let Some(r) = self.hub.rooms.get_mut(room) {
            r.rec.accepted += 1;
        }
        self.fan_out(room, &fanout, &followers);
        if let Some(r) = self.hub.rooms.get(room) {
            let rec = r.rec.clone();
            self.writes.put(format!("{}{room}", keys::HUB_ROOM), &rec);
        }
        self.stats.hub_accepted += 1;
        self.respond(
            id,
            submit_response(SubmitOutcome::Accepted {
                accepted_timestamp: now,
                frank,
            }),
        );
    }

    fn hub_group_info(&mut self, id: RequestId, caller: &Caller, room: &str, body: &[u8]) {
        let req = match GroupInfoRequest::from_bytes(body) {
            Ok(r) => r,
            Err(e) => {
                return self.respond(
                    id,
                    Response::text(400, format!("malformed GroupInfoRequest: {e}")),
                );
            }
        };
        if mimi_proto::crypto::verify_with_label(
            &self.crypto,
            req.cipher_suite,
            &req.requesting_signature_key,
            GroupInfoRequest::LABEL,
            &req.tbs(),
            &req.signature,
        )
        .is_err()
        {
            return self.respond(
                id,
                Response::text(
                    403,
                    "GroupInfoRequest signature does not verify with requestingSignatureKey",
                ),
            );
        }
        let user = req
            .requesting_credential
            .basic_identity()
            .and_then(ids::user_of_identity)
            .unwrap_or_default();
        if !caller.speaks_for(&user) {
            return self.respond(
                id,
                Response::text(
                    403,
                    format!("{} may not request a GroupInfo for {user}", caller.label()),
                ),
            );
        }
        let Some(r) = self.hub.rooms.get(room) else {
            return;
        };
        let refuse = |status| {
            Response::mimi(
                GroupInfoResponse {
                    version: Protocol::Mls10,
                    room_id: Uri::from(room),
                    status,
                    success: None,
                }
                .to_bytes(),
            )
        };
        let policy = r.effective_policy().unwrap_or_default();
        let role = policy.role_of(&user);
        let allowed = if role == 0 {
            policy
                .roles
                .role(0)
                .is_some_and(|r0| r0.can(mimi_proto::components::capability::CAN_OPEN_JOIN))
        } else {
            !policy.is_banned(&user)
                && policy.can(
                    &user,
                    mimi_proto::components::capability::CAN_ADD_OWN_CLIENT,
                )
        };
        if !allowed || r.rec.group_info.is_empty() {
            return self.respond(id, refuse(GroupInfoCode::NotAuthorized));
        }
        let Ok(group_info) =
            GroupInfo::from_bytes(&hex::decode(&r.rec.group_info).unwrap_or_default())
        else {
            return self.respond(id, refuse(GroupInfoCode::NotAuthorized));
        };
        let pending = r
            .rec
            .pending
            .iter()
            .filter_map(|(m, t)| {
                MlsMessage::from_bytes(&hex::decode(m).ok()?)
                    .ok()
                    .map(|proposal| PendingProposal {
                        proposal,
                        hub_accepted_time: *t,
                    })
            })
            .collect();
        let tbe = GroupInfoRatchetTreeTbe {
            group_info,
            ratchet_tree_option: RatchetTreeOption::Full {
                ratchet_tree: export_tree(&r.group),
            },
            pending_proposals: pending,
        };
        let ct = match mimi_proto::crypto::encrypt_with_label(
            &self.crypto,
            req.cipher_suite,
            &req.group_info_public_key,
            GroupInfoResponse::ENCRYPT_LABEL,
            room.as_bytes(),
            &tbe.to_bytes(),
        ) {
            Ok(c) => c,
            Err(e) => {
                return self.respond(
                    id,
                    Response::text(400, format!("cannot encrypt to groupInfoPublicKey: {e}")),
                );
            }
        };
        let mut resp = GroupInfoResponse {
            version: Protocol::Mls10,
            room_id: Uri::from(room),
            status: GroupInfoCode::Success,
            success: Some(GroupInfoSuccess {
                cipher_suite: req.cipher_suite,
                hub_sender: self.external_sender(),
                encrypted_groupinfo_and_tree: ct,
                signature: Bytes::default(),
            }),
        };
        let sig = match mimi_proto::crypto::sign_with_label(
            &self.cfg.hub_signer,
            GroupInfoResponse::LABEL,
            &resp.tbs(),
        ) {
            Ok(s) => s,
            Err(e) => return self.respond(id, Response::text(500, format!("cannot sign: {e}"))),
        };
        if let Some(s) = &mut resp.success {
            s.signature = Bytes(sig);
        }
        self.respond(id, Response::mimi(resp.to_bytes()));
    }

    fn hub_report_abuse(&mut self, id: RequestId, caller: &Caller, room: &str, body: &[u8]) {
        let report = match AbuseReport::from_bytes(body) {
            Ok(r) => r,
            Err(e) => {
                return self.respond(
                    id,
                    Response::text(400, format!("malformed AbuseReport: {e}")),
                );
            }
        };
        if !report.reporting_user.as_str().is_empty()
            && !caller.speaks_for(report.reporting_user.as_str())
        {
            return self.respond(
                id,
                Response::text(
                    403,
                    format!(
                        "{} may not report as {}",
                        caller.label(),
                        report.reporting_user
                    ),
                ),
            );
        }
        for (i, m) in report.messages.iter().enumerate() {
            let content = match mimi_content::Message::decode(m.message_content.0.clone()) {
                Ok(c) => c,
                Err(e) => {
                    return self.respond(
                        id,
                        Response::text(400, format!("message {i} is not MIMI content: {e}")),
                    );
                }
            };
            let ext = &content.content().extensions;
            let (Some(sender), Some(room_uri)) = (ext.sender_uri(), ext.room_uri()) else {
                return self.respond(
                    id,
                    Response::text(400, format!("message {i} lacks senderUri or roomUri")),
                );
            };
            if room_uri != room {
                return self.respond(
                    id,
                    Response::text(
                        400,
                        format!("message {i} is from room {room_uri}, not {room}"),
                    ),
                );
            }
            let tag = franking_tag(&content.content().salt, &m.message_content.0);
            let ctx = ServerFrankingContext {
                sender_uri: Uri::from(sender),
                room_uri: Uri::from(room),
                accepted_timestamp: m.accepted_timestamp,
            };
            let ok = hub_recognises(&self.cfg.franking_key, &tag, &ctx, &m.frank)
                && verify_frank(&self.crypto, self.cfg.hub_signer.public(), &m.frank, &ctx).is_ok();
            if !ok {
                return self.respond(
                    id,
                    Response::text(
                        400,
                        format!(
                            "message {i}: the frank was not issued by this hub for that content"
                        ),
                    ),
                );
            }
        }
        let rec = AbuseRecord {
            room: room.to_owned(),
            reporter_domain: caller.label(),
            report: hex::encode(body),
            received_ms: self.now_ms,
        };
        self.hub.abuse_reports += 1;
        self.writes.put(
            format!(
                "{}{room}/{}",
                keys::ABUSE,
                keys::seq(self.hub.abuse_reports as u64)
            ),
            &rec,
        );
        self.respond(id, Response::empty(201));
    }

    /// `/keyMaterial`: served for local users, proxied (with KeyPackageRef bookkeeping) when this
    /// hub hosts the room, forwarded to the hub or target for local clients.
    pub(crate) fn key_material(
        &mut self,
        id: RequestId,
        caller: &Caller,
        target: &str,
        body: &[u8],
    ) {
        let req = match KeyMaterialRequest::from_bytes(body) {
            Ok(r) => r,
            Err(e) => {
                return self.respond(
                    id,
                    Response::text(400, format!("malformed KeyMaterialRequest: {e}")),
                );
            }
        };
        if req.target_user.as_str() != target {
            return self.respond(
                id,
                Response::text(
                    400,
                    format!(
                        "the path names {target} but the body targetUser is {}",
                        req.target_user
                    ),
                ),
            );
        }
        let requester = req.requesting_user.as_str();
        let room = req.room_id.as_str();
        let ok_caller = match caller {
            Caller::Local(c) => c.user == requester,
            // A hub proxies for followers: the requester may then be another provider's user.
            Caller::Peer(p) => {
                ids::domain_of(requester) == Some(p.as_str())
                    || (!room.is_empty() && ids::domain_of(room) == Some(p.as_str()))
            }
        };
        if !ok_caller {
            return self.respond(
                id,
                Response::text(
                    403,
                    format!(
                        "{} may not request key material for {requester}",
                        caller.label()
                    ),
                ),
            );
        }
        let cred_user = req
            .requester_credential
            .basic_identity()
            .and_then(ids::user_of_identity);
        if cred_user.as_deref() != Some(requester) {
            return self.respond(
                id,
                Response::text(403, "requesterCredential does not belong to requestingUser"),
            );
        }
        let suite = req.signing_suite().unwrap_or(0);
        if mimi_proto::crypto::verify_with_label(
            &self.crypto,
            suite,
            &req.requester_signature_key,
            KeyMaterialRequest::LABEL,
            &req.tbs(),
            &req.key_material_request_signature,
        )
        .is_err()
        {
            return self.respond(
                id,
                Response::text(
                    403,
                    "KeyMaterialRequest signature does not verify with requesterSignatureKey",
                ),
            );
        }
        let target_domain = ids::domain_of(target).unwrap_or_default().to_owned();
        if self.hub.rooms.contains_key(room) {
            // This hub hosts the room: the requester must be a participant allowed to add.
            let allowed = self
                .hub
                .rooms
                .get(room)
                .and_then(|r| r.effective_policy().ok())
                .is_some_and(|p| p.role_of(requester) != 0 && !p.is_banned(requester));
            if !allowed {
                return self.respond(
                    id,
                    Response::text(403, format!("{requester} is not a participant of {room}")),
                );
            }
            if target_domain == self.cfg.domain {
                let resp = self.serve_key_material(&req);
                self.record_kp_routes(room, &resp, &target_domain);
                return self.respond(id, Response::mimi(resp.to_bytes()));
            }
            let why = Pending::Relay {
                reply_to: id,
                endpoint: Endpoint::KeyMaterial,
                room: Some(room.to_owned()),
                target_domain: target_domain.clone(),
            };
            self.send(
                &target_domain,
                Endpoint::KeyMaterial,
                target,
                body.to_vec(),
                why,
            );
            return;
        }
        if target_domain == self.cfg.domain {
            let resp = self.serve_key_material(&req);
            return self.respond(id, Response::mimi(resp.to_bytes()));
        }
        match caller {
            Caller::Local(_) => {
                // Through the room's hub when there is a room, else straight to the target.
                let via = if room.is_empty() {
                    target_domain.clone()
                } else {
                    ids::domain_of(room).unwrap_or_default().to_owned()
                };
                let why = Pending::Relay {
                    reply_to: id,
                    endpoint: Endpoint::KeyMaterial,
                    room: None,
                    target_domain: via.clone(),
                };
                self.send(&via, Endpoint::KeyMaterial, target, body.to_vec(), why);
            }
            Caller::Peer(_) => self.respond(
                id,
                Response::text(
                    404,
                    format!(
                        "{target} is not a user of {} and {room} is not hosted here",
                        self.cfg.domain
                    ),
                ),
            ),
        }
    }

    fn record_kp_routes(&mut self, room: &str, resp: &KeyMaterialResponse, domain: &str) {
        let Some(r) = self.hub.rooms.get_mut(room) else {
            return;
        };
        for c in &resp.clients {
            if let mimi_proto::messages::ClientKeyMaterial::Success { key_package, .. } = c
                && let Some(kpref) = key_package.reference()
            {
                r.rec
                    .kp_routes
                    .insert(hex::encode(&kpref.0), domain.to_owned());
            }
        }
        let rec = r.rec.clone();
        self.writes.put(format!("{}{room}", keys::HUB_ROOM), &rec);
    }

    pub(crate) fn relay_reply(
        &mut self,
        reply_to: RequestId,
        endpoint: Endpoint,
        room: Option<String>,
        target_domain: &str,
        result: Result<crate::Reply, String>,
    ) {
        match result {
            Ok(reply) => {
                if endpoint == Endpoint::KeyMaterial
                    && reply.status == 200
                    && let (Some(room), Ok(resp)) = (
                        room.as_deref(),
                        KeyMaterialResponse::from_bytes(&reply.body),
                    )
                {
                    self.record_kp_routes(room, &resp, target_domain);
                }
                self.respond(reply_to, Response::relay(&reply));
            }
            Err(e) => self.respond(
                reply_to,
                Response {
                    retry_after_s: Some(1),
                    ..Response::text(502, format!("{target_domain} did not answer: {e}"))
                },
            ),
        }
    }

    /// `/proxyDownload`: allowed only for https URLs whose host is a configured asset domain or
    /// an upload domain in a hosted room's asset policy; the shell fetches.
    pub(crate) fn proxy_download(&mut self, id: RequestId, peer: &str, url: &str) {
        let host = url
            .strip_prefix("https://")
            .and_then(|r| r.split(['/', '?', '#']).next())
            .map(|h| h.rsplit_once(':').map_or(h, |(h, _)| h));
        let Some(host) = host.filter(|h| !h.is_empty()) else {
            return self.respond(id, Response::text(400, "proxyDownload takes an https URL"));
        };
        let mut allowed = self.cfg.asset_domains.contains(host);
        if !allowed {
            for r in self.hub.rooms.values() {
                if let Some(ap) = r
                    .dict_get(cid::ASSET_POLICY)
                    .and_then(|d| mimi_proto::components::AssetPolicy::from_bytes(&d).ok())
                {
                    allowed |= ap.upload_domains.iter().any(|p| {
                        p.asset_upload_destinations
                            .iter()
                            .any(|d| d.0 == host.as_bytes())
                    });
                }
            }
        }
        if !allowed {
            return self.respond(id, Response::text(403, format!("{host} is not an asset domain of a peer of this hub (refusing to be an open proxy for {peer})")));
        }
        self.outputs.push_back(Output::Fetch {
            id,
            url: url.to_owned(),
        });
    }
}

fn export_tree(g: &PublicGroup) -> RatchetTree {
    let bytes = g
        .export_ratchet_tree()
        .tls_serialize_detached()
        .unwrap_or_default();
    RatchetTree::from_openmls_bytes(&bytes).unwrap_or_else(|_| RatchetTree(Bytes::default()))
}

/// The GroupInfo to serve for the new epoch: the full one given, or one rebuilt from a
/// PartialGroupInfo and the hub's own view, checked to belong to `epoch`.
fn stored_group_info(
    r: &HubRoom,
    option: &GroupInfoOption,
    committer_leaf: Option<u32>,
    epoch: u64,
) -> Option<Vec<u8>> {
    match option {
        GroupInfoOption::Full { group_info } => (group_info.group_context.epoch == epoch
            && group_info.group_context.group_id.0 == r.group.group_id().as_slice())
        .then(|| group_info.to_bytes()),
        GroupInfoOption::Partial { partial_group_info } => {
            let gc_bytes = r.group.group_context().tls_serialize_detached().ok()?;
            let group_context = mimi_proto::mls::GroupContext::from_bytes(&gc_bytes).ok()?;
            let tag = r.group.confirmation_tag().tls_serialize_detached().ok()?;
            let gi = GroupInfo {
                group_context,
                extensions: partial_group_info.group_info_extensions.clone(),
                confirmation_tag: Bytes::from_bytes(&tag).ok()?,
                signer: committer_leaf?,
                signature: partial_group_info.signature.clone(),
            };
            // Keep it only if the committer's signature covers it.
            let leaf = r.group.leaf(LeafNodeIndex::new(gi.signer))?;
            let mut tbs = gi.group_context.to_bytes();
            gi.extensions.encode(&mut tbs);
            gi.confirmation_tag.encode(&mut tbs);
            gi.signer.encode(&mut tbs);
            let crypto = openmls_rust_crypto::RustCrypto::default();
            mimi_proto::crypto::verify_with_label(
                &crypto,
                gi.group_context.cipher_suite,
                leaf.signature_key().as_slice(),
                "GroupInfoTBS",
                &tbs,
                &gi.signature,
            )
            .ok()?;
            Some(gi.to_bytes())
        }
    }
}
