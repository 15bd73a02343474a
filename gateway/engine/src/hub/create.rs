//! Room creation: a local client hands over its new group's GroupInfo and ratchet tree; the
//! hub follows it as a `PublicGroup` after checking that it is external sender 0, that the
//! MIMI components are there and that the group holds only the creator's clients.

use std::collections::BTreeSet;

use mimi_mls_storage::KvStorage;
use mimi_proto::client_api::RoomCreated;
use mimi_proto::codec::Wire;
use mimi_proto::uri::RoomUri;
use openmls::messages::group_info::VerifiableGroupInfo;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{ProposalStore, PublicGroup, RatchetTreeIn};
use openmls_traits::crypto::OpenMlsCrypto;

use super::HubRoom;
use crate::store::rows::HubRoomRow;
use crate::{ClientRecord, ClientReply, Engine, Refusal, RequestId, Response};

impl<C: OpenMlsCrypto> Engine<C> {
    pub(crate) fn hub_create_room(
        &mut self,
        id: RequestId,
        client: &ClientRecord,
        room: &str,
        group_info: &[u8],
        ratchet_tree: &[u8],
    ) {
        let room: RoomUri = match room.parse() {
            Ok(r) => r,
            Err(e) => return self.refuse(id, Refusal::uri("room", e)),
        };
        if !room.is_of(&self.cfg.domain) {
            return self.refuse(
                id,
                Refusal::InvalidRoom(format!(
                    "{room} is not a room URI of this hub (mimi://{}/r/<id>)",
                    self.cfg.domain
                )),
            );
        }
        match self.load_room(&room) {
            Ok(true) => return self.refuse(id, Refusal::Exists(format!("room {room}"))),
            Ok(false) => {}
            Err(e) => return self.store_failed(Some(id), e),
        }
        let invalid = |s: String| Refusal::InvalidRoom(s);
        let vgi = match VerifiableGroupInfo::tls_deserialize_exact(group_info) {
            Ok(v) => v,
            Err(e) => {
                return self.refuse(id, invalid(format!("group_info is not a GroupInfo: {e}")));
            }
        };
        let tree = match RatchetTreeIn::tls_deserialize_exact(ratchet_tree) {
            Ok(t) => t,
            Err(e) => {
                return self.refuse(
                    id,
                    invalid(format!("ratchet_tree is not a ratchet tree: {e}")),
                );
            }
        };
        let storage = KvStorage::default();
        let group = match PublicGroup::from_external(
            &self.crypto,
            &storage,
            tree,
            vgi,
            ProposalStore::new(),
        ) {
            Ok((g, _)) => g,
            Err(e) => {
                return self.refuse(
                    id,
                    invalid(format!(
                        "the GroupInfo and tree do not form a valid group: {e:?}"
                    )),
                );
            }
        };
        let es = self.external_sender().to_bytes();
        let first_es = group
            .group_context()
            .extensions()
            .external_senders()
            .and_then(|x| x.first())
            .and_then(|e| e.tls_serialize_detached().ok());
        if first_es.as_deref() != Some(es.as_slice()) {
            return self.refuse(
                id,
                invalid("the group's external_senders extension must list this hub first (see GET /client/v1/hub)".into()),
            );
        }
        let mut r = HubRoom {
            uri: room.clone(),
            row: HubRoomRow {
                group_id: group.group_id().as_slice().to_vec(),
                created_ms: self.now_ms,
                group_info: group_info.to_vec(),
                followers: BTreeSet::new(),
            },
            storage,
            group,
            pending: Vec::new(),
            followers_now: BTreeSet::new(),
            submit_next: 0,
            derived: std::cell::RefCell::new(None),
        };
        let policy = match r.policy() {
            Ok(p) => p,
            Err(e) => return self.refuse(id, invalid(e.to_string())),
        };
        if r.member_users()
            .iter()
            .any(|(_, u)| u.as_ref() != Some(&client.user))
        {
            return self.refuse(
                id,
                invalid("a new room's MLS group may only contain the creator's clients".into()),
            );
        }
        if policy.role_of(client.user.as_str()) == 0 {
            return self.refuse(
                id,
                invalid(format!(
                    "the creator {} must be in the participant list",
                    client.user
                )),
            );
        }
        r.followers_now = r.compute_followers(&self.cfg.domain);
        r.row.followers = r.followers_now.iter().map(|d| d.to_string()).collect();
        let created = RoomCreated {
            room: room.clone(),
            group_id: r.row.group_id.clone().into(),
            epoch: r.epoch(),
        };
        self.hub.rooms.insert(room.clone(), r);
        self.flush_mls(&room);
        self.save_room_row(&room);
        if let Err(e) = self.subscribe(&client.id, &room, true) {
            return self.store_failed(Some(id), e);
        }
        self.respond(id, Response::client(201, ClientReply::RoomCreated(created)));
    }
}
