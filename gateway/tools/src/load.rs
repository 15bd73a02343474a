//! `mimi load`: drives the client APIs of running gateways. It creates rooms spanning them,
//! sends messages at a rate, waits for every delivery and reports what was lost, duplicated or
//! reordered. It keeps going through gateways being killed and restarted: a request that got no
//! answer is sent again with the same bytes (MIMI makes that safe: receivers' MLS state refuses
//! a second copy of a message), long-polls reconnect.
//!
//! The report is one JSON line:
//! `{"rooms","sent","accepted","delivered","duplicates","lost","out_of_order","unusable","p50_ms","p99_ms","accepted_per_s"}`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use mimi_client::{Event, RoomSetup, role};
use mimi_content::builder;
use mimi_proto::codec::Wire;
use mimi_proto::messages::{SubmitMessageResponse, SubmitOutcome};
use mimi_session::{ApiClient, Session};
use serde::Serialize;
use tokio::sync::Mutex;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `(domain, client API addresses)` of each provider: one gateway, or every node of a
    /// cluster (clients move to the next address when one cannot be reached).
    pub gateways: Vec<(String, Vec<SocketAddr>)>,
    /// Rooms to create.
    pub rooms: usize,
    /// Users per room (spread over the gateways; the first hosts the room).
    pub users: usize,
    /// Messages to send in all.
    pub messages: usize,
    /// Messages per second (0: as fast as the gateways take them).
    pub rate: f64,
    /// How long to keep waiting for deliveries after the last send, and for a gateway to come
    /// back.
    pub patience: Duration,
    /// Submissions in flight at most, whatever the rate (a due message waits for a slot; a
    /// message waiting for its sender's previous one does not hold one).
    pub in_flight: usize,
    /// Distinguishes this run's users and rooms.
    pub run: u32,
    /// Told once the rooms are set up and sending starts (a fault injector waits for it).
    pub ready: Option<Arc<tokio::sync::Notify>>,
    /// A token that may register users (the gateways' admin token) when registration is
    /// closed.
    pub token: Option<String>,
}

/// The report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadReport {
    /// Rooms created.
    pub rooms: usize,
    /// Messages submitted (each once, however often it was retried).
    pub sent: usize,
    /// Messages the hubs accepted.
    pub accepted: usize,
    /// (message, receiver) deliveries seen.
    pub delivered: usize,
    /// Deliveries seen more than once.
    pub duplicates: usize,
    /// Deliveries of accepted messages never seen.
    pub lost: usize,
    /// Deliveries that came in another order than the room's order at its first receiver.
    pub out_of_order: usize,
    /// Deliveries a receiver could not use (say a message fanned out twice, whose second
    /// copy reuses a deleted MLS secret): the transport delivered something twice or broke it.
    #[serde(default)]
    pub unusable: usize,
    /// Median delivery latency (ms).
    pub p50_ms: f64,
    /// 99th percentile delivery latency (ms).
    pub p99_ms: f64,
    /// Messages accepted per second while sending (submission to the hub's answer).
    #[serde(default)]
    pub accepted_per_s: f64,
}

impl LoadReport {
    /// Whether everything accepted arrived once and in order.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.out_of_order == 0 && self.unusable == 0
    }
}

/// The gateways of a `mimi init` directory: `<dir>/<domain>/config.toml` client API addresses.
///
/// # Errors
/// Unreadable configurations.
pub fn gateways_of_dir(dir: &Path) -> anyhow::Result<Vec<(String, Vec<SocketAddr>)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let p = e?.path().join("config.toml");
        if !p.exists() {
            continue;
        }
        let cfg = mimi_gateway::config::Config::load(&p)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        out.push((cfg.domain.clone(), vec![cfg.listen.client_api]));
    }
    out.sort();
    if out.is_empty() {
        bail!("no <domain>/config.toml under {}", dir.display());
    }
    Ok(out)
}

