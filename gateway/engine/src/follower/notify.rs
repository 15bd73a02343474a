//! `/notify` from a room's hub: each FanoutMessage is deduplicated by its bytes (a window per
//! room, decision D26) and delivered to the local clients it concerns: Welcomes to the owners
//! of the KeyPackages they name (who then receive the room), everything else to the room's
//! subscribers. A byte-identical retry is answered 201 and processed once.

use std::sync::Arc;

use bytes::Bytes;
use mimi_proto::client_api::DeliveryKind;
use mimi_proto::codec::{Reader, Wire};
use mimi_proto::messages::{FanoutExtra, FanoutMessage};
use mimi_proto::mls::MlsMessageBody;
use mimi_proto::uri::{Domain, RoomUri};
use openmls_traits::crypto::OpenMlsCrypto;

use crate::store::rows::{self, DeliveryRow, KpOwnerRow};
use crate::store::{StoreError, Table, Write, keys};
use crate::{Engine, Output, Refusal, RequestId, Response};

fn kind_of(m: &FanoutMessage) -> DeliveryKind {
    match m.extra {
        FanoutExtra::Application { .. } => DeliveryKind::Application,
        FanoutExtra::Proposal { .. } => DeliveryKind::Proposal,
        FanoutExtra::Commit { .. } => DeliveryKind::Commit,
        FanoutExtra::Welcome { .. } => DeliveryKind::Welcome,
    }
}

/// Splits a `/notify` body into its FanoutMessages and their exact bytes (no re-encoding).
fn split_batch(body: &Bytes) -> Result<Vec<(FanoutMessage, Bytes)>, mimi_proto::DecodeError> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    loop {
        let start = r.pos();
        let m = FanoutMessage::decode(&mut r)?;
        out.push((m, body.slice(start..r.pos())));
        if r.is_empty() {
            return Ok(out);
        }
    }
}

impl<C: OpenMlsCrypto> Engine<C> {
    /// `/notify` from a hub.
    pub(crate) fn follower_notify(
        &mut self,
        id: RequestId,
        peer: &Domain,
        room: &str,
        body: &Bytes,
    ) {
        let room: RoomUri = match room.parse() {
            Ok(r) => r,
            Err(e) => return self.refuse(id, Refusal::uri("roomId", e)),
        };
        if !room.is_of(peer) {
            return self.refuse(
                id,
                Refusal::NotHub {
                    room: room.to_string(),
                    hub: room.domain().to_string(),
                },
            );
        }
        let batch = match split_batch(body) {
            Ok(b) => b,
            Err(e) => return self.refuse(id, Refusal::malformed("FanoutMessage batch", e)),
        };
        if let Err(e) = self.load_followed(&room) {
            return self.store_failed(Some(id), e);
        }
        for (m, bytes) in batch {
            let hash = crate::sha256(&bytes);
            match self.seen(&room, &hash) {
                Ok(true) => {
                    self.stats.notify_duplicates += 1;
                    continue;
                }
                Ok(false) => {}
                Err(e) => return self.store_failed(Some(id), e),
            }
            if let Err(e) = self.route_fanout(&room, &m, &bytes, hash) {
                return self.store_failed(Some(id), e);
            }
            self.mark_seen(&room, hash);
        }
        self.stats.notify_processed += 1;
        self.respond(id, Response::empty(201));
    }

    fn seen(&self, room: &RoomUri, hash: &[u8; 32]) -> Result<bool, StoreError> {
        if self
            .follower
            .rooms
            .get_ref(room)
            .is_some_and(|f| f.recent.contains(hash))
        {
            return Ok(true);
        }
        Ok(self
            .store
            .get(
                Table::NotifySeen,
                &keys::join(&[room.as_str().as_bytes(), hash]),
            )?
            .is_some())
    }

