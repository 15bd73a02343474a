//! `mimi bench fanout`: one hub and N follower gateways in one process (HTTP/3 between them, a
//! redb file each), one user per follower in the room. A message's latency is from its
//! submission to the hub's client API (in open loop: from the moment it was due) to the moment
//! a follower's user can read it from its client API; each delivery is a sample. The rate is
//! messages delivered to every follower per second.
//!
//! Runs per follower count: lockstep (one message at a time, the next submitted when every
//! follower has the last), closed loop with 1, 16 and 64 submissions in flight, then open
//! loop at half the highest closed-loop rate (submissions due at fixed intervals, at most 64
//! outstanding; a submission that had to wait for that cap is counted `late`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mimi_client::{RoomSetup, role};
use mimi_content::builder;
use mimi_proto::codec::Wire as _;
use mimi_proto::messages::SubmitMessageRequest;
use mimi_session::{ApiClient, Session};

use super::baseline::{Bare, Baselines};
use super::{IN_FLIGHT, Load, Measurement, summarize, unthrottled};
use crate::local::LocalFederation;

/// The bytes that identify a message inside the FanoutMessage a follower delivers: the last 16
/// bytes of its MLS PrivateMessage (the AEAD tag).
type Key = [u8; 16];

/// How a run submits.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// One message at a time: the next is submitted when every follower's user has the last.
    Lockstep,
    /// `n` workers, each submitting the next message when its last one was accepted.
    Closed(usize),
    /// One submission due every `1/rate` s, at most `cap` outstanding.
    Open { rate: f64, cap: usize },
}

/// One run's figures.
struct Run {
    load: Load,
    late: usize,
}

/// The room the benchmark sends into and the clients that read it at each follower.
struct Room {
    alice: Session,
    api: Arc<ApiClient>,
    readers: Vec<Arc<ApiClient>>,
    cursors: Vec<u64>,
}

const ROOM: &str = "mimi://a.example/r/bench";

/// How long a run may wait for its last delivery.
const STALL: Duration = Duration::from_secs(60);

impl Room {
    async fn create(fed: &LocalFederation, domains: &[String]) -> anyhow::Result<Self> {
        let mut alice = Session::register(
            fed.get("a.example").addrs.client_api,
            "a.example",
            "alice",
            "phone",
            1,
        )
        .await?;
        let mut readers = Vec::new();
        let mut users = Vec::new();
        for d in &domains[1..] {
            let s = Session::register(fed.get(d).addrs.client_api, d, "user", "dev", 2).await?;
            users.push((s.user().to_owned(), role::MEMBER));
            readers.push(Arc::new(ApiClient::with_token(
                fed.get(d).addrs.client_api,
                s.api.token().unwrap_or_default(),
            )));
        }
        let mut setup = RoomSetup::named("bench");
        setup.franking = false;
        alice.create_room(ROOM, &setup).await?;
        anyhow::ensure!(
            alice.add(ROOM, &users).await? == mimi_session::Verdict::Accepted,
            "adding the followers' users was refused"
        );
        // Drain the Welcomes.
        let mut cursors = Vec::new();
        for r in &readers {
            let e = r.events(0, 1000, 10).await?;
            let c = e.events.last().map_or(0, |d| d.seq);
            r.ack(c).await?;
            cursors.push(c);
        }
        let api = Arc::new(ApiClient::with_token(
            fed.get("a.example").addrs.client_api,
            alice.api.token().unwrap_or_default(),
        ));
        Ok(Self {
            alice,
            api,
            readers,
            cursors,
        })
    }

    /// `count` messages encrypted ahead, each with its key.
    fn encrypt(&mut self, count: usize) -> anyhow::Result<Vec<(Key, Vec<u8>)>> {
        (0..count)
            .map(|i| {
                let (body, _) = self.alice.member.send(ROOM, |s, r, salt| {
                    builder::text(s, r, salt, &format!("message {i}"))
                })?;
                let app = SubmitMessageRequest::from_bytes(&body)?
                    .app_message
                    .to_bytes();
                let key: Key = app
                    .get(app.len().saturating_sub(16)..)
                    .and_then(|k| k.try_into().ok())
                    .context("an MLS message shorter than its tag")?;
                Ok((key, body))
            })
            .collect()
    }

