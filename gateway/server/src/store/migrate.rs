//! Schema migrations, each in one transaction: a file is either migrated whole or left as it
//! was.
//!
//! - 1 → 2: assets leave the `engine` table for their own.
//! - 2 → 3: the `engine` table of JSON records (hex bytes inside) becomes binary rows at the
//!   granularity of change: clients, tokens, users, KeyPackages, consent, delivery queues
//!   (sequence numbers kept, bodies stored once), hosted rooms (openmls rows copied as they
//!   are: the layout is openmls' own), pending proposals, KeyPackage routes, outboxes (split
//!   per room, order kept), abuse reports; bridge records and assets move to their tables.
//!   Notify deduplication windows are not carried over (a hub retrying a `/notify` across
//!   the upgrade may be processed twice; clients deduplicate by message ID).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use mimi_engine::store::rows::{
    self, AbuseRow, ClientRow, ConsentRow, DeliveryRow, HubRoomRow, KeyPackageRow, KpOwnerRow,
    KpRouteRow, OutboxMetaRow, OutboxRow, PendingRow, QueueMeta, UserRow,
};
use mimi_engine::store::{Table, keys};
use mimi_proto::client_api::DeliveryKind;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError, TableHandle};
use serde::Deserialize;
use sha2::Digest;

use super::{SCHEMA_VERSION, VERSION_KEY, check_version, def};

const OLD_ENGINE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("engine");
const OLD_META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
const OLD_ASSETS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("assets");
const OLD_BRIDGE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("bridge");

/// How long migrated KeyPackage routes and owners stay (their lifetime was not recorded).
const MIGRATED_ROUTE_LIFETIME_S: u64 = 90 * 86_400;

fn read_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b.try_into().unwrap_or_default())
}

