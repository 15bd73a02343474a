//! The hub side: rooms hosted by this provider. Each is an openmls `PublicGroup` (no group
//! secrets) whose storage rows live in the store ([`Table::HubMls`]), plus the MIMI state of
//! [`HubRoomRow`]; rooms load on demand into a bounded cache.
//!
//! One file per operation, as openmls cuts `MlsGroup`: `create.rs` (room creation),
//! `proposals.rs` and `commit.rs` (`/update`), `submit.rs`, `group_info.rs`,
//! `key_material.rs`, `abuse.rs`, `download.rs`. What they share is here.

mod abuse;
mod commit;
mod create;
mod download;
mod group_info;
mod key_material;
mod proposals;
mod submit;

pub use download::parse_asset_url;
pub(crate) use key_material::KmRequest;

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use mimi_mls_storage::KvStorage;
use mimi_proto::codec::{Bytes as WireBytes, Wire};
use mimi_proto::components::ParticipantListUpdate;
use mimi_proto::directory::Endpoint;
use mimi_proto::messages::{
    GroupInfoCode, GroupInfoResponse, Protocol, SubmitMessageResponse, SubmitOutcome,
    UpdateOutcome, UpdateRoomResponse,
};
use mimi_proto::mls::ExternalSender;
use mimi_proto::uri::{ClientUri, Domain, RoomUri, UserUri};
use openmls::prelude::{Credential, CredentialType, GroupId, LeafNodeIndex, PublicGroup};
use openmls_traits::crypto::OpenMlsCrypto;

use crate::cache::Lru;
use crate::policy::{self, PolicyRefusal, RoomPolicy};
use crate::store::rows::{self, HubRoomRow, PendingRow};
use crate::store::{StoreError, Table, keys};
use crate::{ClientRecord, Engine, Pending, Refusal, RequestId, Response};

/// Who is asking: a peer provider (authenticated by certificate) or a local client.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// A federation peer.
    Peer(Domain),
    /// A client of this provider.
    Local(ClientRecord),
}

impl Caller {
    pub(crate) fn label(&self) -> String {
        match self {
            Self::Peer(p) => format!("provider {p}"),
            Self::Local(c) => format!("client {}", c.uri),
        }
    }

    /// Whether this caller may speak for `user`: a peer for its own users, a client for its
    /// own user.
    pub(crate) fn speaks_for(&self, user: &UserUri) -> bool {
        match self {
            Self::Peer(p) => user.is_of(p),
            Self::Local(c) => c.user == *user,
        }
    }

    pub(crate) fn not_yours(&self, user: &str, action: &'static str) -> Refusal {
        Refusal::NotYours {
            caller: self.label(),
            user: user.to_owned(),
            action,
        }
    }
}

/// One hosted room in memory.
pub(crate) struct HubRoom {
    pub(crate) uri: RoomUri,
    pub(crate) row: HubRoomRow,
    pub(crate) storage: KvStorage,
    pub(crate) group: PublicGroup,
    /// Proposals accepted this epoch, in order.
    pub(crate) pending: Vec<PendingRow>,
    /// Providers with members or participants now (recomputed after each commit).
    pub(crate) followers_now: BTreeSet<Domain>,
    /// The arrival number of the next accepted submission ([`Table::SubmitOrder`]).
    pub(crate) submit_next: u64,
    /// What requests read of the group and the pending proposals, computed once per state.
    pub(crate) derived: std::cell::RefCell<Option<Derived>>,
}

/// The policies and members of a room, decoded once per (epoch, pending proposals) rather
/// than once per request: an application message in a room of n members then costs O(log n)
/// lookups instead of decoding the participant list and every member's credential.
///
/// The key is sound because the group context changes only with a commit (the epoch moves)
/// and proposals are only appended within an epoch (a commit takes them all).
#[derive(Debug)]
pub(crate) struct Derived {
    key: (u64, usize),
    committed: Result<Arc<RoomPolicy>, PolicyRefusal>,
    effective: Result<Arc<RoomPolicy>, PolicyRefusal>,
    /// (leaf index, user) of every member, in leaf order.
    leaves: Arc<[(LeafNodeIndex, Option<UserUri>)]>,
    /// Positions in the effective participant list, sorted by user (the first entry of a
    /// user first): binary search instead of a scan per lookup.
    by_user: Vec<u32>,
    /// Positions in `leaves` of members with a user, sorted by user.
    members: Vec<u32>,
}

