//! Serving this provider's users' KeyPackages: consent, claim quotas, and the claim itself,
//! one atomic store transaction so that no KeyPackage is ever handed out twice (whichever
//! shard or node serves the claim). A client's last-resort KeyPackage is handed out when it
//! has no other and is never consumed, so claiming can exhaust a client but never make it
//! unreachable.

use std::collections::BTreeMap;

use mimi_proto::codec::{Uri, Wire};
use mimi_proto::messages::{
    ClientKeyMaterial, KeyMaterialRequest, KeyMaterialResponse, KeyMaterialUserCode, Protocol,
};
use mimi_proto::mls::KeyPackage;
use mimi_proto::uri::Domain;
use openmls_traits::crypto::OpenMlsCrypto;

use crate::hub::KmRequest;
use crate::store::rows::{self, ConsentRow, KeyPackageRow};
use crate::store::{StoreError, Table, Txn, keys};
use crate::{ConsentPolicy, Engine, Refusal};

/// Claims per minute, per peer and per target user.
#[derive(Debug, Default)]
pub struct ClaimQuotas {
    windows: BTreeMap<String, (u64, u32)>,
}

impl ClaimQuotas {
    /// Counts `n` claims for `key` in the minute of `now_ms`; false (and nothing counted) when
    /// that exceeds `limit`.
    pub(crate) fn take(&mut self, key: &str, n: u32, limit: u32, now_ms: u64) -> bool {
        let minute = now_ms / 60_000;
        if self.windows.len() > 100_000 {
            self.windows.retain(|_, (m, _)| *m == minute);
        }
        let w = self.windows.entry(key.to_owned()).or_insert((minute, 0));
        if w.0 != minute {
            *w = (minute, 0);
        }
        if w.1.saturating_add(n) > limit {
            return false;
        }
        w.1 += n;
        true
    }
}

pub(crate) fn consent_key(target: &str, requester: &str, room: Option<&str>) -> Vec<u8> {
    keys::join(&[
        target.as_bytes(),
        requester.as_bytes(),
        room.unwrap_or("*").as_bytes(),
    ])
}

/// Whether a stored KeyPackage meets the request's cipher suites and required capabilities.
fn satisfies(k: &KeyPackageRow, req: &KeyMaterialRequest) -> bool {
    if !req.acceptable_ciphersuites.contains(&k.cipher_suite) {
        return false;
    }
    let Ok(kp) = KeyPackage::from_bytes(&k.key_package) else {
        return false;
    };
    let caps = &kp.leaf_node.capabilities;
    let rc = &req.required_capabilities;
    // Default (RFC 9420 §7.2) extension, proposal and credential types need no listing.
    rc.extension_types
        .iter()
        .all(|t| *t <= 5 || caps.extensions.contains(t))
        && rc
            .proposal_types
            .iter()
            .all(|t| *t <= 7 || caps.proposals.contains(t))
        && rc
            .credential_types
            .iter()
            .all(|t| caps.credentials.contains(t) || (*t == 1 && caps.credentials.is_empty()))
}

/// What one client yields in a claim.
enum Pick {
    Got(Vec<u8>),
    Incompatible,
    Exhausted,
}

/// In one transaction: one compatible KeyPackage per client of `user` (the last-resort one
/// only when nothing else is left; consumed ones and expired ones deleted).
fn claim(
    txn: &mut dyn Txn,
    user: &str,
    req: &KeyMaterialRequest,
    now_s: u64,
) -> Result<Vec<(String, Pick)>, StoreError> {
    let mut out = Vec::new();
    let uprefix = keys::prefix(&[user.as_bytes()]);
    for (k, _) in txn.scan(Table::UserClients, &uprefix, None, 1000)? {
        let Some(client) = keys::tail_text(&k, &uprefix) else {
            continue;
        };
        let ck = client.as_bytes();
        let kps = txn.scan(Table::KeyPackages, &keys::prefix(&[ck]), None, 10_000)?;
        let mut live = 0;
        let mut pick: Option<(Vec<u8>, KeyPackageRow)> = None;
        let mut last_resort: Option<KeyPackageRow> = None;
        for (key, v) in kps {
            let row: KeyPackageRow = rows::decode(Table::KeyPackages, &v)?;
            if row.not_after <= now_s {
                txn.delete(Table::KeyPackages, &key)?;
                continue;
            }
            live += 1;
            if !satisfies(&row, req) {
                continue;
            }
            if row.last_resort {
                last_resort = Some(row);
            } else if pick.is_none() {
                pick = Some((key, row));
            }
        }
        let p = match (pick, last_resort) {
            (Some((key, row)), _) => {
                txn.delete(Table::KeyPackages, &key)?;
                Pick::Got(row.key_package)
            }
            (None, Some(row)) => Pick::Got(row.key_package),
            (None, None) if live > 0 => Pick::Incompatible,
            (None, None) => Pick::Exhausted,
        };
        out.push((client, p));
    }
    Ok(out)
}

