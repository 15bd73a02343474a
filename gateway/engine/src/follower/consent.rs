//! Consent (draft-ietf-mimi-protocol §5.8): requests and cancellations travel to the target's
//! provider, grants and revocations are recorded by the target's provider and travel to the
//! requester's; each side delivers the entry to its user's clients. Every URI must belong to
//! the provider that speaks for it.

use std::sync::Arc;

use bytes::Bytes;
use mimi_proto::client_api::DeliveryKind;
use mimi_proto::codec::Wire;
use mimi_proto::directory::Endpoint;
use mimi_proto::messages::{ConsentEntry, ConsentOperation};
use mimi_proto::uri::{Domain, RoomUri, UserUri};
use openmls_traits::crypto::OpenMlsCrypto;

use super::key_packages::consent_key;
use crate::store::rows::ConsentRow;
use crate::store::{StoreError, Table, keys};
use crate::{ClientRecord, Engine, Pending, Refusal, RequestId, Response};

/// A ConsentEntry whose URIs parsed.
struct Entry {
    op: ConsentOperation,
    requester: UserUri,
    target: UserUri,
    room: Option<RoomUri>,
}

fn parse(body: &Bytes) -> Result<Entry, Refusal> {
    let e = ConsentEntry::from_bytes(body).map_err(|e| Refusal::malformed("ConsentEntry", e))?;
    Ok(Entry {
        op: e.consent_operation,
        requester: (&e.requester_uri)
            .try_into()
            .map_err(|x| Refusal::uri("requesterUri", x))?,
        target: (&e.target_uri)
            .try_into()
            .map_err(|x| Refusal::uri("targetUri", x))?,
        room: e
            .room_id
            .as_ref()
            .map(|r| r.try_into().map_err(|x| Refusal::uri("roomId", x)))
            .transpose()?,
    })
}

fn is_request(op: ConsentOperation) -> bool {
    matches!(op, ConsentOperation::Request | ConsentOperation::Cancel)
}

impl<C: OpenMlsCrypto> Engine<C> {
    /// Delivers a ConsentEntry to every client of a local user (unknown users: nothing, and
    /// the caller cannot tell).
    fn deliver_to_user(&mut self, user: &UserUri, body: &Bytes) -> Result<(), StoreError> {
        let prefix = keys::prefix(&[user.name().as_bytes()]);
        let clients = self.store.scan(Table::UserClients, &prefix, None, 1000)?;
        let body: Arc<[u8]> = Arc::from(&body[..]);
        let id = crate::sha256(&body);
        for (k, _) in clients {
            if let Some(c) = keys::tail_text(&k, &prefix) {
                self.deliver(&c, "", DeliveryKind::Consent, self.now_ms, id, &body);
            }
        }
        Ok(())
    }

    fn peer_consent(&mut self, id: RequestId, peer: &Domain, body: &Bytes, requests: bool) {
        let e = match parse(body) {
            Ok(e) => e,
            Err(r) => return self.refuse(id, r),
        };
        if is_request(e.op) != requests {
            return self.refuse(
                id,
                Refusal::Invalid(if requests {
                    "requestConsent carries only request or cancel".into()
                } else {
                    "updateConsent carries only grant or revoke".into()
                }),
            );
        }
        // requestConsent: from the requester's provider to ours (the target's);
        // updateConsent: from the target's provider to ours (the requester's).
        let (theirs, ours) = if requests {
            (&e.requester, &e.target)
        } else {
            (&e.target, &e.requester)
        };
        if !theirs.is_of(peer) {
            return self.refuse(
                id,
                Refusal::NotYours {
                    caller: format!("provider {peer}"),
                    user: theirs.to_string(),
                    action: "send consent",
                },
            );
        }
        if !ours.is_of(&self.cfg.domain) {
            return self.refuse(
                id,
                Refusal::NotFound(format!("{ours} is not a user of {}", self.cfg.domain)),
            );
        }
        let ours = ours.clone();
        if let Err(err) = self.deliver_to_user(&ours, body) {
            return self.store_failed(Some(id), err);
        }
        // 201 even for unknown users (no directory oracle).
        self.respond(id, Response::empty(201));
    }

    pub(crate) fn follower_request_consent(&mut self, id: RequestId, peer: &Domain, body: &Bytes) {
        self.peer_consent(id, peer, body, true);
    }

    pub(crate) fn follower_update_consent(&mut self, id: RequestId, peer: &Domain, body: &Bytes) {
        self.peer_consent(id, peer, body, false);
    }

    /// A local client's ConsentEntry: a request or cancellation for its own user goes to the
    /// target's provider; a grant or revocation by its own user is recorded, then goes to the
    /// requester's provider.
    pub(crate) fn client_consent(&mut self, id: RequestId, client: &ClientRecord, body: &Bytes) {
        let e = match parse(body) {
            Ok(e) => e,
            Err(r) => return self.refuse(id, r),
        };
        let (mine, other, endpoint) = if is_request(e.op) {
            (&e.requester, &e.target, Endpoint::RequestConsent)
        } else {
            (&e.target, &e.requester, Endpoint::UpdateConsent)
        };
        if *mine != client.user {
            return self.refuse(
                id,
                Refusal::NotYours {
                    caller: format!("client {}", client.uri),
                    user: mine.to_string(),
                    action: "send consent",
                },
            );
        }
        if !is_request(e.op) {
            let key = consent_key(
                client.user.as_str(),
                e.requester.as_str(),
                e.room.as_ref().map(RoomUri::as_str),
            );
            self.writes.put(
                Table::Consent,
                key,
                &ConsentRow {
                    granted: e.op == ConsentOperation::Grant,
                    updated_ms: self.now_ms,
                },
            );
        }
        let other = other.clone();
        if other.is_of(&self.cfg.domain) {
            if let Err(err) = self.deliver_to_user(&other, body) {
                return self.store_failed(Some(id), err);
            }
            return self.respond(id, Response::empty(201));
        }
        let domain = other.domain().clone();
        let why = Pending::Relay {
            reply_to: id,
            endpoint,
            room: None,
            target_domain: domain.clone(),
            member: None,
        };
        self.send(&domain, endpoint, other.as_str(), body.clone(), why);
    }
}
