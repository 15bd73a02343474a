//! The follower side: local users and clients, their KeyPackages and consent, identifier
//! queries, `/notify` from hubs (deduplicated, Welcomes routed by KeyPackageRef) and the
//! delivery queue of every local client.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use mimi_proto::codec::Wire;
use mimi_proto::directory::Endpoint;
use mimi_proto::messages::{
    ClientKeyMaterial, ConsentEntry, ConsentOperation, FanoutBatch, FanoutExtra,
    IdentifierQueryCode, IdentifierRequest, IdentifierResponse, KeyMaterialRequest,
    KeyMaterialResponse, KeyMaterialUserCode, Protocol, SearchIdentifierType,
};
use mimi_proto::mls::{KeyPackage, MlsMessageBody};
use openmls::prelude::tls_codec::Deserialize as _;
use serde_json::json;

use crate::hub::Caller;
use crate::state::{
    ClientRecord, ConsentRecord, Delivery, DeliveryMeta, FollowedRoom, KeyPackageRecord,
    UserRecord, decode, keys,
};
use crate::{
    ClientCall, ConsentPolicy, Engine, Output, Pending, RequestId, Response, ids, sha256_hex,
};

/// Everything the follower side keeps.
#[derive(Debug, Default)]
pub(crate) struct FollowerState {
    pub(crate) clients: BTreeMap<String, ClientRecord>,
    pub(crate) token_index: BTreeMap<String, String>,
    pub(crate) users: BTreeMap<String, UserRecord>,
    /// (client id, KeyPackageRef hex) → unused KeyPackage.
    pub(crate) key_packages: BTreeMap<(String, String), KeyPackageRecord>,
    /// KeyPackageRef hex → client id (kept after hand-out, for Welcome routing).
    pub(crate) kp_routes: BTreeMap<String, String>,
    /// "target|requester|room-or-*" → decision.
    pub(crate) consent: BTreeMap<String, ConsentRecord>,
    pub(crate) deliveries: BTreeMap<String, BTreeMap<u64, Delivery>>,
    pub(crate) delivery_meta: BTreeMap<String, DeliveryMeta>,
    pub(crate) followed: BTreeMap<String, FollowedRoom>,
    /// Per hub: seen hashes in arrival order, for the rolling deduplication window.
    seen_order: BTreeMap<String, VecDeque<(u64, String)>>,
    seen: BTreeSet<(String, String)>,
    seen_counter: u64,
}

impl FollowerState {
    pub(crate) fn restore(&mut self, key: &str, v: &[u8]) -> bool {
        if let Some(id) = key.strip_prefix(keys::CLIENT) {
            let Some(r) = decode::<ClientRecord>(v) else {
                return false;
            };
            self.token_index.insert(r.token_hash.clone(), id.to_owned());
            self.clients.insert(id.to_owned(), r);
        } else if let Some(name) = key.strip_prefix(keys::USER) {
            let Some(r) = decode(v) else { return false };
            self.users.insert(name.to_owned(), r);
        } else if let Some(rest) = key.strip_prefix(keys::KEY_PACKAGE) {
            let Some((client, r)) = rest.rsplit_once('/') else {
                return false;
            };
            let Some(rec) = decode(v) else { return false };
            self.key_packages
                .insert((client.to_owned(), r.to_owned()), rec);
        } else if let Some(r) = key.strip_prefix(keys::KP_ROUTE) {
            let Some(c) = decode(v) else { return false };
            self.kp_routes.insert(r.to_owned(), c);
        } else if let Some(k) = key.strip_prefix(keys::CONSENT) {
            let Some(c) = decode(v) else { return false };
            self.consent.insert(k.to_owned(), c);
        } else if let Some(rest) = key.strip_prefix(keys::DELIVERY) {
            let Some((client, _)) = rest.rsplit_once('/') else {
                return false;
            };
            let Some(d) = decode::<Delivery>(v) else {
                return false;
            };
            self.deliveries
                .entry(client.to_owned())
                .or_default()
                .insert(d.seq, d);
        } else if let Some(client) = key.strip_prefix(keys::DELIVERY_META) {
            let Some(m) = decode(v) else { return false };
            self.delivery_meta.insert(client.to_owned(), m);
        } else if let Some(room) = key.strip_prefix(keys::FOLLOWED) {
            let Some(f) = decode(v) else { return false };
            self.followed.insert(room.to_owned(), f);
        } else if let Some(rest) = key.strip_prefix(keys::NOTIFY_SEEN) {
            let Some((hub, hash)) = rest.split_once('/') else {
                return false;
            };
            let Some(n) = decode::<u64>(v) else {
                return false;
            };
            self.seen_counter = self.seen_counter.max(n + 1);
            let order = self.seen_order.entry(hub.to_owned()).or_default();
            let at = order.partition_point(|(m, _)| *m < n);
            order.insert(at, (n, hash.to_owned()));
            self.seen.insert((hub.to_owned(), hash.to_owned()));
        } else if key.starts_with(keys::CONSENT_REQUEST) {
            // Informational records; nothing to rebuild.
        }
        true
    }