    /// Sends `count` messages as `mode` says and waits until every follower's user has them.
    async fn run(&mut self, count: usize, mode: Mode) -> anyhow::Result<Run> {
        if let Mode::Lockstep = mode {
            return self.lockstep(count).await;
        }
        let bodies = self.encrypt(count)?;
        let keys: Arc<HashMap<Key, usize>> = Arc::new(
            bodies
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (*k, i))
                .collect(),
        );
        anyhow::ensure!(keys.len() == count, "two messages with the same tag");
        let start = Instant::now();
        let readers: Vec<_> = self
            .readers
            .iter()
            .zip(self.cursors.iter())
            .map(|(r, c)| tokio::spawn(read(Arc::clone(r), *c, Arc::clone(&keys), start)))
            .collect();
        let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; count]));
        let late = submit(&self.api, bodies, mode, start, &sent).await?;
        let mut samples = Vec::new();
        let mut last = start;
        let sent = sent.lock().map_err(|e| anyhow::anyhow!("{e}"))?.clone();
        for (j, r) in readers.into_iter().enumerate() {
            let (cursor, arrivals) = r.await??;
            self.cursors[j] = cursor;
            for (i, at) in arrivals.into_iter().enumerate() {
                let at = at.context("a message never arrived")?;
                let from = sent[i].context("a message was never sent")?;
                last = last.max(at);
                samples.push(at.saturating_duration_since(from));
            }
        }
        let mut load = summarize(samples, last - start);
        load.per_s = count as f64 / (last - start).as_secs_f64();
        Ok(Run { load, late })
    }

    /// One message at a time, each followed to every follower's user.
    async fn lockstep(&mut self, count: usize) -> anyhow::Result<Run> {
        let bodies = self.encrypt(count)?;
        let start = Instant::now();
        let mut samples = Vec::new();
        for (key, body) in bodies {
            let keys = Arc::new(HashMap::from([(key, 0)]));
            let t = Instant::now();
            submit_one(&self.api, body).await?;
            let waits = self
                .readers
                .iter()
                .zip(self.cursors.iter())
                .map(|(r, c)| read(Arc::clone(r), *c, Arc::clone(&keys), t));
            for (j, r) in futures_util::future::join_all(waits)
                .await
                .into_iter()
                .enumerate()
            {
                let (cursor, at) = r?;
                self.cursors[j] = cursor;
                let at = at
                    .first()
                    .copied()
                    .flatten()
                    .context("a message never arrived")?;
                samples.push(at.saturating_duration_since(t));
            }
        }
        let mut load = summarize(samples, start.elapsed());
        load.per_s = count as f64 / start.elapsed().as_secs_f64();
        Ok(Run { load, late: 0 })
    }
}

/// Submits one message; an answer other than 200 is an error.
async fn submit_one(api: &ApiClient, body: Vec<u8>) -> anyhow::Result<()> {
    let r = api.room("submit", ROOM, body).await?;
    anyhow::ensure!(
        r.status == 200,
        "submit answered {}: {}",
        r.status,
        r.text()
    );
    Ok(())
}

/// Submits every body; returns how many open-loop submissions started late.
async fn submit(
    api: &Arc<ApiClient>,
    bodies: Vec<(Key, Vec<u8>)>,
    mode: Mode,
    start: Instant,
    sent: &Arc<Mutex<Vec<Option<Instant>>>>,
) -> anyhow::Result<usize> {
    match mode {
        Mode::Lockstep => anyhow::bail!("lockstep runs submit one message at a time"),
        Mode::Closed(n) => {
            let queue = Arc::new(Mutex::new(
                bodies.into_iter().enumerate().rev().collect::<Vec<_>>(),
            ));
            let workers: Vec<_> = (0..n)
                .map(|_| {
                    let (api, queue, sent) =
                        (Arc::clone(api), Arc::clone(&queue), Arc::clone(sent));
                    tokio::spawn(async move {
                        loop {
                            let next = queue.lock().map_err(|e| anyhow::anyhow!("{e}"))?.pop();
                            let Some((i, (_, body))) = next else {
                                return Ok::<_, anyhow::Error>(());
                            };
                            sent.lock().map_err(|e| anyhow::anyhow!("{e}"))?[i] =
                                Some(Instant::now());
                            submit_one(&api, body).await?;
                        }
                    })
                })
                .collect();
            for w in workers {
                w.await??;
            }
            Ok(0)
        }
        Mode::Open { rate, cap } => {
            let permits = Arc::new(tokio::sync::Semaphore::new(cap));
            let mut late = 0;
            let mut tasks = Vec::new();
            for (i, (_, body)) in bodies.into_iter().enumerate() {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                sent.lock().map_err(|e| anyhow::anyhow!("{e}"))?[i] = Some(due);
                let permit = match Arc::clone(&permits).try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        late += 1;
                        Arc::clone(&permits).acquire_owned().await?
                    }
                };
                let api = Arc::clone(api);
                tasks.push(tokio::spawn(async move {
                    let r = submit_one(&api, body).await;
                    drop(permit);
                    r
                }));
            }
            for t in tasks {
                t.await??;
            }
            Ok(late)
        }
    }
}

