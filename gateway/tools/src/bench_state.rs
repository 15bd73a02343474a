//! `mimi bench state`: what state costs as it grows, each figure against the same figure at a
//! small size in the same run.
//!
//! - **History:** an application message's storage bytes and time with `small` and with
//!   `large` messages of history in its room (redb on disk, the engine and the store the
//!   gateway runs); the ratio is the cost of history (1.0: none). Also with one device
//!   offline the whole time (`*_offline_device`): its queue holds the history, up to its cap.
//! - **Rooms:** a store holding `rooms` rooms of 5 members: disk per room (against a store of
//!   a tenth as many rooms), and the start-up time and resident memory of `mimi run` on it
//!   against the same on an empty store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mimi_client::{Member, RoomSetup, role};
use mimi_content::builder;
use mimi_engine::ClientCall;
use mimi_engine::store::{Store, Write, WriteBatch};
use mimi_proto::directory::Endpoint;
use serde::Serialize;
use sha2::Digest as _;

use crate::bench::{Solo, accepted, body_text, mimi_body};

/// One figure at a small and a large size.
#[derive(Debug, Clone, Serialize)]
pub struct Growth {
    /// What is measured.
    pub bench: String,
    /// The small size.
    pub small: u64,
    /// The large size.
    pub large: u64,
    /// The figure at the small size.
    pub at_small: f64,
    /// The figure at the large size.
    pub at_large: f64,
    /// `at_large / at_small`.
    pub ratio: f64,
    /// Unit of the figures.
    pub unit: String,
}

