//! Persisting a member: a whole snapshot ([`Member::export`] / [`Member::import`]), or, for a
//! bridge that keeps many members for years, only what changed ([`Member::take_changes`],
//! rebuilt by [`Member::from_parts`]): the openmls rows an operation wrote and, when its rooms
//! changed, a small meta record. Both contain private keys: store them like keys.

use std::collections::{BTreeMap, BTreeSet};

use mimi_mls_storage::{Change, KvStorage};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use serde::{Deserialize, Serialize};

use crate::{ClientError, Member, Provider};

/// What a member is besides its openmls rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    domain: String,
    user: String,
    client_uri: String,
    #[serde(with = "serde_bytes_hex")]
    signer: Vec<u8>,
    /// room → MLS group id.
    rooms: BTreeMap<String, Vec<u8>>,
}

/// A whole member: meta and rows.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    meta: Meta,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What changed since the last [`Member::take_changes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberChanges {
    /// The new meta record, when the member's rooms changed (or on the first call).
    pub meta: Option<Vec<u8>>,
    /// openmls rows written (`Some`) or deleted (`None`).
    pub rows: Vec<Change>,
}

impl MemberChanges {
    /// Whether there is nothing to persist.
    pub fn is_empty(&self) -> bool {
        self.meta.is_none() && self.rows.is_empty()
    }
}

/// Signer bytes as hex inside the (rarely written) meta record.
mod serde_bytes_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

fn bad(w: impl std::fmt::Display) -> ClientError {
    ClientError::Invalid(format!("member state: {w}"))
}

impl Member {
    fn meta(&self) -> Meta {
        Meta {
            domain: self.domain.clone(),
            user: self.user.clone(),
            client_uri: self.client_uri.clone(),
            signer: self.signer.tls_serialize_detached().unwrap_or_default(),
            rooms: self
                .groups
                .iter()
                .map(|(r, g)| (r.clone(), g.group_id().as_slice().to_vec()))
                .collect(),
        }
    }

    /// The member's whole state (signature key, openmls rows, rooms); restore it with
    /// [`Member::import`].
    pub fn export(&self) -> Vec<u8> {
        let snap = Snapshot {
            meta: self.meta(),
            rows: self.provider.storage.rows(),
        };
        serde_json::to_vec(&snap).unwrap_or_default()
    }

    /// The rows and meta changed since the last call (the first call returns the meta and
    /// every row written so far). Persist them in one transaction, in order.
    pub fn take_changes(&mut self) -> MemberChanges {
        let meta = serde_json::to_vec(&self.meta()).unwrap_or_default();
        let first = self.persisted_meta.is_none();
        let meta_changed = self.persisted_meta.as_deref() != Some(meta.as_slice());
        if meta_changed {
            self.persisted_meta = Some(meta.clone());
        }
        let changed = self.provider.storage.take_changes();
        let rows = if first {
            // Nothing was persisted yet: everything is new.
            self.provider
                .storage
                .rows()
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect()
        } else {
            changed
        };
        MemberChanges {
            meta: meta_changed.then_some(meta),
            rows,
        }
    }

    /// A member from its meta record and openmls rows (what [`Member::take_changes`] handed
    /// out, applied in order).
    ///
    /// # Errors
    /// [`ClientError::Invalid`] for malformed state.
    pub fn from_parts(
        meta: &[u8],
        rows: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<Self, ClientError> {
        let meta: Meta = serde_json::from_slice(meta).map_err(bad)?;
        let raw = serde_json::to_vec(&meta).unwrap_or_default();
        let mut m = Self::restore(meta, KvStorage::from_rows(rows))?;
        m.persisted_meta = Some(raw);
        Ok(m)
    }

    fn restore(meta: Meta, storage: KvStorage) -> Result<Self, ClientError> {
        let provider = Provider {
            crypto: openmls_rust_crypto::RustCrypto::default(),
            storage,
        };
        let signer =
            SignatureKeyPair::tls_deserialize_exact(&meta.signer).map_err(|_| bad("signer"))?;
        let mut groups = BTreeMap::new();
        for (room, gid) in &meta.rooms {
            let g = MlsGroup::load(provider.storage(), &GroupId::from_slice(gid))
                .map_err(|e| bad(format!("{e:?}")))?
                .ok_or_else(|| bad(format!("group of {room} missing from storage")))?;
            groups.insert(room.clone(), g);
        }
        Ok(Self {
            provider,
            signer,
            domain: meta.domain,
            user: meta.user,
            client_uri: meta.client_uri,
            groups,
            joining: BTreeMap::new(),
            own_messages: BTreeSet::new(),
            persisted_meta: None,
        })
    }

    /// Restores a member from [`Member::export`] (or from the hex-in-JSON export of earlier
    /// releases, whose openmls rows have the same layout).
    ///
    /// # Errors
    /// [`ClientError::Invalid`] for malformed state.
    pub fn import(bytes: &[u8]) -> Result<Self, ClientError> {
        if let Ok(snap) = serde_json::from_slice::<Snapshot>(bytes) {
            return Self::restore(snap.meta, KvStorage::from_rows(snap.rows));
        }
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(bad)?;
        let s = |k: &str| v[k].as_str().map(str::to_owned).ok_or_else(|| bad(k));
        let mut rows = Vec::new();
        for kv in v["storage"].as_array().ok_or_else(|| bad("storage"))? {
            let k = hex::decode(kv[0].as_str().unwrap_or("")).map_err(|_| bad("storage key"))?;
            let val =
                hex::decode(kv[1].as_str().unwrap_or("")).map_err(|_| bad("storage value"))?;
            rows.push((k, val));
        }
        let mut rooms = BTreeMap::new();
        for (room, gid) in v["rooms"].as_object().ok_or_else(|| bad("rooms"))? {
            rooms.insert(
                room.clone(),
                hex::decode(gid.as_str().unwrap_or("")).map_err(|_| bad("group id"))?,
            );
        }
        let meta = Meta {
            domain: s("domain")?,
            user: s("user")?,
            client_uri: s("client_uri")?,
            signer: hex::decode(s("signer")?).map_err(|_| bad("signer"))?,
            rooms,
        };
        Self::restore(meta, KvStorage::from_rows(rows))
    }
}