/// Reads one follower user's deliveries from `cursor` until every message of `keys` arrived;
/// returns the new cursor and each message's arrival.
async fn read(
    reader: Arc<ApiClient>,
    mut cursor: u64,
    keys: Arc<HashMap<Key, usize>>,
    start: Instant,
) -> anyhow::Result<(u64, Vec<Option<Instant>>)> {
    let mut arrivals = vec![None; keys.len()];
    let mut missing = keys.len();
    while missing > 0 {
        anyhow::ensure!(
            start.elapsed() < STALL,
            "fan-out stalled: {missing} messages missing"
        );
        let page = reader.events(cursor, 1000, 5).await?;
        let now = Instant::now();
        for d in &page.events {
            cursor = d.seq;
            let found = d
                .body
                .0
                .windows(16)
                .find_map(|w| keys.get(<&Key>::try_from(w).ok()?));
            if let Some(&i) = found
                && arrivals[i].is_none()
            {
                arrivals[i] = Some(now);
                missing -= 1;
            }
        }
        if !page.events.is_empty() {
            reader.ack(cursor).await?;
        }
    }
    Ok((cursor, arrivals))
}

fn measurement(followers: usize, mode: Mode, run: &Run, base: &Baselines) -> Measurement {
    let (in_flight, rate) = match mode {
        Mode::Lockstep => (1, 0.0),
        Mode::Closed(n) => (n, 0.0),
        Mode::Open { rate, cap } => (cap, rate),
    };
    let mut m = Measurement::new("fanout", "h3", in_flight, &run.load, base);
    m.mode = match mode {
        Mode::Lockstep => "lockstep",
        Mode::Closed(_) => "closed",
        Mode::Open { .. } => "open",
    };
    m.followers = Some(followers);
    m.rate = rate;
    m.deliveries_per_s = Some(run.load.per_s * followers as f64);
    if rate > 0.0 {
        m.late = Some(run.late);
    }
    m
}

/// `mimi bench fanout`: for each follower count, the closed-loop runs, the open-loop run at
/// half saturation, and the baselines measured on the same machine state.
///
/// # Errors
/// Start-up, refused submissions or a stalled fan-out.
pub async fn fanout(
    dir: &Path,
    messages: usize,
    follower_counts: &[usize],
) -> anyhow::Result<Vec<Measurement>> {
    let mut out = Vec::new();
    for &followers in follower_counts {
        let sub = dir.join(format!("fanout-{followers}"));
        let mut domains = vec!["a.example".to_owned(), "b.example".to_owned()];
        domains.extend((2..=followers).map(|i| format!("f{i}.example")));
        let names: Vec<&str> = domains.iter().map(String::as_str).collect();
        let fed = LocalFederation::start(&names, &sub, unthrottled).await?;
        let bare = Bare::start(&sub).await?;
        let mut bases = HashMap::new();
        for n in IN_FLIGHT {
            bases.insert(n, bare.measure(n, Duration::from_secs(1)).await?);
        }
        let mut room = Room::create(&fed, &domains).await?;
        let run = room.run(messages.min(200), Mode::Lockstep).await?;
        out.push(measurement(followers, Mode::Lockstep, &run, &bases[&1]));
        let mut saturation: f64 = 0.0;
        for n in IN_FLIGHT {
            let run = room.run(messages, Mode::Closed(n)).await?;
            saturation = saturation.max(run.load.per_s);
            out.push(measurement(followers, Mode::Closed(n), &run, &bases[&n]));
        }
        let cap = 64;
        let mode = Mode::Open {
            rate: (saturation / 2.0).max(1.0),
            cap,
        };
        // At least two seconds of offered load.
        let count = messages.max((saturation as usize).min(20_000));
        let run = room.run(count, mode).await?;
        out.push(measurement(followers, mode, &run, &bases[&cap]));
        fed.shutdown().await;
    }
    Ok(out)
}