impl std::fmt::Debug for HubRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubRoom")
            .field("room", &self.uri)
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

/// Positions of `items` that have a key, sorted by key (stable: equal keys keep their order).
fn sorted_positions<T>(items: &[T], key: impl Fn(&T) -> Option<&str>) -> Vec<u32> {
    let mut out: Vec<u32> = (0..items.len())
        .filter(|&i| key(&items[i]).is_some())
        .filter_map(|i| u32::try_from(i).ok())
        .collect();
    out.sort_by(|&a, &b| key(&items[a as usize]).cmp(&key(&items[b as usize])));
    out
}

/// The first position in `sorted` whose key is `want`.
fn find_sorted<'a>(sorted: &[u32], want: &str, key: impl Fn(usize) -> &'a str) -> Option<usize> {
    let at = sorted.partition_point(|&i| key(i as usize) < want);
    sorted
        .get(at)
        .map(|&i| i as usize)
        .filter(|&i| key(i) == want)
}

/// The client (D27) of an MLS credential.
pub(crate) fn client_of(c: &Credential) -> Option<ClientUri> {
    // A basic credential's content is its identity (as `BasicCredential::try_from`, without
    // copying the credential).
    (c.credential_type() == CredentialType::Basic)
        .then(|| ClientUri::from_credential_identity(c.serialized_content()).ok())
        .flatten()
}

/// The user (D27) of an MLS credential.
pub(crate) fn user_of(c: &Credential) -> Option<UserUri> {
    client_of(c).map(|c| c.user())
}

impl HubRoom {
    pub(crate) fn dict_get(&self, id: u16) -> Option<Vec<u8>> {
        self.group
            .group_context()
            .extensions()
            .app_data_dictionary()
            .and_then(|d| d.dictionary().get(&id))
            .map(<[u8]>::to_vec)
    }

    /// Runs `f` on the room's derived state, computing it first if the group or the pending
    /// proposals changed since.
    fn derived<R>(&self, f: impl FnOnce(&Derived) -> R) -> R {
        let key = (self.epoch(), self.pending.len());
        let mut d = self.derived.borrow_mut();
        if d.as_ref().is_some_and(|d| d.key != key) {
            *d = None;
        }
        f(d.get_or_insert_with(|| {
            let committed = policy::read_policy(|id| self.dict_get(id)).map(Arc::new);
            let effective = committed.clone().and_then(|c| {
                if self.pending.iter().any(|r| r.list_update.is_some()) {
                    self.apply_pending((*c).clone()).map(Arc::new)
                } else {
                    Ok(c) // the same policy, shared
                }
            });
            let leaves: Arc<[_]> = self
                .group
                .treesync()
                .full_leaves()
                .map(|(i, leaf)| (i, user_of(leaf.credential())))
                .collect();
            let by_user = effective.as_ref().map_or_else(
                |_| Vec::new(),
                |p| sorted_positions(&p.participants.participants, |x| Some(x.user.as_str())),
            );
            let members = sorted_positions(&leaves, |(_, u)| u.as_ref().map(UserUri::as_str));
            Derived {
                key,
                committed,
                effective,
                leaves,
                by_user,
                members,
            }
        }))
    }

    /// The committed policy.
    pub(crate) fn policy(&self) -> Result<Arc<RoomPolicy>, PolicyRefusal> {
        self.derived(|d| d.committed.clone())
    }

    /// The policy with accepted-but-uncommitted participant-list proposals applied.
    pub(crate) fn effective_policy(&self) -> Result<Arc<RoomPolicy>, PolicyRefusal> {
        self.derived(|d| d.effective.clone())
    }

    /// Whether `user` has a client in the group and may send messages under the effective
    /// policy (a participant, not banned, with canSendMessage).
    pub(crate) fn may_send(&self, user: &UserUri) -> bool {
        self.derived(|d| {
            let Ok(p) = &d.effective else {
                return false;
            };
            let list = &p.participants.participants;
            let role = find_sorted(&d.by_user, user.as_str(), |i| list[i].user.as_str())
                .map_or(0, |i| list[i].role_index);
            let member = find_sorted(&d.members, user.as_str(), |i| {
                d.leaves[i].1.as_ref().map_or("", UserUri::as_str)
            })
            .is_some();
            member
                && !policy::is_banned_role(&p.roles, role)
                && p.roles
                    .role(role)
                    .is_some_and(|r| r.can(mimi_proto::components::capability::CAN_SEND_MESSAGE))
        })
    }