impl<C: OpenMlsCrypto> Engine<C> {
    fn consent(
        &self,
        target: &str,
        requester: &str,
        room: Option<&str>,
    ) -> Result<bool, StoreError> {
        Ok(self
            .store
            .get(Table::Consent, &consent_key(target, requester, room))?
            .map(|b| rows::decode::<ConsentRow>(Table::Consent, &b))
            .transpose()?
            .is_some_and(|c| c.granted))
    }

    /// The answer for a local target user, or a refusal (quota, storage).
    pub(crate) fn serve_key_material(
        &mut self,
        km: &KmRequest,
        peer: Option<&Domain>,
        proxied: bool,
    ) -> Result<KeyMaterialResponse, Refusal> {
        let unavailable = |e: StoreError| Refusal::Unavailable(e.to_string());
        let empty = |status| KeyMaterialResponse {
            protocol: Protocol::Mls10,
            user_status: status,
            user_uri: km.req.target_user.clone(),
            clients: vec![],
        };
        let name = km.target.name();
        if self
            .store
            .get(Table::Users, name.as_bytes())
            .map_err(unavailable)?
            .is_none()
        {
            return Ok(empty(KeyMaterialUserCode::UserUnknown));
        }
        let (target, requester) = (km.target.as_str(), km.requester.as_str());
        let room = km.room.as_ref().map(|r| r.as_str());
        let this_room = match room {
            Some(r) => self
                .consent(target, requester, Some(r))
                .map_err(unavailable)?,
            None => false,
        };
        // A hub proxying for another provider's user cannot borrow consent given outside the
        // room it names.
        let needs_room_consent = proxied && self.cfg.consent == ConsentPolicy::Required;
        let needs_consent = self.cfg.consent == ConsentPolicy::Required;
        if needs_room_consent && !this_room {
            return Ok(empty(KeyMaterialUserCode::NoConsentForThisRoom));
        }
        if needs_consent
            && !this_room
            && !self.consent(target, requester, None).map_err(unavailable)?
        {
            let any_room = self
                .store
                .scan(
                    Table::Consent,
                    &keys::prefix(&[target.as_bytes(), requester.as_bytes()]),
                    None,
                    1,
                )
                .map_err(unavailable)?;
            return Ok(empty(if any_room.is_empty() {
                KeyMaterialUserCode::NoConsent
            } else {
                KeyMaterialUserCode::NoConsentForThisRoom
            }));
        }
        let (per_peer, per_user) = (
            self.cfg.limits.claims_per_peer_per_minute,
            self.cfg.limits.claims_per_user_per_minute,
        );
        {
            let now = self.now_ms;
            let mut q = self
                .shared
                .claims
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let peer_ok = peer.is_none_or(|p| q.take(&format!("peer {p}"), 1, per_peer, now));
            if !peer_ok || !q.take(&format!("user {target}"), 1, per_user, now) {
                return Err(Refusal::Quota {
                    what: if peer_ok {
                        format!(
                            "KeyPackages of {target} are claimed too often (at most {per_user} a minute)"
                        )
                    } else {
                        format!(
                            "{} claims KeyPackages too often (at most {per_peer} a minute)",
                            peer.map(ToString::to_string).unwrap_or_default()
                        )
                    },
                    retry_after_s: 60 - (now / 1000) % 60,
                });
            }
        }
        let now_s = self.now_ms / 1000;
        let mut picks = Vec::new();
        self.store
            .transact(&mut |txn| {
                picks = claim(txn, name, &km.req, now_s)?;
                Ok(())
            })
            .map_err(unavailable)?;
        let mut out = Vec::new();
        let mut got = 0;
        for (client, p) in picks {
            let Some(device) = client.split_once('/').map(|(_, d)| d.to_owned()) else {
                continue;
            };
            let Ok(client_uri) = mimi_proto::uri::ClientUri::new(&self.cfg.domain, name, &device)
            else {
                continue;
            };
            let client_uri = Uri::from(&client_uri);
            match p {
                Pick::Got(raw) => {
                    if let Ok(key_package) = KeyPackage::from_bytes(&raw) {
                        got += 1;
                        out.push(ClientKeyMaterial::Success {
                            client_uri,
                            key_package,
                        });
                    }
                }
                Pick::Incompatible => out.push(ClientKeyMaterial::NothingCompatible {
                    client_uri,
                    client_capabilities: None,
                }),
                Pick::Exhausted => out.push(ClientKeyMaterial::KeyMaterialExhausted { client_uri }),
            }
        }
        let user_status = if got > 0 && got == out.len() {
            KeyMaterialUserCode::Success
        } else if got > 0 {
            KeyMaterialUserCode::PartialSuccess
        } else if out.is_empty() {
            return Ok(empty(KeyMaterialUserCode::NoCompatibleMaterial));
        } else {
            KeyMaterialUserCode::NoCompatibleMaterial
        };
        Ok(KeyMaterialResponse {
            protocol: Protocol::Mls10,
            user_status,
            user_uri: km.req.target_user.clone(),
            clients: out,
        })
    }
}