impl Growth {
    pub(crate) fn new(
        bench: &str,
        unit: &str,
        (small, at_small): (u64, f64),
        (large, at_large): (u64, f64),
    ) -> Self {
        Self {
            bench: bench.into(),
            small,
            large,
            at_small: round(at_small),
            at_large: round(at_large),
            ratio: round(at_large / at_small.max(f64::MIN_POSITIVE)),
            unit: unit.into(),
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn token_of(user: &str) -> [u8; 32] {
    let token: [u8; 32] = sha2::Sha256::digest(user.as_bytes()).into();
    sha2::Sha256::digest(token).into()
}

/// Registers `m`'s device (open registration) and publishes `kps` KeyPackages; its token hash.
pub(crate) fn register(e: &mut Solo, m: &Member, kps: usize) -> anyhow::Result<[u8; 32]> {
    let user = m.user().rsplit('/').next().unwrap_or_default().to_owned();
    let hash = token_of(&user);
    let r = e.call(
        None,
        ClientCall::Register {
            user: user.clone(),
            device: "d".into(),
            display_name: user,
            new_token_hash: hash,
        },
    )?;
    anyhow::ensure!(r.status == 201, "register: {}", body_text(&r));
    publish(e, m, hash, kps)?;
    Ok(hash)
}

fn publish(e: &mut Solo, m: &Member, hash: [u8; 32], kps: usize) -> anyhow::Result<()> {
    let mut left = kps;
    while left > 0 {
        let n = left.min(500);
        let r = e.call(
            Some(hash),
            ClientCall::PublishKeyPackages {
                key_packages: m.key_packages(n)?,
                last_resort: None,
            },
        )?;
        anyhow::ensure!(r.status == 200, "publish: {}", body_text(&r));
        left -= n;
    }
    Ok(())
}

/// Creates `room` hosted by `e` with `creator` (franking off) and adds `others` in one commit,
/// their KeyPackages claimed through the hub.
pub(crate) fn room_with(
    e: &mut Solo,
    creator: &mut Member,
    ct: [u8; 32],
    room: &str,
    others: &[&Member],
) -> anyhow::Result<()> {
    let hub = e.call(Some(ct), ClientCall::HubInfo)?;
    let es = match hub.body {
        mimi_engine::Body::Client(mimi_engine::ClientReply::HubInfo(h)) => h.external_sender.0,
        _ => anyhow::bail!("no hub info"),
    };
    let mut setup = RoomSetup::named("state");
    setup.franking = false;
    let created = creator.create_room(room, &es, &setup)?;
    let r = e.call(
        Some(ct),
        ClientCall::CreateRoom {
            room: room.into(),
            group_info: created.group_info,
            ratchet_tree: created.ratchet_tree,
        },
    )?;
    anyhow::ensure!(r.status == 201, "create: {}", body_text(&r));
    let mut kps = Vec::new();
    let mut members = Vec::new();
    for m in others {
        let r = e.call(
            Some(ct),
            ClientCall::Room {
                endpoint: Endpoint::KeyMaterial,
                target: m.user().to_owned(),
                body: creator.key_material_request(m.user(), room).into(),
            },
        )?;
        anyhow::ensure!(r.status == 200, "key material: {}", body_text(&r));
        kps.extend(creator.key_packages_from_response(&mimi_body(&r))?);
        members.push((m.user().to_owned(), role::MEMBER));
    }
    let bundle = creator.add_participants(room, &members, &kps)?;
    let r = e.call(
        Some(ct),
        ClientCall::Room {
            endpoint: Endpoint::Update,
            target: room.into(),
            body: bundle.into(),
        },
    )?;
    accepted(&r, "add")?;
    creator.commit_accepted(room)?;
    Ok(())
}

fn redb(path: &Path) -> anyhow::Result<Arc<dyn Store>> {
    let _ = std::fs::remove_file(path);
    Ok(Arc::new(mimi_gateway::store::RedbStore::open(path)?))
}

/// Bytes and time of `window` application messages after `history` messages in one room of
/// two local members. Both devices acknowledge what they receive as they go, as clients do
/// (the sender's device too: the hub echoes a message to every device of the room). With
/// `backlog`, the sender's device never acknowledges, as an offline device: its queue then
/// holds the whole history (up to the queue's cap), which is pending state, not history.
fn per_message(dir: &Path, history: u64, window: u64, backlog: bool) -> anyhow::Result<(f64, f64)> {
    let store = redb(&dir.join(format!("history-{history}-{backlog}.redb")))?;
    let mut e = Solo::with_store("a.example", store)?;
    let mut alice = Member::new("a.example", "alice", "d");
    let bob = Member::new("a.example", "bob", "d");
    let at = register(&mut e, &alice, 0)?;
    register(&mut e, &bob, 1)?;
    let room = "mimi://a.example/r/history";
    room_with(&mut e, &mut alice, at, room, &[&bob])?;
    let send = |e: &mut Solo, alice: &mut Member, i: u64| -> anyhow::Result<()> {
        let (body, _) = alice.send(room, |s, r, salt| {
            builder::text(s, r, salt, &format!("message {i}"))
        })?;
        let r = e.call(
            Some(at),
            ClientCall::Room {
                endpoint: Endpoint::SubmitMessage,
                target: room.into(),
                body: body.into(),
            },
        )?;
        anyhow::ensure!(r.status == 200, "submit: {}", body_text(&r));
        if i % 100 == 99 {
            // The clients acknowledge what they received.
            let mut ack = WriteBatch::default();
            let acking: &[&str] = if backlog {
                &["bob/d"]
            } else {
                &["bob/d", "alice/d"]
            };
            for client in acking {
                ack.push(Write::Ack {
                    client: (*client).into(),
                    upto: u64::MAX,
                });
            }
            mimi_engine::store::commit(e.store.as_ref(), &[&ack])?;
        }
        Ok(())
    };
    for i in 0..history {
        send(&mut e, &mut alice, i)?;
    }
    let (bytes0, t) = (e.written, Instant::now());
    for i in history..history + window {
        send(&mut e, &mut alice, i)?;
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / window as f64;
    let bytes = (e.written - bytes0) as f64 / window as f64;
    Ok((bytes, us))
}

/// A redb store with `rooms` rooms of 5 members; its path.
fn rooms_store(dir: &Path, rooms: u64) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("rooms-{rooms}.redb"));
    let store = redb(&path)?;
    let mut e = Solo::with_store("a.example", store)?;
    let mut creator = Member::new("a.example", "creator", "d");
    let ct = register(&mut e, &creator, 0)?;
    // Each room's 4 other members from a pool, each holding at most 900 KeyPackages (a client
    // may hold 1000).
    let pool = usize::try_from(rooms * 4)?.div_ceil(900).max(4);
    let members: Vec<Member> = (0..pool)
        .map(|i| Member::new("a.example", &format!("m{i}"), "d"))
        .collect();
    for m in &members {
        register(&mut e, m, usize::try_from(rooms * 4)?.div_ceil(pool))?;
    }
    for r in 0..usize::try_from(rooms)? {
        let others: Vec<&Member> = (0..4).map(|k| &members[(4 * r + k) % pool]).collect();
        room_with(
            &mut e,
            &mut creator,
            ct,
            &format!("mimi://a.example/r/room{r}"),
            &others,
        )?;
    }
    Ok(path)
}

/// Start-up of `mimi` (`exe`) on `store`: seconds until it listens, and its resident memory
/// (KiB) once listening.
fn start_up(exe: &Path, dir: &Path, store: &Path) -> anyhow::Result<(f64, f64)> {
    use std::io::BufRead as _;
    let pki = dir.join(format!(
        "pki-{}",
        store.file_stem().and_then(|s| s.to_str()).unwrap_or("x")
    ));
    let _ = std::fs::remove_dir_all(&pki);
    let port = |n: u16| 30_000 + (std::process::id() % 1000) as u16 * 3 + n;
    mimi_gateway::pki::init_with_ports(
        &["a.example".to_owned()],
        &pki,
        &[(port(0), port(1), port(2))],
    )?;
    let cfg = pki.join("a.example").join("config.toml");
    let text = std::fs::read_to_string(&cfg)?.replace(
        "path = \"data/a.example.redb\"",
        &format!("path = \"{}\"", store.display()),
    );
    std::fs::write(&cfg, text)?;
    let t = Instant::now();
    let mut child = std::process::Command::new(exe)
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut out = std::io::BufReader::new(child.stdout.take().context("no stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(line.starts_with("listening"), "mimi run printed {line:?}");
    std::thread::sleep(Duration::from_millis(300));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    Ok((secs, rss))
}

/// Runs the state benchmarks; `exe` is the `mimi` binary (for the start-up figures).
///
/// # Errors
/// A step that fails.
pub fn state(
    dir: &Path,
    exe: &Path,
    small: u64,
    large: u64,
    rooms: u64,
) -> anyhow::Result<Vec<Growth>> {
    std::fs::create_dir_all(dir)?;
    let window = 1000;
    let (b0, t0) = per_message(dir, small, window, false)?;
    let (b1, t1) = per_message(dir, large, window, false)?;
    let (q0, u0) = per_message(dir, small, window, true)?;
    let (q1, u1) = per_message(dir, large, window, true)?;
    let mut out = vec![
        Growth::new("message_bytes", "bytes", (small, b0), (large, b1)),
        Growth::new("message_time", "us", (small, t0), (large, t1)),
        Growth::new(
            "message_bytes_offline_device",
            "bytes",
            (small, q0),
            (large, q1),
        ),
        Growth::new(
            "message_time_offline_device",
            "us",
            (small, u0),
            (large, u1),
        ),
    ];
    let empty = rooms_store(dir, 0)?;
    let tenth = (rooms / 10).max(1);
    let some = rooms_store(dir, tenth)?;
    let full = rooms_store(dir, rooms)?;
    let disk = |p: &Path| std::fs::metadata(p).map(|m| m.len() as f64).unwrap_or(0.0);
    let per_room = |p: &Path, n: u64| (disk(p) - disk(&empty)) / n.max(1) as f64;
    out.push(Growth::new(
        "disk_per_room",
        "bytes",
        (tenth, per_room(&some, tenth)),
        (rooms, per_room(&full, rooms)),
    ));
    let (s0, r0) = start_up(exe, dir, &empty)?;
    let (s1, r1) = start_up(exe, dir, &full)?;
    out.push(Growth::new("start_up", "s", (0, s0), (rooms, s1)));
    out.push(Growth::new("rss", "KiB", (0, r0), (rooms, r1)));
    Ok(out)
}