    /// The client owning a bearer token.
    pub(crate) fn client_by_token(&self, token_hash: &[u8; 32]) -> Option<&ClientRecord> {
        self.token_index
            .get(&hex::encode(token_hash))
            .and_then(|id| self.clients.get(id))
    }

    fn clients_of_user(&self, user: &str) -> Vec<&ClientRecord> {
        self.clients.values().filter(|c| c.user == user).collect()
    }

    pub(crate) fn subscribers(&self, room: &str) -> Vec<String> {
        self.clients
            .values()
            .filter(|c| c.rooms.contains(room))
            .map(|c| c.client_id.clone())
            .collect()
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

fn consent_key(target: &str, requester: &str, room: Option<&str>) -> String {
    format!("{target}|{requester}|{}", room.unwrap_or("*"))
}

impl Engine {
    pub(crate) fn handle_client(
        &mut self,
        id: RequestId,
        token_hash: Option<[u8; 32]>,
        call: ClientCall,
    ) {
        if let ClientCall::Register {
            user,
            device,
            display_name,
            new_token_hash,
        } = call
        {
            return self.client_register(id, &user, &device, &display_name, new_token_hash);
        }
        if call == ClientCall::HubInfo {
            return self.hub_info(id);
        }
        let Some(client) = token_hash
            .and_then(|t| self.follower.client_by_token(&t))
            .cloned()
        else {
            return self.respond(
                id,
                Response::text(
                    401,
                    "missing or unknown client token; register with POST /client/v1/register",
                ),
            );
        };
        match call {
            ClientCall::PublishKeyPackages(kps) => self.client_publish(id, &client, kps),
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
                if endpoint == Endpoint::KeyMaterial {
                    self.key_material(id, &caller, &target, &body);
                } else {
                    self.hub_request(id, &caller, endpoint, &target, &body);
                }
            }
            ClientCall::Consent(body) => self.client_consent(id, &client, &body),
            ClientCall::IdentifierQuery { domain, body } => {
                if domain == self.cfg.domain {
                    self.follower_identifier_query(id, &domain, &body);
                } else {
                    let why = Pending::Relay {
                        reply_to: id,
                        endpoint: Endpoint::IdentifierQuery,
                        room: None,
                        target_domain: domain.clone(),
                    };
                    self.send(&domain, Endpoint::IdentifierQuery, &domain, body, why);
                }
            }
            ClientCall::Events { after, limit } => self.client_events(id, &client, after, limit),
            ClientCall::Ack { upto } => self.client_ack(id, &client, upto),
            ClientCall::Whoami => self.respond(
                id,
                Response::json(
                    200,
                    &json!({"client_id": client.client_id, "user": client.user, "client_uri": client.client_uri}),
                ),
            ),
            ClientCall::Subscribe { room, on } => {
                if !ids::is_room_uri(&room) {
                    return self.respond(
                        id,
                        Response::text(
                            400,
                            format!("{room} is not a room URI (mimi://domain/r/id)"),
                        ),
                    );
                }
                self.subscribe(&client.client_id, &room, on);
                self.respond(
                    id,
                    Response::json(200, &json!({"room": room, "subscribed": on})),
                );
            }
            ClientCall::Register { .. } | ClientCall::HubInfo => {}
        }
    }

    fn client_register(
        &mut self,
        id: RequestId,
        user: &str,
        device: &str,
        display_name: &str,
        token_hash: [u8; 32],
    ) {
        if !valid_name(user) || !valid_name(device) {
            return self.respond(
                id,
                Response::text(400, "user and device names must be 1..64 of [a-z0-9._-]"),
            );
        }
        let client_id = format!("{user}/{device}");
        if self.follower.clients.contains_key(&client_id) {
            return self.respond(
                id,
                Response::text(409, format!("client {client_id} is already registered")),
            );
        }
        let user_uri = ids::user_uri(&self.cfg.domain, user);
        let client_uri = ids::client_uri(&self.cfg.domain, user, device);
        let rec = ClientRecord {
            client_id: client_id.clone(),
            user: user_uri.clone(),
            client_uri: client_uri.clone(),
            token_hash: hex::encode(token_hash),
            rooms: BTreeSet::new(),
        };
        self.writes
            .put(format!("{}{client_id}", keys::CLIENT), &rec);
        self.follower
            .token_index
            .insert(rec.token_hash.clone(), client_id.clone());
        self.follower.clients.insert(client_id.clone(), rec);
        if !self.follower.users.contains_key(user) {
            let u = UserRecord {
                user: user_uri.clone(),
                display_name: if display_name.is_empty() {
                    user.to_owned()
                } else {
                    display_name.to_owned()
                },
                discoverable: true,
            };
            self.writes.put(format!("{}{user}", keys::USER), &u);
            self.follower.users.insert(user.to_owned(), u);
        }
        self.respond(
            id,
            Response::json(
                201,
                &json!({"client_id": client_id, "user": user_uri, "client_uri": client_uri}),
            ),
        );
    }

    fn client_publish(&mut self, id: RequestId, client: &ClientRecord, kps: Vec<Vec<u8>>) {
        let have = self
            .follower
            .key_packages
            .keys()
            .filter(|(c, _)| *c == client.client_id)
            .count();
        if have + kps.len() > self.cfg.limits.max_key_packages_per_client {
            return self.respond(
                id,
                Response::text(
                    413,
                    format!(
                        "at most {} unused KeyPackages per client",
                        self.cfg.limits.max_key_packages_per_client
                    ),
                ),
            );
        }
        let mut checked = Vec::with_capacity(kps.len());
        for (i, raw) in kps.iter().enumerate() {
            let kp = match KeyPackage::from_bytes(raw) {
                Ok(kp) => kp,
                Err(e) => {
                    return self.respond(id, Response::text(400, format!("KeyPackage {i}: {e}")));
                }
            };
            let verified = openmls::prelude::KeyPackageIn::tls_deserialize_exact(raw)
                .map_err(|e| e.to_string())
                .and_then(|k| {
                    k.validate(&self.crypto, openmls::prelude::ProtocolVersion::Mls10)
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = verified {
                return self.respond(
                    id,
                    Response::text(400, format!("KeyPackage {i} does not validate: {e}")),
                );
            }
            if kp.leaf_node.credential.basic_identity() != Some(client.client_uri.as_bytes()) {
                return self.respond(
                    id,
                    Response::text(
                        403,
                        format!(
                            "KeyPackage {i} is not for {} (its credential must be that client URI)",
                            client.client_uri
                        ),
                    ),
                );
            }
            let not_after = match &kp.leaf_node.leaf_node_source {
                mimi_proto::mls::LeafNodeSource::KeyPackage(l) => l.not_after,
                _ => 0,
            };
            if not_after <= self.now_ms / 1000 {
                return self.respond(
                    id,
                    Response::text(400, format!("KeyPackage {i} has expired")),
                );
            }
            let Some(r) = kp.reference() else {
                return self.respond(
                    id,
                    Response::text(
                        400,
                        format!(
                            "KeyPackage {i} uses unsupported cipher suite {}",
                            kp.cipher_suite
                        ),
                    ),
                );
            };
            checked.push((
                hex::encode(&r.0),
                KeyPackageRecord {
                    client_id: client.client_id.clone(),
                    key_package: hex::encode(raw),
                    cipher_suite: kp.cipher_suite,
                    not_after,
                },
            ));
        }
        let n = checked.len();
        for (r, rec) in checked {
            self.writes.put(
                format!("{}{}/{r}", keys::KEY_PACKAGE, client.client_id),
                &rec,
            );
            self.writes
                .put(format!("{}{r}", keys::KP_ROUTE), &client.client_id);
            self.follower
                .kp_routes
                .insert(r.clone(), client.client_id.clone());
            self.follower
                .key_packages
                .insert((client.client_id.clone(), r), rec);
        }
        self.respond(id, Response::json(200, &json!({"published": n})));
    }

    /// Serves KeyPackages of a local user (consent checked, each KeyPackage handed out once).
    pub(crate) fn serve_key_material(&mut self, req: &KeyMaterialRequest) -> KeyMaterialResponse {
        let target = req.target_user.as_str();
        let empty = |status| KeyMaterialResponse {
            protocol: Protocol::Mls10,
            user_status: status,
            user_uri: req.target_user.clone(),
            clients: vec![],
        };
        let Some(name) = ids::user_name(target) else {
            return empty(KeyMaterialUserCode::UserUnknown);
        };
        if !self.follower.users.contains_key(name) {
            return empty(KeyMaterialUserCode::UserUnknown);
        }
        if self.cfg.consent == ConsentPolicy::Required {
            let requester = req.requesting_user.as_str();
            let room = (!req.room_id.as_str().is_empty()).then(|| req.room_id.as_str());
            let any = self
                .follower
                .consent
                .get(&consent_key(target, requester, None))
                .is_some_and(|c| c.granted);
            let this_room = room.is_some_and(|r| {
                self.follower
                    .consent
                    .get(&consent_key(target, requester, Some(r)))
                    .is_some_and(|c| c.granted)
            });
            if !any && !this_room {
                let room_only = self.follower.consent.keys().any(|k| {
                    k.starts_with(&format!("{target}|{requester}|")) && !k.ends_with("|*")
                });
                return empty(if room_only {
                    KeyMaterialUserCode::NoConsentForThisRoom
                } else {
                    KeyMaterialUserCode::NoConsent
                });
            }
        }
        let now_s = self.now_ms / 1000;
        let clients: Vec<ClientRecord> = self
            .follower
            .clients_of_user(target)
            .into_iter()
            .cloned()
            .collect();
        let mut out = Vec::new();
        let mut successes = 0;
        let mut incompatible = 0;
        for c in &clients {
            let candidates: Vec<(String, KeyPackageRecord)> = self
                .follower
                .key_packages
                .range((c.client_id.clone(), String::new())..)
                .take_while(|((cid, _), _)| *cid == c.client_id)
                .map(|((_, r), rec)| (r.clone(), rec.clone()))
                .collect();
            let live: Vec<&(String, KeyPackageRecord)> = candidates
                .iter()
                .filter(|(_, k)| k.not_after > now_s)
                .collect();
            let pick = live.iter().find(|(_, k)| {
                req.acceptable_ciphersuites.contains(&k.cipher_suite) && self.kp_satisfies(k, req)
            });
            let client_uri = mimi_proto::codec::Uri::from(c.client_uri.as_str());
            match pick {
                Some((r, rec)) => {
                    let raw = hex::decode(&rec.key_package).unwrap_or_default();
                    if let Ok(kp) = KeyPackage::from_bytes(&raw) {
                        self.writes
                            .delete(format!("{}{}/{r}", keys::KEY_PACKAGE, c.client_id));
                        self.follower
                            .key_packages
                            .remove(&(c.client_id.clone(), r.clone()));
                        out.push(ClientKeyMaterial::Success {
                            client_uri,
                            key_package: kp,
                        });
                        successes += 1;
                    }
                }
                None if !live.is_empty() => {
                    out.push(ClientKeyMaterial::NothingCompatible {
                        client_uri,
                        client_capabilities: None,
                    });
                    incompatible += 1;
                }
                None => out.push(ClientKeyMaterial::KeyMaterialExhausted { client_uri }),
            }
            // Expired KeyPackages are never handed out; drop them.
            for (r, _) in candidates.iter().filter(|(_, k)| k.not_after <= now_s) {
                self.writes
                    .delete(format!("{}{}/{r}", keys::KEY_PACKAGE, c.client_id));
                self.follower
                    .key_packages
                    .remove(&(c.client_id.clone(), r.clone()));
            }
        }
        let user_status = if successes > 0 && successes == out.len() {
            KeyMaterialUserCode::Success
        } else if successes > 0 {
            KeyMaterialUserCode::PartialSuccess
        } else if incompatible > 0 || !out.is_empty() {
            KeyMaterialUserCode::NoCompatibleMaterial
        } else {
            return empty(KeyMaterialUserCode::NoCompatibleMaterial);
        };
        KeyMaterialResponse {
            protocol: Protocol::Mls10,
            user_status,
            user_uri: req.target_user.clone(),
            clients: out,
        }
    }

    fn kp_satisfies(&self, k: &KeyPackageRecord, req: &KeyMaterialRequest) -> bool {
        let Ok(kp) = KeyPackage::from_bytes(&hex::decode(&k.key_package).unwrap_or_default())
        else {
            return false;
        };
        let caps = &kp.leaf_node.capabilities;
        let rc = &req.required_capabilities;
        // Default (RFC 9420 §7.2) extension, proposal and credential types need no listing.
        let ext_ok = rc
            .extension_types
            .iter()
            .all(|t| *t <= 5 || caps.extensions.contains(t));
        let prop_ok = rc
            .proposal_types
            .iter()
            .all(|t| *t <= 7 || caps.proposals.contains(t));
        let cred_ok = rc
            .credential_types
            .iter()
            .all(|t| caps.credentials.contains(t) || (*t == 1 && caps.credentials.is_empty()));
        ext_ok && prop_ok && cred_ok
    }

    pub(crate) fn follower_request_consent(&mut self, id: RequestId, peer: &str, body: &[u8]) {
        let entry = match ConsentEntry::from_bytes(body) {
            Ok(e) => e,
            Err(e) => {
                return self.respond(
                    id,
                    Response::text(400, format!("malformed ConsentEntry: {e}")),
                );
            }
        };
        if !matches!(
            entry.consent_operation,
            ConsentOperation::Request | ConsentOperation::Cancel
        ) {
            return self.respond(
                id,
                Response::text(400, "requestConsent carries only request or cancel"),
            );
        }
        if ids::domain_of(entry.requester_uri.as_str()) != Some(peer) {
            return self.respond(
                id,
                Response::text(
                    403,
                    format!(
                        "requesterUri {} is not a user of {peer}",
                        entry.requester_uri
                    ),
                ),
            );
        }
        if ids::domain_of(entry.target_uri.as_str()) != Some(self.cfg.domain.as_str()) {
            return self.respond(
                id,
                Response::text(
                    403,
                    format!(
                        "targetUri {} is not a user of {}",
                        entry.target_uri, self.cfg.domain
                    ),
                ),
            );
        }
        let key = format!(
            "{}{}",
            keys::CONSENT_REQUEST,
            consent_key(
                entry.target_uri.as_str(),
                entry.requester_uri.as_str(),
                entry.room_id.as_ref().map(|r| r.as_str())
            )
        );
        if entry.consent_operation == ConsentOperation::Request {
            self.writes.put(key, &self.now_ms);
        } else {
            self.writes.delete(key);
        }
        self.deliver_to_user(entry.target_uri.as_str(), "", "consent", body);
        // 201 even for unknown users (privacy).
        self.respond(id, Response::empty(201));
    }

    pub(crate) fn follower_update_consent(&mut self, id: RequestId, peer: &str, body: &[u8]) {
        let entry = match ConsentEntry::from_bytes(body) {
            Ok(e) => e,
            Err(e) => {
                return self.respond(
                    id,
                    Response::text(400, format!("malformed ConsentEntry: {e}")),
                );
            }
        };
        if !matches!(
            entry.consent_operation,
            ConsentOperation::Grant | ConsentOperation::Revoke
        ) {
            return self.respond(
                id,
                Response::text(400, "updateConsent carries only grant or revoke"),
            );
        }
        if ids::domain_of(entry.target_uri.as_str()) != Some(peer) {
            return self.respond(
                id,
                Response::text(
                    403,
                    format!("targetUri {} is not a user of {peer}", entry.target_uri),
                ),
            );
        }
        if ids::domain_of(entry.requester_uri.as_str()) != Some(self.cfg.domain.as_str()) {
            return self.respond(
                id,
                Response::text(
                    403,
                    format!(
                        "requesterUri {} is not a user of {}",
                        entry.requester_uri, self.cfg.domain
                    ),
                ),
            );
        }
        self.deliver_to_user(entry.requester_uri.as_str(), "", "consent", body);
        self.respond(id, Response::empty(201));
    }

    fn client_consent(&mut self, id: RequestId, client: &ClientRecord, body: &[u8]) {
        let entry = match ConsentEntry::from_bytes(body) {
            Ok(e) => e,
            Err(e) => {
                return self.respond(
                    id,
                    Response::text(400, format!("malformed ConsentEntry: {e}")),
                );
            }
        };
        let room = entry.room_id.as_ref().map(|r| r.as_str().to_owned());
        match entry.consent_operation {
            ConsentOperation::Request | ConsentOperation::Cancel => {
                if entry.requester_uri.as_str() != client.user {
                    return self.respond(
                        id,
                        Response::text(403, "a client asks consent only for its own user"),
                    );
                }
                let Some(domain) = ids::domain_of(entry.target_uri.as_str()).map(str::to_owned)
                else {
                    return self.respond(
                        id,
                        Response::text(400, "targetUri is not a mimi:// user URI"),
                    );
                };
                if domain == self.cfg.domain {
                    self.deliver_to_user(entry.target_uri.as_str(), "", "consent", body);
                    return self.respond(id, Response::empty(201));
                }
                let why = Pending::Relay {
                    reply_to: id,
                    endpoint: Endpoint::RequestConsent,
                    room,
                    target_domain: domain.clone(),
                };
                self.send(
                    &domain,
                    Endpoint::RequestConsent,
                    entry.target_uri.as_str(),
                    body.to_vec(),
                    why,
                );
            }
            ConsentOperation::Grant | ConsentOperation::Revoke => {
                if entry.target_uri.as_str() != client.user {
                    return self.respond(
                        id,
                        Response::text(
                            403,
                            "a client grants or revokes consent only for its own user",
                        ),
                    );
                }
                let granted = entry.consent_operation == ConsentOperation::Grant;
                let key = consent_key(&client.user, entry.requester_uri.as_str(), room.as_deref());
                let rec = ConsentRecord {
                    granted,
                    updated_ms: self.now_ms,
                };
                self.writes.put(format!("{}{key}", keys::CONSENT), &rec);
                self.follower.consent.insert(key, rec);
                let Some(domain) = ids::domain_of(entry.requester_uri.as_str()).map(str::to_owned)
                else {
                    return self.respond(
                        id,
                        Response::text(400, "requesterUri is not a mimi:// user URI"),
                    );
                };
                if domain == self.cfg.domain {
                    self.deliver_to_user(entry.requester_uri.as_str(), "", "consent", body);
                    return self.respond(id, Response::empty(201));
                }
                let why = Pending::Relay {
                    reply_to: id,
                    endpoint: Endpoint::UpdateConsent,
                    room,
                    target_domain: domain.clone(),
                };
                self.send(
                    &domain,
                    Endpoint::UpdateConsent,
                    entry.requester_uri.as_str(),
                    body.to_vec(),
                    why,
                );
            }
        }
    }

    pub(crate) fn follower_identifier_query(&mut self, id: RequestId, target: &str, body: &[u8]) {
        if target != self.cfg.domain {
            return self.respond(
                id,
                Response::text(
                    404,
                    format!(
                        "this gateway answers identifier queries for {} only",
                        self.cfg.domain
                    ),
                ),
            );
        }
        let req = match IdentifierRequest::from_bytes(body) {
            Ok(r) => r,
            Err(e) => {
                return self.respond(
                    id,
                    Response::text(400, format!("malformed IdentifierRequest: {e}")),
                );
            }
        };
        let reply = |code| IdentifierResponse {
            response_code: code,
            uri: vec![],
            found_profiles: vec![],
            id_response_extensions: Default::default(),
        };
        if req.query_elements.is_empty() {
            return self.respond(
                id,
                Response::mimi(reply(IdentifierQueryCode::Ambiguous).to_bytes()),
            );
        }
        let mut found = Vec::new();
        'users: for (name, u) in &self.follower.users {
            if !u.discoverable {
                continue;
            }
            for q in &req.query_elements {
                let v = q.search_value.0.as_str();
                let hit = match q.search_type {
                    SearchIdentifierType::Handle => v == u.user,
                    SearchIdentifierType::Nick => v == name,
                    SearchIdentifierType::PartialName => {
                        !v.is_empty() && u.display_name.to_lowercase().contains(&v.to_lowercase())
                    }
                    SearchIdentifierType::WholeProfile => {
                        !v.is_empty() && (u.display_name.contains(v) || name.contains(v))
                    }
                    _ => {
                        return self.respond(
                            id,
                            Response::mimi(reply(IdentifierQueryCode::UnsupportedField).to_bytes()),
                        );
                    }
                };
                if !hit {
                    continue 'users;
                }
            }
            found.push(mimi_proto::codec::Uri::from(u.user.as_str()));
        }
        let mut resp = reply(if found.is_empty() {
            IdentifierQueryCode::NotFound
        } else {
            IdentifierQueryCode::Success
        });
        resp.uri = found;
        self.respond(id, Response::mimi(resp.to_bytes()));
    }

    /// `/notify` from a hub.
    pub(crate) fn follower_notify(&mut self, id: RequestId, peer: &str, room: &str, body: &[u8]) {
        if !ids::is_room_uri(room) {
            return self.respond(
                id,
                Response::text(
                    400,
                    format!("{room} is not a room URI (mimi://domain/r/id)"),
                ),
            );
        }
        if ids::domain_of(room) != Some(peer) {
            return self.respond(
                id,
                Response::text(
                    403,
                    format!(
                        "only the room's hub ({}) may notify for {room}",
                        ids::domain_of(room).unwrap_or("?")
                    ),
                ),
            );
        }
        let body_hash = sha256_hex(body);
        if self
            .follower
            .seen
            .contains(&(peer.to_owned(), body_hash.clone()))
        {
            self.stats.notify_duplicates += 1;
            return self.respond(id, Response::empty(201));
        }
        let batch = match FanoutBatch::from_bytes(body) {
            Ok(b) => b,
            Err(e) => {
                return self.respond(
                    id,
                    Response::text(400, format!("malformed FanoutMessage batch: {e}")),
                );
            }
        };
        for m in &batch.0 {
            let bytes = m.to_bytes();
            let h = sha256_hex(&bytes);
            if self.follower.seen.contains(&(peer.to_owned(), h.clone())) {
                self.stats.notify_duplicates += 1;
                continue;
            }
            self.route_fanout(room, m, &bytes);
            self.mark_seen(peer, h);
        }
        self.mark_seen(peer, body_hash);
        self.stats.notify_processed += 1;
        self.respond(id, Response::empty(201));
    }

    /// Delivers one FanoutMessage of `room` to the local clients it concerns.
    pub(crate) fn route_fanout(
        &mut self,
        room: &str,
        m: &mimi_proto::messages::FanoutMessage,
        bytes: &[u8],
    ) {
        match (&m.extra, &m.message.body) {
            (FanoutExtra::Welcome { .. }, MlsMessageBody::Welcome(w)) => {
                let mut targets = BTreeSet::new();
                for r in w.new_members() {
                    if let Some(c) = self.follower.kp_routes.get(&hex::encode(&r.0)) {
                        targets.insert(c.clone());
                    }
                }
                for c in targets {
                    self.subscribe(&c, room, true);
                    self.deliver(&c, room, m.timestamp, "welcome", bytes);
                }
            }
            (extra, _) => {
                let kind = match extra {
                    FanoutExtra::Application { .. } => "application",
                    FanoutExtra::Proposal { .. } => "proposal",
                    FanoutExtra::Commit { .. } => "commit",
                    FanoutExtra::Welcome { .. } => "welcome",
                };
                for c in self.follower.subscribers(room) {
                    self.deliver(&c, room, m.timestamp, kind, bytes);
                }
            }
        }
    }

    fn mark_seen(&mut self, hub: &str, hash: String) {
        let n = self.follower.seen_counter;
        self.follower.seen_counter += 1;
        self.writes
            .put(format!("{}{hub}/{hash}", keys::NOTIFY_SEEN), &n);
        self.follower.seen.insert((hub.to_owned(), hash.clone()));
        let order = self.follower.seen_order.entry(hub.to_owned()).or_default();
        order.push_back((n, hash));
        while order.len() > self.cfg.limits.notify_dedup_window {
            if let Some((_, old)) = order.pop_front() {
                self.writes
                    .delete(format!("{}{hub}/{old}", keys::NOTIFY_SEEN));
                self.follower.seen.remove(&(hub.to_owned(), old));
            }
        }
    }

    pub(crate) fn subscribe(&mut self, client_id: &str, room: &str, on: bool) {
        let Some(c) = self.follower.clients.get_mut(client_id) else {
            return;
        };
        let changed = if on {
            c.rooms.insert(room.to_owned())
        } else {
            c.rooms.remove(room)
        };
        if changed {
            let c = c.clone();
            self.writes.put(format!("{}{client_id}", keys::CLIENT), &c);
        }
        let hub = ids::domain_of(room).unwrap_or_default().to_owned();
        if on && hub != self.cfg.domain && !self.follower.followed.contains_key(room) {
            let f = FollowedRoom { hub };
            self.writes.put(format!("{}{room}", keys::FOLLOWED), &f);
            self.follower.followed.insert(room.to_owned(), f);
        }
    }

    fn deliver_to_user(&mut self, user: &str, room: &str, kind: &str, body: &[u8]) {
        let clients: Vec<String> = self
            .follower
            .clients_of_user(user)
            .into_iter()
            .map(|c| c.client_id.clone())
            .collect();
        for c in clients {
            self.deliver(&c, room, self.now_ms, kind, body);
        }
    }

    /// Appends to a client's queue (bounded: the oldest are dropped and the gap reported).
    pub(crate) fn deliver(
        &mut self,
        client_id: &str,
        room: &str,
        timestamp: u64,
        kind: &str,
        body: &[u8],
    ) {
        let meta = self
            .follower
            .delivery_meta
            .entry(client_id.to_owned())
            .or_default();
        meta.next_seq += 1;
        let seq = meta.next_seq;
        let queue = self
            .follower
            .deliveries
            .entry(client_id.to_owned())
            .or_default();
        let d = Delivery {
            seq,
            room: room.to_owned(),
            timestamp,
            kind: kind.to_owned(),
            body: hex::encode(body),
        };
        self.writes.put(
            format!("{}{client_id}/{}", keys::DELIVERY, keys::seq(seq)),
            &d,
        );
        queue.insert(seq, d);
        while queue.len() > self.cfg.limits.max_deliveries_per_client {
            if let Some((old, _)) = queue.pop_first() {
                self.writes
                    .delete(format!("{}{client_id}/{}", keys::DELIVERY, keys::seq(old)));
                meta.gap = true;
            }
        }
        let meta = meta.clone();
        self.writes
            .put(format!("{}{client_id}", keys::DELIVERY_META), &meta);
        self.stats.deliveries += 1;
        self.outputs.push_back(Output::Wake {
            client_id: client_id.to_owned(),
        });
    }

    fn client_events(&mut self, id: RequestId, client: &ClientRecord, after: u64, limit: usize) {
        let queue = self.follower.deliveries.get(&client.client_id);
        let events: Vec<&Delivery> = queue
            .map(|q| {
                q.range(after + 1..)
                    .take(limit.clamp(1, 1000))
                    .map(|(_, d)| d)
                    .collect()
            })
            .unwrap_or_default();
        let gap = self
            .follower
            .delivery_meta
            .get(&client.client_id)
            .is_some_and(|m| m.gap);
        let body = json!({"client": client.client_id, "events": events, "gap": gap});
        self.respond(id, Response::json(200, &body));
    }

    fn client_ack(&mut self, id: RequestId, client: &ClientRecord, upto: u64) {
        let cid = client.client_id.clone();
        let done: Vec<u64> = self
            .follower
            .deliveries
            .get(&cid)
            .map(|q| q.range(..=upto).map(|(s, _)| *s).collect())
            .unwrap_or_default();
        for s in &done {
            self.writes
                .delete(format!("{}{cid}/{}", keys::DELIVERY, keys::seq(*s)));
        }
        if let Some(q) = self.follower.deliveries.get_mut(&cid) {
            q.retain(|s, _| *s > upto);
        }
        let meta = self.follower.delivery_meta.entry(cid.clone()).or_default();
        meta.acked = meta.acked.max(upto);
        meta.gap = false;
        let meta = meta.clone();
        self.writes
            .put(format!("{}{cid}", keys::DELIVERY_META), &meta);
        self.respond(
            id,
            Response::json(200, &json!({"acked": upto, "dropped": done.len()})),
        );
    }
}