    fn apply_pending(&self, mut p: RoomPolicy) -> Result<RoomPolicy, PolicyRefusal> {
        let updates: Vec<ParticipantListUpdate> = self
            .pending
            .iter()
            .filter_map(|r| ParticipantListUpdate::from_bytes(r.list_update.as_ref()?).ok())
            .collect();
        if !updates.is_empty() {
            p.participants = p
                .participants
                .apply(&updates)
                .map_err(|e| PolicyRefusal::ListUpdate(e.to_string()))?
                .0;
        }
        Ok(p)
    }

    /// (leaf index, user) of every member; members whose credential is not a client URI map
    /// to no user (they cannot exist: every add is checked).
    pub(crate) fn member_users(&self) -> Arc<[(LeafNodeIndex, Option<UserUri>)]> {
        self.derived(|d| Arc::clone(&d.leaves))
    }

    /// Providers to fan out to: domains of members and participants, excluding `ours`.
    pub(crate) fn compute_followers(&self, ours: &Domain) -> BTreeSet<Domain> {
        let mut out: BTreeSet<Domain> = self.derived(|d| {
            let domains: BTreeSet<&Domain> = d
                .leaves
                .iter()
                .filter_map(|(_, u)| u.as_ref().map(UserUri::domain))
                .collect();
            let mut out: BTreeSet<Domain> = domains.into_iter().cloned().collect();
            if let Ok(p) = &d.committed {
                out.extend(
                    p.participants
                        .participants
                        .iter()
                        .filter_map(|x| mimi_proto::uri::domain_of(x.user.as_str())),
                );
            }
            out
        });
        out.remove(ours);
        out
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.group.group_context().epoch().as_u64()
    }
}

/// Everything the hub side keeps in memory.
#[derive(Debug)]
pub(crate) struct HubState {
    pub(crate) rooms: Lru<RoomUri, HubRoom>,
}

impl HubState {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            rooms: Lru::new(capacity),
        }
    }

    pub(crate) fn trim(&mut self) {
        self.rooms.trim();
    }

    pub(crate) fn clear(&mut self) {
        self.rooms.clear();
    }

    pub(crate) fn cached(&self) -> usize {
        self.rooms.len()
    }
}

pub(crate) fn update_response(outcome: UpdateOutcome, description: &str) -> Response {
    Response::mimi(
        UpdateRoomResponse {
            error_description: description.into(),
            outcome,
        }
        .to_bytes(),
    )
}

pub(crate) fn submit_response(outcome: SubmitOutcome) -> Response {
    Response::mimi(
        SubmitMessageResponse {
            protocol: Protocol::Mls10,
            outcome,
        }
        .to_bytes(),
    )
}

pub(crate) fn group_info_code(room: &str, status: GroupInfoCode) -> Response {
    Response::mimi(
        GroupInfoResponse {
            version: Protocol::Mls10,
            room_id: mimi_proto::codec::Uri::from(room),
            status,
            success: None,
        }
        .to_bytes(),
    )
}

impl<C: OpenMlsCrypto> Engine<C> {
    pub(crate) fn external_sender(&self) -> ExternalSender {
        ExternalSender {
            signature_key: WireBytes(self.cfg.hub_signer.public().to_vec()),
            credential: mimi_proto::mls::Credential::basic(self.cfg.domain.as_str().as_bytes()),
        }
    }