/// The schema version of a file (0: empty).
pub(super) fn version(db: &Database) -> anyhow::Result<u64> {
    let r = db.begin_read()?;
    match r.open_table(def(Table::Meta)) {
        Ok(t) => return Ok(t.get(VERSION_KEY)?.map_or(0, |v| read_u64(v.value()))),
        Err(TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(TableError::TableTypeMismatch { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let t = r.open_table(OLD_META)?;
    let v = t.get("schema_version")?.map_or(0, |v| read_u64(v.value()));
    Ok(v)
}

fn has_old_engine(db: &Database) -> anyhow::Result<bool> {
    let r = db.begin_read()?;
    Ok(r.list_tables()?.any(|t| t.name() == "engine"))
}

/// Brings `db` to [`SCHEMA_VERSION`]; assets found in an old file go to `assets_dir`.
pub(super) fn migrate(db: &Database, assets_dir: &std::path::Path) -> anyhow::Result<()> {
    let v = version(db)?;
    check_version(v)?;
    if v == SCHEMA_VERSION {
        return Ok(());
    }
    let w = db.begin_write()?;
    if v > 0 || has_old_engine(db)? {
        from_v2(&w, v, assets_dir)
            .with_context(|| format!("migrating schema {v} to {SCHEMA_VERSION}"))?;
        tracing::info!(from = v, to = SCHEMA_VERSION, "migrated the database");
    }
    w.open_table(def(Table::Meta))?
        .insert(VERSION_KEY, SCHEMA_VERSION.to_be_bytes().as_slice())?;
    w.commit()?;
    Ok(())
}

#[derive(Deserialize)]
struct OldClient {
    client_id: String,
    token_hash: String,
    rooms: BTreeSet<String>,
}

#[derive(Deserialize)]
struct OldUser {
    display_name: String,
    discoverable: bool,
}

#[derive(Deserialize)]
struct OldKeyPackage {
    key_package: String,
    cipher_suite: u16,
    not_after: u64,
}

#[derive(Deserialize)]
struct OldConsent {
    granted: bool,
    updated_ms: u64,
}

#[derive(Deserialize)]
struct OldDelivery {
    seq: u64,
    room: String,
    timestamp: u64,
    kind: String,
    body: String,
}

#[derive(Deserialize, Default)]
struct OldDeliveryMeta {
    next_seq: u64,
    acked: u64,
    gap: bool,
}

#[derive(Deserialize)]
struct OldHubRoom {
    group_id: String,
    created_ms: u64,
    pending: Vec<(String, u64)>,
    #[serde(default)]
    pending_list_updates: Vec<String>,
    group_info: String,
    kp_routes: BTreeMap<String, String>,
    followers: BTreeSet<String>,
}

#[derive(Deserialize)]
struct OldOutbox {
    room: String,
    body: String,
}

#[derive(Deserialize)]
struct OldAbuse {
    reporter_domain: String,
    report: String,
    received_ms: u64,
}

/// Rows of the new schema, written at the end.
#[derive(Default)]
struct NewRows {
    rows: Vec<(Table, Vec<u8>, Vec<u8>)>,
    bodies: BTreeMap<[u8; 32], (Vec<u8>, u32)>,
}

impl NewRows {
    fn put<T: serde::Serialize>(&mut self, t: Table, k: Vec<u8>, v: &T) {
        self.rows.push((t, k, rows::encode(v)));
    }

    fn raw(&mut self, t: Table, k: Vec<u8>, v: Vec<u8>) {
        self.rows.push((t, k, v));
    }

    fn body(&mut self, bytes: Vec<u8>) -> ([u8; 32], u32) {
        let id: [u8; 32] = sha2::Sha256::digest(&bytes).into();
        let len = bytes.len() as u32;
        self.bodies.entry(id).or_insert((bytes, 0)).1 += 1;
        (id, len)
    }
}

fn json<T: for<'de> Deserialize<'de>>(key: &str, v: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(v).with_context(|| format!("record {key}"))
}

fn unhex(key: &str, s: &str) -> anyhow::Result<Vec<u8>> {
    hex::decode(s).with_context(|| format!("record {key}: hex"))
}

fn kind_of(s: &str) -> DeliveryKind {
    match s {
        "welcome" => DeliveryKind::Welcome,
        "commit" => DeliveryKind::Commit,
        "proposal" => DeliveryKind::Proposal,
        "consent" => DeliveryKind::Consent,
        _ => DeliveryKind::Application,
    }
}

/// The openmls rows of a version-2 room blob (u32 count, then length-prefixed keys and values).
fn mls_rows(blob: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    fn chunk<'a>(b: &'a [u8], p: &mut usize) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(b.get(*p..*p + 4)?.try_into().ok()?) as usize;
        *p += 4;
        let s = b.get(*p..*p + len)?;
        *p += len;
        Some(s)
    }
    let n = u32::from_be_bytes(blob.get(0..4)?.try_into().ok()?) as usize;
    let mut p = 4;
    let mut out = Vec::with_capacity(n.min(blob.len() / 8));
    for _ in 0..n {
        let k = chunk(blob, &mut p)?.to_vec();
        let v = chunk(blob, &mut p)?.to_vec();
        out.push((k, v));
    }
    (p == blob.len()).then_some(out)
}

#[allow(clippy::too_many_lines)] // one record kind after the other, in one place
fn convert(engine: Vec<(String, Vec<u8>)>, now_s: u64) -> anyhow::Result<NewRows> {
    let mut out = NewRows::default();
    let mut metas: BTreeMap<String, OldDeliveryMeta> = BTreeMap::new();
    let mut queues: BTreeMap<String, QueueMeta> = BTreeMap::new();
    let mut outbox: BTreeMap<(String, String), OutboxMetaRow> = BTreeMap::new();
    let mut abuse_n: BTreeMap<String, u64> = BTreeMap::new();
    for (key, v) in engine {
        if let Some(id) = key.strip_prefix("c/") {
            let c: OldClient = json(&key, &v)?;
            let (user, device) = c.client_id.split_once('/').context("client id")?;
            let token: [u8; 32] = unhex(&key, &c.token_hash)?
                .try_into()
                .ok()
                .context("token hash length")?;
            out.put(
                Table::Clients,
                id.as_bytes().to_vec(),
                &ClientRow {
                    user: user.to_owned(),
                    device: device.to_owned(),
                    token_hash: token,
                    created_ms: 0,
                },
            );
            out.raw(Table::Tokens, token.to_vec(), id.as_bytes().to_vec());
            out.raw(
                Table::UserClients,
                keys::join(&[user.as_bytes(), id.as_bytes()]),
                Vec::new(),
            );
            for room in &c.rooms {
                out.raw(
                    Table::RoomSubscribers,
                    keys::join(&[room.as_bytes(), id.as_bytes()]),
                    Vec::new(),
                );
                out.raw(
                    Table::ClientRooms,
                    keys::join(&[id.as_bytes(), room.as_bytes()]),
                    Vec::new(),
                );
            }
        } else if let Some(name) = key.strip_prefix("u/") {
            let u: OldUser = json(&key, &v)?;
            out.put(
                Table::Users,
                name.as_bytes().to_vec(),
                &UserRow {
                    display_name: u.display_name,
                    discoverable: u.discoverable,
                    created_ms: 0,
                },
            );
        } else if let Some(rest) = key.strip_prefix("kp/") {
            let (client, r) = rest.rsplit_once('/').context("KeyPackage key")?;
            let k: OldKeyPackage = json(&key, &v)?;
            out.put(
                Table::KeyPackages,
                keys::join(&[client.as_bytes(), &unhex(&key, r)?]),
                &KeyPackageRow {
                    key_package: unhex(&key, &k.key_package)?,
                    cipher_suite: k.cipher_suite,
                    not_after: k.not_after,
                    last_resort: false,
                },
            );
        } else if let Some(r) = key.strip_prefix("kr/") {
            let client: String = json(&key, &v)?;
            out.put(
                Table::KpOwners,
                unhex(&key, r)?,
                &KpOwnerRow {
                    client,
                    not_after: now_s + MIGRATED_ROUTE_LIFETIME_S,
                },
            );
        } else if let Some(k) = key.strip_prefix("cs/") {
            let c: OldConsent = json(&key, &v)?;
            let parts: Vec<&[u8]> = k.split('|').map(str::as_bytes).collect();
            out.put(
                Table::Consent,
                keys::join(&parts),
                &ConsentRow {
                    granted: c.granted,
                    updated_ms: c.updated_ms,
                },
            );
        } else if let Some(rest) = key.strip_prefix("dq/") {
            let (client, _) = rest.rsplit_once('/').context("delivery key")?;
            let d: OldDelivery = json(&key, &v)?;
            let (body, bytes) = out.body(unhex(&key, &d.body)?);
            out.put(
                Table::Deliveries,
                keys::with_seq(&[client.as_bytes()], d.seq),
                &DeliveryRow {
                    room: d.room,
                    kind: kind_of(&d.kind).value(),
                    timestamp: d.timestamp,
                    body,
                    bytes,
                },
            );
            let q = queues.entry(client.to_owned()).or_default();
            q.count += 1;
            q.bytes += u64::from(bytes);
            q.last_seq = q.last_seq.max(d.seq);
        } else if let Some(client) = key.strip_prefix("dm/") {
            metas.insert(client.to_owned(), json(&key, &v)?);
        } else if let Some(room) = key.strip_prefix("hr/") {
            let h: OldHubRoom = json(&key, &v)?;
            let rk = room.as_bytes();
            out.put(
                Table::HubRooms,
                rk.to_vec(),
                &HubRoomRow {
                    group_id: unhex(&key, &h.group_id)?,
                    created_ms: h.created_ms,
                    group_info: unhex(&key, &h.group_info)?,
                    followers: h.followers,
                },
            );
            let mut updates = h.pending_list_updates.iter();
            for (i, (m, t)) in h.pending.iter().enumerate() {
                out.put(
                    Table::HubPending,
                    keys::with_seq(&[rk], i as u64),
                    &PendingRow {
                        message: unhex(&key, m)?,
                        accepted_ms: *t,
                        list_update: updates.next().map(|u| unhex(&key, u)).transpose()?,
                    },
                );
            }
            for (r, domain) in h.kp_routes {
                out.put(
                    Table::HubKpRoutes,
                    keys::join(&[rk, &unhex(&key, &r)?]),
                    &KpRouteRow {
                        domain,
                        not_after: now_s + MIGRATED_ROUTE_LIFETIME_S,
                    },
                );
            }
        } else if let Some(room) = key.strip_prefix("hm/") {
            let prefix = keys::prefix(&[room.as_bytes()]);
            for (k, val) in mls_rows(&v).with_context(|| format!("record {key}: MLS blob"))? {
                let mut nk = prefix.clone();
                nk.extend_from_slice(&k);
                out.raw(Table::HubMls, nk, val);
            }
        } else if let Some(rest) = key.strip_prefix("ob/") {
            let (follower, _) = rest.rsplit_once('/').context("outbox key")?;
            let e: OldOutbox = json(&key, &v)?;
            let (body, bytes) = out.body(unhex(&key, &e.body)?);
            let m = outbox
                .entry((follower.to_owned(), e.room.clone()))
                .or_default();
            m.last_seq += 1;
            m.count += 1;
            m.bytes += u64::from(bytes);
            let seq = m.last_seq;
            out.put(
                Table::Outbox,
                keys::with_seq(&[follower.as_bytes(), e.room.as_bytes()], seq),
                &OutboxRow { body, bytes },
            );
        } else if let Some(rest) = key.strip_prefix("ab/") {
            let (room, _) = rest.rsplit_once('/').context("abuse key")?;
            let a: OldAbuse = json(&key, &v)?;
            let n = abuse_n.entry(room.to_owned()).or_default();
            *n += 1;
            out.put(
                Table::Abuse,
                keys::with_seq(&[room.as_bytes()], *n),
                &AbuseRow {
                    reporter: a.reporter_domain,
                    report: unhex(&key, &a.report)?,
                    received_ms: a.received_ms,
                },
            );
        }
        // fr/ (followed rooms), nd/ (dedup window), cq/ (consent requests), om/ (outbox
        // counters): derived or informational, not carried over.
    }
    for (client, m) in metas {
        let q = queues.entry(client.clone()).or_default();
        q.last_seq = q.last_seq.max(m.next_seq);
        q.acked = m.acked;
        q.gap = m.gap;
    }
    for (client, q) in queues {
        out.put(Table::DeliveryMeta, client.into_bytes(), &q);
    }
    for ((f, room), m) in outbox {
        out.put(
            Table::OutboxMeta,
            keys::join(&[f.as_bytes(), room.as_bytes()]),
            &m,
        );
    }
    Ok(out)
}

fn from_v2(
    w: &redb::WriteTransaction,
    from: u64,
    assets_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let mut engine = Vec::new();
    let mut assets = Vec::new();
    {
        let t = w.open_table(OLD_ENGINE)?;
        for e in t.iter()? {
            let (k, v) = e?;
            let key = String::from_utf8_lossy(k.value()).into_owned();
            if let Some(id) = key.strip_prefix("asset/").filter(|_| from < 2) {
                assets.push((id.to_owned(), v.value().to_vec()));
            } else {
                engine.push((key, v.value().to_vec()));
            }
        }
    }
    let mut meta = Vec::new();
    match w.open_table(OLD_META) {
        Ok(t) => {
            for e in t.iter()? {
                let (k, v) = e?;
                meta.push((k.value().to_owned(), v.value().to_vec()));
            }
        }
        Err(TableError::TableTypeMismatch { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    for (name, def_) in [("assets", OLD_ASSETS), ("bridge", OLD_BRIDGE)] {
        let t = match w.open_table(def_) {
            Ok(t) => t,
            Err(TableError::TableTypeMismatch { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        for e in t.iter()? {
            let (k, v) = e?;
            if name == "assets" {
                assets.push((k.value().to_owned(), v.value().to_vec()));
            } else {
                meta.push((format!("\u{0}bridge/{}", k.value()), v.value().to_vec()));
            }
        }
    }
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rows = convert(engine, now_s)?;
    for name in ["engine", "meta", "assets", "bridge"] {
        let _ = w.delete_table(TableDefinition::<&[u8], &[u8]>::new(name));
        let _ = w.delete_table(TableDefinition::<&str, &[u8]>::new(name));
    }
    for (t, k, v) in rows.rows {
        w.open_table(def(t))?.insert(k.as_slice(), v.as_slice())?;
    }
    {
        let mut bodies = w.open_table(def(Table::Bodies))?;
        let mut refs = w.open_table(def(Table::BodyRefs))?;
        for (id, (bytes, n)) in rows.bodies {
            bodies.insert(id.as_slice(), bytes.as_slice())?;
            refs.insert(id.as_slice(), n.to_be_bytes().as_slice())?;
        }
    }
    {
        let mut m = w.open_table(def(Table::Meta))?;
        let mut b = w.open_table(def(Table::Bridge))?;
        for (k, v) in meta {
            if let Some(bk) = k.strip_prefix("\u{0}bridge/") {
                b.insert(bk.as_bytes(), v.as_slice())?;
            } else if k != "schema_version" {
                m.insert(k.as_bytes(), v.as_slice())?;
            }
        }
    }
    {
        // Assets become files; the rows record them under the `legacy` owner (no owner was
        // recorded before).
        let mut t = w.open_table(def(Table::Assets))?;
        for (id, bytes) in assets {
            super::assets::write_file(assets_dir, &id, &bytes)?;
            t.insert(
                keys::join(&[super::assets::LEGACY_OWNER.as_bytes(), id.as_bytes()]).as_slice(),
                rows::encode(&rows::AssetRow {
                    bytes: bytes.len() as u64,
                    created_ms: now_s * 1000,
                })
                .as_slice(),
            )?;
        }
    }
    Ok(())
}
