//! The follower side and the local clients: registration (`clients.rs`), KeyPackages
//! (`key_packages.rs`), consent (`consent.rs`), identifier queries (`identifier.rs`), and
//! `/notify` from hubs with deliveries to subscribed clients (`notify.rs`).
//!
//! Who receives a room here (its subscribers) and the room's deduplication counter are cached
//! per room in a bounded cache; the rest is read from the store when needed.

mod clients;
mod consent;
mod identifier;
mod key_packages;
mod notify;

use std::collections::{BTreeSet, HashSet};

use mimi_proto::uri::{ClientUri, Domain, RoomUri, UserUri};
use openmls_traits::crypto::OpenMlsCrypto;

use crate::cache::Lru;
use crate::hub::Caller;
use crate::store::rows::{self, ClientRow};
use crate::store::{Store, StoreError, Table, keys};
use crate::{Auth, ClientCall, ClientRecord, ClientReply, Engine, Refusal, RequestId, Response};

pub use key_packages::ClaimQuotas;

/// A room as this provider receives it: who is subscribed, and its deduplication state.
#[derive(Debug, Default)]
pub(crate) struct FollowedRoom {
    pub(crate) subscribers: BTreeSet<String>,
    /// Next arrival number of the deduplication window.
    pub(crate) seen_next: u64,
    /// Message hashes seen in the current step (the store has the older ones).
    pub(crate) recent: HashSet<[u8; 32]>,
}

/// What the follower side keeps in memory.
#[derive(Debug)]
pub(crate) struct FollowerState {
    pub(crate) rooms: Lru<RoomUri, FollowedRoom>,
    /// Users and clients registered in the current step (not yet readable from the store).
    pub(crate) new_users: BTreeSet<String>,
    pub(crate) new_clients: BTreeSet<String>,
}

impl FollowerState {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            rooms: Lru::new(capacity),
            new_users: BTreeSet::new(),
            new_clients: BTreeSet::new(),
        }
    }

    pub(crate) fn trim(&mut self) {
        self.rooms.trim();
        self.new_users.clear();
        self.new_clients.clear();
        // What the `recent` sets held is durable now.
        for f in self.rooms.values_mut() {
            f.recent.clear();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.rooms.clear();
        self.new_users.clear();
        self.new_clients.clear();
    }

    pub(crate) fn cached(&self) -> usize {
        self.rooms.len()
    }
}

/// The client behind a token hash.
pub(crate) fn client_by_token(
    store: &dyn Store,
    domain: &Domain,
    token_hash: &[u8; 32],
) -> Result<Option<ClientRecord>, StoreError> {
    let Some(id) = store.get(Table::Tokens, token_hash)? else {
        return Ok(None);
    };
    let Some(raw) = store.get(Table::Clients, &id)? else {
        return Ok(None);
    };
    let row: ClientRow = rows::decode(Table::Clients, &raw)?;
    if row.token_hash != *token_hash {
        return Ok(None);
    }
    let corrupt = |e: mimi_proto::uri::UriError| StoreError::Corrupt {
        table: Table::Clients.name(),
        detail: e.to_string(),
    };
    Ok(Some(ClientRecord {
        id: String::from_utf8_lossy(&id).into_owned(),
        user: UserUri::new(domain, &row.user).map_err(corrupt)?,
        uri: ClientUri::new(domain, &row.user, &row.device).map_err(corrupt)?,
    }))
}

impl<C: OpenMlsCrypto> Engine<C> {
    pub(crate) fn handle_client(&mut self, id: RequestId, auth: Auth, call: ClientCall) {
        match call {
            ClientCall::Register {
                user,
                device,
                display_name,
                new_token_hash,
            } => {
                return self.client_register(
                    id,
                    &auth,
                    &user,
                    &device,
                    &display_name,
                    new_token_hash,
                );
            }
            ClientCall::HubInfo => return self.hub_info(id),
            ClientCall::Admin(call) => {
                return if matches!(auth, Auth::Admin) {
                    self.admin_call(id, call)
                } else {
                    self.refuse(id, Refusal::AdminOnly)
                };
            }
            _ => {}
        }
        let Auth::Client(client) = auth else {
            return self.refuse(id, Refusal::Unauthenticated);
        };
        match call {
            ClientCall::PublishKeyPackages {
                key_packages,
                last_resort,
            } => self.client_publish(id, &client, key_packages, last_resort),
            ClientCall::CreateRoom {
                room,
                group_info,
                ratchet_tree,
            } => self.hub_create_room(id, &client, &room, &group_info, &ratchet_tree),
            ClientCall::Room {
                endpoint,
                target,
                body,
            } => {
                let caller = Caller::Local(client);
                if endpoint == mimi_proto::directory::Endpoint::KeyMaterial {
                    self.key_material(id, &caller, &target, &body);
                } else {
                    self.hub_request(id, &caller, endpoint, &target, &body);
                }
            }
            ClientCall::Consent(body) => self.client_consent(id, &client, &body),
            ClientCall::IdentifierQuery { domain, body } => {
                self.client_identifier_query(id, &domain, body);
            }
            ClientCall::Subscribe { room, on } => self.client_subscribe(id, &client, &room, on),
            ClientCall::Register { .. } | ClientCall::HubInfo | ClientCall::Admin(_) => {}
        }
    }