    /// Makes the hosted room `room` cached, loading it from the store on a miss; false when
    /// this hub does not host it. Only the shard that orders the room caches it.
    pub(crate) fn load_room(&mut self, room: &RoomUri) -> Result<bool, StoreError> {
        if self.hub.rooms.contains(room) {
            return Ok(true);
        }
        match self.fetch_room(room)? {
            Some(r) => {
                self.hub.rooms.insert(room.clone(), r);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The hosted room as the store has it (without caching it).
    pub(crate) fn fetch_room(&self, room: &RoomUri) -> Result<Option<HubRoom>, StoreError> {
        let rk = room.as_str().as_bytes();
        let Some(raw) = self.store.get(Table::HubRooms, rk)? else {
            return Ok(None);
        };
        let row: HubRoomRow = rows::decode(Table::HubRooms, &raw)?;
        let prefix = keys::prefix(&[rk]);
        let mls: Vec<(Vec<u8>, Vec<u8>)> = self
            .store
            .scan(Table::HubMls, &prefix, None, usize::MAX)?
            .into_iter()
            .map(|(k, v)| (k[prefix.len()..].to_vec(), v))
            .collect();
        let storage = KvStorage::from_rows(mls);
        let corrupt = |detail: String| StoreError::Corrupt {
            table: Table::HubMls.name(),
            detail,
        };
        let group = PublicGroup::load(&storage, &GroupId::from_slice(&row.group_id))
            .map_err(|e| corrupt(format!("{room}: {e:?}")))?
            .ok_or_else(|| corrupt(format!("{room}: no group state")))?;
        let pending = self
            .store
            .scan(Table::HubPending, &prefix, None, usize::MAX)?
            .into_iter()
            .map(|(_, v)| rows::decode(Table::HubPending, &v))
            .collect::<Result<Vec<PendingRow>, _>>()?;
        let mut r = HubRoom {
            uri: room.clone(),
            row,
            storage,
            group,
            pending,
            followers_now: BTreeSet::new(),
            submit_next: self
                .store
                .last(Table::SubmitOrder, &prefix)?
                .and_then(|(k, _)| keys::seq_of(&k))
                .map_or(0, |n| n + 1),
            derived: std::cell::RefCell::new(None),
        };
        r.followers_now = r.compute_followers(&self.cfg.domain);
        Ok(Some(r))
    }

    /// Writes the room's changed openmls rows into the step's batch.
    pub(crate) fn flush_mls(&mut self, room: &RoomUri) {
        let Some(r) = self.hub.rooms.get_mut(room) else {
            return;
        };
        let prefix = keys::prefix(&[room.as_str().as_bytes()]);
        for (k, v) in r.storage.take_changes() {
            let mut key = prefix.clone();
            key.extend_from_slice(&k);
            match v {
                Some(v) => self.writes.put_raw(Table::HubMls, key, v),
                None => self.writes.delete(Table::HubMls, key),
            }
        }
    }

    pub(crate) fn save_room_row(&mut self, room: &RoomUri) {
        if let Some(r) = self.hub.rooms.get(room) {
            let row = r.row.clone();
            self.writes
                .put(Table::HubRooms, room.as_str().as_bytes().to_vec(), &row);
        }
    }

    pub(crate) fn hub_info(&mut self, id: RequestId) {
        let es = self.external_sender();
        let info = mimi_proto::client_api::HubInfo {
            domain: self.cfg.domain.clone(),
            external_sender: es.to_bytes().into(),
            signature_key: es.signature_key.0.into(),
            signature_scheme: "ed25519".into(),
        };
        self.respond(id, Response::client(200, crate::ClientReply::HubInfo(info)));
    }

    /// `/update`, `/submitMessage`, `/groupInfo`, `/reportAbuse`: handled here when the room is
    /// hosted here, forwarded to the room's hub for local clients otherwise. A room this hub
    /// does not host is answered exactly as one the caller may not use.
    pub(crate) fn hub_request(
        &mut self,
        id: RequestId,
        caller: &Caller,
        endpoint: Endpoint,
        room: &str,
        body: &Bytes,
    ) {
        let room: RoomUri = match room.parse() {
            Ok(r) => r,
            Err(e) => return self.refuse(id, Refusal::uri("roomId", e)),
        };
        let hosted = match self.load_room(&room) {
            Ok(h) => h,
            Err(e) => return self.store_failed(Some(id), e),
        };
        if !hosted {
            if let Caller::Local(_) = caller
                && *room.domain() != self.cfg.domain
            {
                let hub = room.domain().clone();
                let member = match (caller, endpoint) {
                    (Caller::Local(c), Endpoint::Update) => Some(c.id.clone()),
                    _ => None,
                };
                let why = Pending::Relay {
                    reply_to: id,
                    endpoint,
                    room: Some(room.clone()),
                    target_domain: hub.clone(),
                    member,
                };
                self.send(&hub, endpoint, room.as_str(), body.clone(), why);
                return;
            }
            return self.unknown_room(id, caller, endpoint, &room);
        }
        match endpoint {
            Endpoint::Update => self.hub_update(id, caller, &room, body),
            Endpoint::SubmitMessage => self.hub_submit(id, caller, &room, body),
            Endpoint::GroupInfo => self.hub_group_info(id, caller, &room, body),
            Endpoint::ReportAbuse => self.hub_report_abuse(id, caller, &room, body),
            _ => self.refuse(id, Refusal::NotFound("not a room endpoint".into())),
        }
    }

    /// A room this hub does not host, answered as a forbidden one (no existence oracle).
    fn unknown_room(&mut self, id: RequestId, caller: &Caller, endpoint: Endpoint, room: &RoomUri) {
        self.stats.hub_refused += 1;
        let r = match endpoint {
            Endpoint::SubmitMessage => submit_response(SubmitOutcome::NotAllowed),
            Endpoint::GroupInfo => group_info_code(room.as_str(), GroupInfoCode::NotAuthorized),
            Endpoint::Update => update_response(
                UpdateOutcome::NotAllowed,
                &format!("{} may not change {room}", caller.label()),
            ),
            _ => Response::refused(Refusal::NotParticipant {
                user: caller.label(),
                room: room.to_string(),
            }),
        };
        self.respond(id, r);
    }

    /// Refuses a handshake or message with the protocol's own answer.
    pub(crate) fn refuse_hub(&mut self, id: RequestId, endpoint: Endpoint, why: &str) {
        self.stats.hub_refused += 1;
        let r = match endpoint {
            Endpoint::SubmitMessage => submit_response(SubmitOutcome::NotAllowed),
            _ => update_response(UpdateOutcome::NotAllowed, why),
        };
        self.respond(id, r);
    }

    /// Queues one accepted event for every follower and delivers it to local subscribers.
    pub(crate) fn fan_out(
        &mut self,
        room: &RoomUri,
        bytes: Vec<u8>,
        followers: &BTreeSet<Domain>,
        timestamp: u64,
        kind: mimi_proto::client_api::DeliveryKind,
        local: bool,
    ) {
        let body: Arc<[u8]> = bytes.into();
        let id = crate::sha256(&body);
        for f in followers {
            self.outbox_push(f, room, id, &body);
        }
        if local && let Err(e) = self.deliver_to_subscribers(room, kind, timestamp, id, &body) {
            self.store_failed(None, e);
        }
    }
}

/// What an operator sees of a hosted room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// The room.
    pub room: RoomUri,
    /// Its MLS epoch.
    pub epoch: u64,
    /// Clients in the MLS group.
    pub members: usize,
    /// Participants (users in the participant list, any role).
    pub participants: usize,
    /// Providers it fans out to.
    pub followers: BTreeSet<Domain>,
    /// Proposals accepted this epoch.
    pub pending_proposals: usize,
}

/// The hosted room `room` as committed in `store` (loaded without caching), or `None`.
///
/// # Errors
/// Storage failures or corrupt rows.
pub fn room_info(
    store: &dyn crate::store::Store,
    domain: &Domain,
    room: &RoomUri,
) -> Result<Option<RoomInfo>, StoreError> {
    let rk = room.as_str().as_bytes();
    let Some(raw) = store.get(Table::HubRooms, rk)? else {
        return Ok(None);
    };
    let row: HubRoomRow = rows::decode(Table::HubRooms, &raw)?;
    let prefix = keys::prefix(&[rk]);
    let mls: Vec<(Vec<u8>, Vec<u8>)> = store
        .scan(Table::HubMls, &prefix, None, usize::MAX)?
        .into_iter()
        .map(|(k, v)| (k[prefix.len()..].to_vec(), v))
        .collect();
    let storage = KvStorage::from_rows(mls);
    let corrupt = |detail: String| StoreError::Corrupt {
        table: Table::HubMls.name(),
        detail,
    };
    let group = PublicGroup::load(&storage, &GroupId::from_slice(&row.group_id))
        .map_err(|e| corrupt(format!("{room}: {e:?}")))?
        .ok_or_else(|| corrupt(format!("{room}: no group state")))?;
    let pending = store
        .scan(Table::HubPending, &prefix, None, usize::MAX)?
        .len();
    let r = HubRoom {
        uri: room.clone(),
        row,
        storage,
        group,
        pending: Vec::new(),
        followers_now: BTreeSet::new(),
        submit_next: 0,
        derived: std::cell::RefCell::new(None),
    };
    Ok(Some(RoomInfo {
        room: room.clone(),
        epoch: r.epoch(),
        members: r.group.members().count(),
        participants: r.policy().map_or(0, |p| p.participants.participants.len()),
        followers: r.compute_followers(domain),
        pending_proposals: pending,
    }))
}

/// Every room this provider hosts (their URIs), up to `limit` after `after`.
///
/// # Errors
/// Storage failures.
pub fn hosted_rooms(
    store: &dyn crate::store::Store,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    Ok(store
        .scan(Table::HubRooms, b"", after.map(str::as_bytes), limit)?
        .into_iter()
        .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
        .collect())
}

#[cfg(test)]
mod tests;