    fn mark_seen(&mut self, room: &RoomUri, hash: [u8; 32]) {
        let window = self.cfg.limits.notify_dedup_window.max(1);
        let Some(f) = self.follower.rooms.get_mut(room) else {
            return;
        };
        let n = f.seen_next;
        f.seen_next += 1;
        f.recent.insert(hash);
        let rk = room.as_str().as_bytes();
        self.writes.put_raw(
            Table::NotifySeen,
            keys::join(&[rk, &hash]),
            n.to_be_bytes().to_vec(),
        );
        self.writes
            .put_raw(Table::NotifyOrder, keys::with_seq(&[rk], n), hash.to_vec());
        // Forget the arrival `window` places back.
        if let Some(old_n) = n.checked_sub(window) {
            let old_key = keys::with_seq(&[rk], old_n);
            if let Ok(Some(old_hash)) = self.store.get(Table::NotifyOrder, &old_key) {
                self.writes
                    .delete(Table::NotifySeen, keys::join(&[rk, &old_hash]));
            }
            self.writes.delete(Table::NotifyOrder, old_key);
        }
    }

    /// Delivers one FanoutMessage of `room` to the local clients it concerns.
    pub(crate) fn route_fanout(
        &mut self,
        room: &RoomUri,
        m: &FanoutMessage,
        bytes: &Bytes,
        id: [u8; 32],
    ) -> Result<(), StoreError> {
        let body: Arc<[u8]> = Arc::from(&bytes[..]);
        let kind = kind_of(m);
        if let (FanoutExtra::Welcome { .. }, MlsMessageBody::Welcome(w)) =
            (&m.extra, &m.message.body)
        {
            let mut targets = std::collections::BTreeSet::new();
            for r in w.new_members() {
                if let Some(b) = self.store.get(Table::KpOwners, &r.0)? {
                    targets.insert(rows::decode::<KpOwnerRow>(Table::KpOwners, &b)?.client);
                }
            }
            for c in targets {
                self.subscribe(&c, room, true)?;
                self.deliver(&c, room.as_str(), kind, m.timestamp, id, &body);
            }
            return Ok(());
        }
        self.deliver_to_subscribers(room, kind, m.timestamp, id, &body)
    }

    /// Queues an event for every local subscriber of `room`.
    pub(crate) fn deliver_to_subscribers(
        &mut self,
        room: &RoomUri,
        kind: DeliveryKind,
        timestamp: u64,
        id: [u8; 32],
        body: &Arc<[u8]>,
    ) -> Result<(), StoreError> {
        if kind == DeliveryKind::Welcome {
            // A Welcome for this provider's clients, from a room hosted here.
            let Ok(fm) = FanoutMessage::from_bytes(body) else {
                return Ok(());
            };
            return self.route_fanout(room, &fm, &Bytes::copy_from_slice(body), id);
        }
        self.load_followed(room)?;
        let subs: Vec<String> = self
            .follower
            .rooms
            .get_ref(room)
            .map(|f| f.subscribers.iter().cloned().collect())
            .unwrap_or_default();
        for c in subs {
            self.deliver(&c, room.as_str(), kind, timestamp, id, body);
        }
        Ok(())
    }

    /// Appends to one client's queue (the store assigns the sequence number and enforces the
    /// caps) and wakes its readers once committed.
    pub(crate) fn deliver(
        &mut self,
        client: &str,
        room: &str,
        kind: DeliveryKind,
        timestamp: u64,
        id: [u8; 32],
        body: &Arc<[u8]>,
    ) {
        self.writes.push(Write::Deliver {
            client: client.to_owned(),
            row: DeliveryRow {
                room: room.to_owned(),
                kind: kind.value(),
                timestamp,
                body: id,
                bytes: body.len() as u32,
            },
            body: Arc::clone(body),
            cap: self.cfg.limits.delivery_queue,
        });
        self.stats.deliveries += 1;
        self.outputs.push_back(Output::Wake {
            client: client.to_owned(),
        });
    }
}
