//! `/keyMaterial`: served here for this provider's users, proxied when this hub hosts the named
//! room (recording which provider each KeyPackage came from, so that an add of a device is
//! accepted only with a KeyPackage its own provider served), forwarded for local clients.
//!
//! Who may ask: a local client for its own user; a peer for its own users; and the hub of the
//! named room, proxying for a participant of another provider: such a request is served only
//! where consent is open, or with consent the target user gave that requester **for that
//! room** (a hub cannot borrow consent given outside its room).

use bytes::Bytes;
use mimi_proto::codec::Wire;
use mimi_proto::directory::Endpoint;
use mimi_proto::messages::{
    ClientKeyMaterial, KeyMaterialRequest, KeyMaterialResponse, UpdateOutcome, UpdateRoomResponse,
};
use mimi_proto::uri::{ClientUri, Domain, RoomUri, UriError, UserUri};
use openmls_traits::crypto::OpenMlsCrypto;

use super::Caller;
use crate::store::rows::KpRouteRow;
use crate::store::{Table, keys};
use crate::{Engine, Pending, Refusal, RequestId, Response, SendError};

/// A KeyMaterialRequest whose identifiers parsed.
pub(crate) struct KmRequest {
    pub(crate) req: KeyMaterialRequest,
    pub(crate) requester: UserUri,
    pub(crate) target: UserUri,
    pub(crate) room: Option<RoomUri>,
}

impl<C: OpenMlsCrypto> Engine<C> {
    fn parse_km(&self, target: &str, body: &Bytes) -> Result<KmRequest, Refusal> {
        let req = KeyMaterialRequest::from_bytes(body)
            .map_err(|e| Refusal::malformed("KeyMaterialRequest", e))?;
        if req.target_user.as_str() != target {
            return Err(Refusal::PathMismatch {
                path: target.to_owned(),
                body: req.target_user.to_string(),
            });
        }
        let requester: UserUri = (&req.requesting_user)
            .try_into()
            .map_err(|e| Refusal::uri("requestingUser", e))?;
        let target: UserUri = (&req.target_user)
            .try_into()
            .map_err(|e| Refusal::uri("targetUser", e))?;
        let room = if req.room_id.as_str().is_empty() {
            None
        } else {
            Some(
                (&req.room_id)
                    .try_into()
                    .map_err(|e| Refusal::uri("roomId", e))?,
            )
        };
        let cred = req
            .requester_credential
            .basic_identity()
            .ok_or(UriError::NotMimi(String::new()))
            .and_then(ClientUri::from_credential_identity)
            .map_err(|e| Refusal::uri("requesterCredential", e))?;
        if cred.user() != requester {
            return Err(Refusal::CredentialMismatch(format!(
                "requesterCredential {cred} does not belong to requestingUser {requester}"
            )));
        }
        let suite = req.signing_suite().unwrap_or(0);
        mimi_proto::crypto::verify_with_label(
            &self.crypto,
            suite,
            &req.requester_signature_key,
            KeyMaterialRequest::LABEL,
            &req.tbs(),
            &req.key_material_request_signature,
        )
        .map_err(|_| Refusal::BadSignature("KeyMaterialRequest"))?;
        Ok(KmRequest {
            req,
            requester,
            target,
            room,
        })
    }