struct User {
    session: Mutex<Session>,
    poller: ApiClient,
    /// A client submits its messages one after the other: a message retried after a crash
    /// is not overtaken by later ones of the same sender (receivers keep a bounded window of
    /// past ratchet generations).
    sending: Mutex<()>,
}

/// The longest wait between two tries of a request (a gateway being restarted is usually
/// back within a second; waiting longer only idles the load).
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// Messages that may wait for their sender's previous one, per request in flight; past it
/// the sending loop waits (and open-loop messages go out late) until one leaves.
const QUEUED_PER_IN_FLIGHT: usize = 64;

/// A delivery seen: (room, receiver) → message order.
type Seen = Arc<std::sync::Mutex<HashMap<(String, String), Vec<String>>>>;

async fn retrying<T, F, Fut>(patience: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + patience;
    let mut backoff = Duration::from_millis(100);
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Ok(None) => bail!("{what}: no answer within {patience:?}"),
            Err(e) => return Err(e.context(what.to_owned())),
        }
    }
}

fn transient(status: u16) -> bool {
    status >= 500 || status == 429
}

/// Runs the load.
///
/// # Errors
/// Setup failures (a gateway that never answers, a refused room).
pub async fn run(o: &LoadOptions) -> anyhow::Result<LoadReport> {
    if o.gateways.is_empty()
        || o.gateways.iter().any(|(_, a)| a.is_empty())
        || o.users == 0
        || o.rooms == 0
    {
        bail!("need at least one gateway (each with an address), one room and one user per room");
    }
    // --- setup: users and rooms ---------------------------------------------------------
    let mut rooms: Vec<(String, Vec<Arc<User>>)> = Vec::new();
    for r in 0..o.rooms {
        let mut members = Vec::new();
        for u in 0..o.users {
            let (domain, api) = &o.gateways[(r + u) % o.gateways.len()];
            let name = format!("load{}r{r}u{u}", o.run);
            let s = retrying(o.patience, "register", || async {
                match Session::register_with(
                    api.as_slice(),
                    o.token.as_deref(),
                    domain,
                    &name,
                    "load",
                    4,
                )
                .await
                {
                    Ok(s) => Ok(Some(s)),
                    Err(e) if e.to_string().contains("transport") => Ok(None),
                    Err(e) => Err(anyhow::anyhow!("{e}")),
                }
            })
            .await?;
            let poller = s.api.for_token(s.api.token().unwrap_or_default());
            members.push(Arc::new(User {
                session: Mutex::new(s),
                poller,
                sending: Mutex::new(()),
            }));
        }
        let hub = &o.gateways[r % o.gateways.len()].0;
        let room = format!("mimi://{hub}/r/load{}n{r}", o.run);
        {
            let mut creator = members[0].session.lock().await;
            creator
                .create_room(&room, &RoomSetup::named("load"))
                .await
                .with_context(|| format!("creating {room}"))?;
            let others: Vec<(String, u32)> = {
                let mut v = Vec::new();
                for m in &members[1..] {
                    v.push((m.session.lock().await.user().to_owned(), role::MEMBER));
                }
                v
            };
            if !others.is_empty() {
                let v = creator.add(&room, &others).await?;
                if v != mimi_session::Verdict::Accepted {
                    bail!("adding the users of {room}: {v:?}");
                }
            }
        }
        for m in &members[1..] {
            let mut s = m.session.lock().await;
            let deadline = Instant::now() + o.patience;
            while !s.member.rooms().contains(&room) {
                if Instant::now() > deadline {
                    bail!("{} never joined {room}", s.user());
                }
                let _ = s.sync(2).await;
            }
        }
        rooms.push((room, members));
    }

    if let Some(r) = &o.ready {
        r.notify_one();
    }

    // --- receivers ------------------------------------------------------------------------
    let seen: Seen = Arc::default();
    let unusable = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sent_at: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<std::sync::Mutex<Vec<f64>>> = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut receivers = Vec::new();
    for (_, members) in &rooms {
        for m in members {
            let (m, seen, unusable, sent_at, lat, done) = (
                Arc::clone(m),
                Arc::clone(&seen),
                Arc::clone(&unusable),
                Arc::clone(&sent_at),
                Arc::clone(&latencies),
                Arc::clone(&done),
            );
            receivers.push(tokio::spawn(async move {
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    let cursor = m.session.lock().await.cursor;
                    let Ok(page) = m.poller.events(cursor, 500, 1).await else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    if page.events.is_empty() {
                        continue;
                    }
                    let (events, me, cursor) = {
                        let mut s = m.session.lock().await;
                        let evs = s.apply(page);
                        (evs, s.user().to_owned(), s.cursor)
                    };
                    for e in events {
                        if let Event::Ignored { room, reason } = &e
                            && reason != "own message"
                        {
                            tracing::warn!(%room, receiver = %me, %reason, "a delivery could not be used");
                            eprintln!("ignored: {room} {me}: {reason}");
                            unusable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        if let Event::Message { room, id, .. } = e {
                            let id = id.to_hex();
                            if let Some(t) =
                                sent_at.lock().map(|m| m.get(&id).copied()).ok().flatten()
                                && let Ok(mut l) = lat.lock()
                            {
                                l.push(t.elapsed().as_secs_f64() * 1e3);
                            }
                            if let Ok(mut s) = seen.lock() {
                                s.entry((room, me.clone())).or_default().push(id);
                            }
                        }
                    }
                    let _ = m.poller.ack(cursor).await;
                }
            }));
        }
    }

    // --- senders --------------------------------------------------------------------------
    let mut report = LoadReport {
        rooms: rooms.len(),
        ..LoadReport::default()
    };
    let accepted: Arc<std::sync::Mutex<Vec<(String, String, String)>>> = Arc::default();
    // Two bounds: `gate` counts requests in flight; `queued` counts messages waiting behind
    // their sender's previous one (each sender submits in order). A sender whose hub is down
    // holds only its own queue, never the in-flight permits other rooms need.
    let gate = Arc::new(tokio::sync::Semaphore::new(o.in_flight.max(1)));
    let queued = Arc::new(tokio::sync::Semaphore::new(
        o.in_flight.max(1).saturating_mul(QUEUED_PER_IN_FLIGHT),
    ));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..o.messages {
        if o.rate > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / o.rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let (room, members) = &rooms[i % rooms.len()];
        let sender = Arc::clone(&members[(i / rooms.len()) % members.len()]);
        let place = Arc::clone(&queued).acquire_owned().await?;
        let gate = Arc::clone(&gate);
        let (room, sent_at, accepted, patience) = (
            room.clone(),
            Arc::clone(&sent_at),
            Arc::clone(&accepted),
            o.patience,
        );
        let text = format!("load {} #{i}", o.run);
        report.sent += 1;
        tasks.push(tokio::spawn(async move {
            let _place = place;
            let _in_order = sender.sending.lock().await;
            let Ok(_permit) = gate.acquire_owned().await else {
                return;
            };
            let (body, id, user, api) = {
                let mut s = sender.session.lock().await;
                let Ok((body, msg)) = s
                    .member
                    .send(&room, |snd, r, salt| builder::text(snd, r, salt, &text))
                else {
                    return;
                };
                let Ok(id) = msg.id() else { return };
                (
                    body,
                    id.to_hex(),
                    s.user().to_owned(),
                    s.api.for_token(s.api.token().unwrap_or_default()),
                )
            };
            if let Ok(mut m) = sent_at.lock() {
                m.insert(id.clone(), Instant::now());
            }
            // The same bytes until the hub answers (through restarts).
            let outcome = retrying(patience, "submit", || {
                let (api, room, body) = (&api, &room, body.clone());
                async move {
                    match api.room("submit", room, body).await {
                        Ok(r) if r.status == 200 => Ok(Some(
                            SubmitMessageResponse::from_bytes(&r.body)
                                .map(|r| r.outcome)
                                .map_err(|e| anyhow::anyhow!("{e}"))?,
                        )),
                        Ok(r) if transient(r.status) => Ok(None),
                        Ok(r) => Err(anyhow::anyhow!(
                            "submit answered {}: {}",
                            r.status,
                            r.text()
                        )),
                        Err(_) => Ok(None),
                    }
                }
            })
            .await;
            if let Ok(SubmitOutcome::Accepted { .. }) = outcome
                && let Ok(mut a) = accepted.lock()
            {
                a.push((room, user, id));
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let accepted = accepted.lock().map(|a| a.clone()).unwrap_or_default();
    report.accepted = accepted.len();
    report.accepted_per_s =
        (report.accepted as f64 / start.elapsed().as_secs_f64().max(1e-3) * 10.0).round() / 10.0;

    // --- wait for every delivery --------------------------------------------------------------
    let expected: BTreeMap<(String, String), Vec<String>> = {
        let mut e: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for (room, members) in &rooms {
            for m in members {
                let me = m.session.lock().await.user().to_owned();
                for (r, sender, id) in &accepted {
                    if r == room && *sender != me {
                        e.entry((room.clone(), me.clone()))
                            .or_default()
                            .push(id.clone());
                    }
                }
            }
        }
        e
    };
    let want: usize = expected.values().map(Vec::len).sum();
    let deadline = Instant::now() + o.patience;
    loop {
        let got = seen
            .lock()
            .map(|s| {
                expected
                    .iter()
                    .map(|(k, ids)| {
                        let have = s.get(k);
                        ids.iter()
                            .filter(|i| have.is_some_and(|h| h.contains(i)))
                            .count()
                    })
                    .sum::<usize>()
            })
            .unwrap_or(0);
        if got >= want || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    stop.notify_waiters();
    for r in receivers {
        let _ = tokio::time::timeout(Duration::from_secs(3), r).await;
    }

    // --- account ----------------------------------------------------------------------------
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    report.unusable = unusable.load(std::sync::atomic::Ordering::Relaxed);
    let mut reference: HashMap<String, Vec<String>> = HashMap::new();
    for ((room, receiver), ids) in &seen {
        report.delivered += ids.len();
        let mut counts: HashMap<&String, usize> = HashMap::new();
        for i in ids {
            *counts.entry(i).or_default() += 1;
        }
        report.duplicates += counts
            .values()
            .filter(|c| **c > 1)
            .map(|c| c - 1)
            .sum::<usize>();
        if let Some(exp) = expected.get(&(room.clone(), receiver.clone())) {
            for i in exp.iter().filter(|i| !counts.contains_key(i)) {
                report.lost += 1;
                if report.lost <= 20 {
                    tracing::warn!(%room, %receiver, id = %i, "lost");
                    eprintln!("lost: {room} {receiver} {i}");
                }
            }
        }
        // Order: every receiver of a room sees the room's messages in one order.
        let r = reference.entry(room.clone()).or_insert_with(|| ids.clone());
        let pos: HashMap<&String, usize> = r.iter().enumerate().map(|(i, id)| (id, i)).collect();
        let mut last = None;
        for id in ids {
            if let Some(p) = pos.get(id) {
                if last.is_some_and(|l| *p < l) {
                    report.out_of_order += 1;
                }
                last = Some(*p);
            }
        }
    }
    for (k, exp) in &expected {
        if !seen.contains_key(k) {
            report.lost += exp.len();
        }
    }
    let mut l = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    report.p50_ms = (pct(0.5) * 10.0).round() / 10.0;
    report.p99_ms = (pct(0.99) * 10.0).round() / 10.0;
    Ok(report)
}