    /// `POST /subscribe`: stopping is always allowed; starting only for a member of the room
    /// (a room hosted here: its group holds one of the client's leaves; elsewhere: the client
    /// already receives it, having joined through this gateway).
    fn client_subscribe(&mut self, id: RequestId, client: &ClientRecord, room: &str, on: bool) {
        let room: RoomUri = match room.parse() {
            Ok(r) => r,
            Err(e) => return self.refuse(id, Refusal::uri("room", e)),
        };
        if on {
            let member = match self.is_member_here(client, &room) {
                Ok(m) => m,
                Err(e) => return self.store_failed(Some(id), e),
            };
            if !member {
                return self.refuse(
                    id,
                    Refusal::NotMember {
                        client: client.uri.to_string(),
                        room: room.to_string(),
                    },
                );
            }
        }
        if let Err(e) = self.subscribe(&client.id, &room, on) {
            return self.store_failed(Some(id), e);
        }
        self.respond(
            id,
            Response::client(
                200,
                ClientReply::Subscribed(mimi_proto::client_api::Subscribed {
                    room,
                    subscribed: on,
                }),
            ),
        );
    }

    fn is_member_here(
        &mut self,
        client: &ClientRecord,
        room: &RoomUri,
    ) -> Result<bool, StoreError> {
        if self.load_room(room)? {
            return Ok(self.hub.rooms.get_ref(room).is_some_and(|r| {
                r.group
                    .members()
                    .any(|m| crate::hub::client_of(&m.credential).as_ref() == Some(&client.uri))
            }));
        }
        self.load_followed(room)?;
        Ok(self
            .follower
            .rooms
            .get_ref(room)
            .is_some_and(|f| f.subscribers.contains(&client.id)))
    }

    /// The room's follower entry, loaded from the store on a cache miss.
    pub(crate) fn load_followed(&mut self, room: &RoomUri) -> Result<(), StoreError> {
        if self.follower.rooms.contains(room) {
            return Ok(());
        }
        let rk = room.as_str().as_bytes();
        let prefix = keys::prefix(&[rk]);
        let mut f = FollowedRoom::default();
        for (k, _) in self
            .store
            .scan(Table::RoomSubscribers, &prefix, None, usize::MAX)?
        {
            if let Some(c) = keys::tail_text(&k, &prefix) {
                f.subscribers.insert(c);
            }
        }
        f.seen_next = self
            .store
            .last(Table::NotifyOrder, &prefix)?
            .and_then(|(k, _)| keys::seq_of(&k))
            .map_or(0, |n| n + 1);
        self.follower.rooms.insert(room.clone(), f);
        Ok(())
    }

    /// Starts or stops deliveries of `room` to a local client.
    pub(crate) fn subscribe(
        &mut self,
        client: &str,
        room: &RoomUri,
        on: bool,
    ) -> Result<(), StoreError> {
        self.load_followed(room)?;
        let Some(f) = self.follower.rooms.get_mut(room) else {
            return Ok(());
        };
        let changed = if on {
            f.subscribers.insert(client.to_owned())
        } else {
            f.subscribers.remove(client)
        };
        if changed {
            let rk = room.as_str().as_bytes();
            let a = keys::join(&[rk, client.as_bytes()]);
            let b = keys::join(&[client.as_bytes(), rk]);
            if on {
                self.writes.put_raw(Table::RoomSubscribers, a, Vec::new());
                self.writes.put_raw(Table::ClientRooms, b, Vec::new());
            } else {
                self.writes.delete(Table::RoomSubscribers, a);
                self.writes.delete(Table::ClientRooms, b);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