    pub(crate) fn key_material(
        &mut self,
        id: RequestId,
        caller: &Caller,
        target: &str,
        body: &Bytes,
    ) {
        let km = match self.parse_km(target, body) {
            Ok(k) => k,
            Err(r) => return self.refuse(id, r),
        };
        // Who may ask for whom.
        let proxied = match caller {
            Caller::Local(c) if c.user == km.requester => false,
            Caller::Peer(p) if km.requester.is_of(p) => false,
            // The hub of the named room, proxying for one of its participants.
            Caller::Peer(p) if km.room.as_ref().is_some_and(|r| r.is_of(p)) => true,
            _ => {
                return self.refuse(
                    id,
                    caller.not_yours(km.requester.as_str(), "request key material"),
                );
            }
        };
        // A named room hosted here must exist and hold the requester (read as committed: this
        // shard serves the target user and may not be the one ordering the room).
        let hosted_room = match &km.room {
            Some(r) if r.is_of(&self.cfg.domain) => Some(r.clone()),
            _ => None,
        };
        if let Some(r) = &hosted_room {
            let room = match self.hub.rooms.get_ref(r) {
                Some(_) => None,
                None => match self.fetch_room(r) {
                    Ok(room) => room,
                    Err(e) => return self.store_failed(Some(id), e),
                },
            };
            let allowed = room
                .as_ref()
                .or_else(|| self.hub.rooms.get_ref(r))
                .and_then(|room| room.effective_policy().ok())
                .is_some_and(|p| {
                    p.role_of(km.requester.as_str()) != 0 && !p.is_banned(km.requester.as_str())
                });
            if !allowed {
                return self.refuse(
                    id,
                    Refusal::NotParticipant {
                        user: km.requester.to_string(),
                        room: r.to_string(),
                    },
                );
            }
        }
        let target_domain = km.target.domain().clone();
        let local_caller = matches!(caller, Caller::Local(_));
        // A local client's request for a room hosted elsewhere always goes through that room's
        // hub (even for a user of this provider): the hub records where each KeyPackage came
        // from, and accepts an added device only with a KeyPackage it saw.
        if let (true, Some(room)) = (local_caller, &km.room)
            && hosted_room.is_none()
        {
            let hub = room.domain().clone();
            let why = Pending::Relay {
                reply_to: id,
                endpoint: Endpoint::KeyMaterial,
                room: None,
                target_domain: hub.clone(),
                member: None,
            };
            self.send(
                &hub,
                Endpoint::KeyMaterial,
                km.target.as_str(),
                body.clone(),
                why,
            );
            return;
        }
        if target_domain == self.cfg.domain {
            let peer = match caller {
                Caller::Peer(p) => Some(p.clone()),
                Caller::Local(_) => None,
            };
            let resp = match self.serve_key_material(&km, peer.as_ref(), proxied) {
                Ok(r) => r,
                Err(r) => return self.refuse(id, r),
            };
            if let Some(r) = &hosted_room {
                self.record_kp_routes(r, &resp, &target_domain);
            }
            return self.respond(id, Response::mimi(resp.to_bytes()));
        }
        // Another provider's user: proxied by this hub for its room, or asked directly.
        if hosted_room.is_none() && !local_caller {
            return self.refuse(
                id,
                Refusal::NotFound(format!(
                    "{} is not a user of {} and no room hosted here is named",
                    km.target, self.cfg.domain
                )),
            );
        }
        let why = Pending::Relay {
            reply_to: id,
            endpoint: Endpoint::KeyMaterial,
            room: hosted_room,
            target_domain: target_domain.clone(),
            member: None,
        };
        self.send(
            &target_domain,
            Endpoint::KeyMaterial,
            km.target.as_str(),
            body.clone(),
            why,
        );
    }

    /// Remembers which provider served each KeyPackage for `room` (checked when a commit adds
    /// it, used to route the Welcome; dropped with the KeyPackage's lifetime).
    pub(crate) fn record_kp_routes(
        &mut self,
        room: &RoomUri,
        resp: &KeyMaterialResponse,
        domain: &Domain,
    ) {
        for c in &resp.clients {
            if let ClientKeyMaterial::Success { key_package, .. } = c
                && let Some(kpref) = key_package.reference()
            {
                let not_after = match &key_package.leaf_node.leaf_node_source {
                    mimi_proto::mls::LeafNodeSource::KeyPackage(l) => l.not_after,
                    _ => 0,
                };
                self.writes.put(
                    Table::HubKpRoutes,
                    keys::join(&[room.as_str().as_bytes(), &kpref.0]),
                    &KpRouteRow {
                        domain: domain.to_string(),
                        not_after,
                    },
                );
            }
        }
    }

    pub(crate) fn relay_reply(
        &mut self,
        reply_to: RequestId,
        endpoint: Endpoint,
        room: Option<&RoomUri>,
        target_domain: &Domain,
        member: Option<&str>,
        result: Result<crate::Reply, SendError>,
    ) {
        match result {
            Ok(reply) => {
                if let (Some(client), Some(room)) = (member, room)
                    && reply.status == 200
                    && UpdateRoomResponse::from_bytes(&reply.body)
                        .is_ok_and(|r| matches!(r.outcome, UpdateOutcome::Success { .. }))
                    && let Err(e) = self.subscribe(client, room, true)
                {
                    return self.store_failed(Some(reply_to), e);
                }
                if endpoint == Endpoint::KeyMaterial
                    && reply.status == 200
                    && let (Some(room), Ok(resp)) =
                        (room, KeyMaterialResponse::from_bytes(&reply.body))
                {
                    // Only what the target's own provider answered counts as from it.
                    self.record_kp_routes(room, &resp, target_domain);
                }
                self.respond(reply_to, Response::relay(&reply));
            }
            Err(e) => self.refuse(
                reply_to,
                Refusal::PeerUnreachable {
                    peer: target_domain.clone(),
                    reason: e.to_string(),
                },
            ),
        }
    }
}
