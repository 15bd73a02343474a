//! `mimi bench`: measurements with their baseline taken in the same run, reported as ratios.
//!
//! - `links`: MIMI request round trips per second over HTTP/3 and HTTPS (1 KiB bodies, the
//!   gateway's own client and server, full peer checks and engine) against a bare quinn
//!   bidirectional-stream echo on the same certificates.
//! - `fanout`: messages per second and p50/p99 delivery latency from one hub to 1, 4 and 16
//!   followers, against the bare HTTP/3 request round trip.
//! - `commit`: the hub's acceptance of a commit in rooms of 10, 100 and 1000 members against a
//!   member's own openmls processing of the same commit.

use std::fmt::Write as _;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::Method;
use mimi_client::{Member, RoomSetup, role};
use mimi_content::builder;
use mimi_engine::{Auth, ClientCall, ConsentPolicy, Engine, EngineConfig, Input, Limits, Output};
use mimi_proto::directory::{Endpoint, encode_path_value};
use openmls::prelude::Ciphersuite;
use openmls_basic_credential::SignatureKeyPair;

use crate::local::LocalFederation;
use mimi_gateway::config::Config;
use mimi_gateway::metrics::Metrics;
use mimi_gateway::peers::PeerClient;
use mimi_gateway::tls::{Identity, load_roots, server_config};
use mimi_session::ApiClient;
use mimi_session::Session;

/// Latency percentiles and throughput of one load run.
#[derive(Debug, Clone)]
pub struct Load {
    /// Completed operations.
    pub ops: usize,
    /// Operations per second.
    pub per_s: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summarize(mut lat: Vec<Duration>, elapsed: Duration) -> Load {
    lat.sort_unstable();
    Load {
        ops: lat.len(),
        per_s: lat.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
    }
}

/// Runs `op` from `concurrency` workers for `duration` (after a short warm-up).
async fn load<F, Fut>(concurrency: usize, duration: Duration, op: F) -> anyhow::Result<Load>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    for _ in 0..20 {
        op().await?;
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while start.elapsed() < duration {
                let t = Instant::now();
                op().await?;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(summarize(all, start.elapsed()))
}

pub(crate) fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// A signed KeyMaterialRequest of exactly `size` bytes from alice@a for an unknown b user
/// (the room URI is padded), and its path.
fn kmr(size: usize) -> (Vec<u8>, String) {
    let m = Member::new("a.example", "alice", "phone");
    let target = "mimi://b.example/u/nobody";
    let base = m.key_material_request(target, "mimi://a.example/r/").len();
    let pad = size.saturating_sub(base).saturating_sub(2);
    let mut body =
        m.key_material_request(target, &format!("mimi://a.example/r/{}", "x".repeat(pad)));
    // The room vector's length prefix may grow by a byte: trim the padding to land on `size`.
    let mut p = pad;
    while body.len() > size && p > 0 {
        p -= 1;
        body = m.key_material_request(target, &format!("mimi://a.example/r/{}", "x".repeat(p)));
    }
    (
        body,
        format!("/v1/keyMaterial/{}", encode_path_value(target)),
    )
}

fn peer_client(
    dir: &Path,
    transport: &str,
    b: mimi_gateway::gateway::Addrs,
) -> anyhow::Result<PeerClient> {
    let path = dir.join("a.example").join("config.toml");
    let mut cfg = Config::load(&path)?;
    for p in &mut cfg.peers {
        p.transport = transport.to_owned();
        if p.domain == "b.example" {
            p.quic = b.quic;
            p.https = b.https;
        }
    }
    let credentials = mimi_gateway::reload::Credentials::load(&cfg)?;
    PeerClient::new(&cfg, credentials, Arc::new(Metrics::default()))
}

fn unthrottled(c: &mut Config) {
    c.limits.rate_per_second = 1e9;
    c.limits.rate_burst = 1e9;
    c.limits.max_concurrent_requests_per_peer = 100_000;
    c.limits.max_streams_per_connection = 1024;
    c.log.level = "error".into();
}

/// A bare quinn echo server with `b.example`'s certificate; returns its address.
fn echo_server(dir: &Path) -> anyhow::Result<(quinn::Endpoint, std::net::SocketAddr)> {
    let id = Identity::load(
        &dir.join("b.example/cert.pem"),
        &dir.join("b.example/key.pem"),
    )?;
    let tls = server_config(&id, load_roots(&dir.join("ca.pem"))?, &[b"mimi-echo"])?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(tls)?,
    ));
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(1024u32.into());
    sc.transport_config(Arc::new(t));
    let ep = quinn::Endpoint::server(sc, "127.0.0.1:0".parse()?)?;
    let addr = ep.local_addr()?;
    let server = ep.clone();
    tokio::spawn(async move {
        while let Some(inc) = server.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = inc.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        if let Ok(buf) = recv.read_to_end(1 << 20).await {
                            let _ = send.write_all(&buf).await;
                            let _ = send.finish();
                        }
                    });
                }
            });
        }
    });
    Ok((ep, addr))
}

async fn echo_client(dir: &Path, addr: std::net::SocketAddr) -> anyhow::Result<quinn::Connection> {
    let id = Identity::load(
        &dir.join("a.example/cert.pem"),
        &dir.join("a.example/key.pem"),
    )?;
    let tls =
        mimi_gateway::tls::client_config(&id, load_roots(&dir.join("ca.pem"))?, &[b"mimi-echo"])?;
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls)?,
    )));
    Ok(ep.connect(addr, "b.example")?.await?)
}

/// The bare request baselines and the gateway's request round trips.
struct LinkLoads {
    echo: Load,
    h3: Load,
    h2: Load,
}

async fn link_loads(
    dir: &Path,
    b: mimi_gateway::gateway::Addrs,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<LinkLoads> {
    let (body, path) = kmr(1024);
    let body = Bytes::from(body);
    let (_server, addr) = echo_server(dir)?;
    let conn = echo_client(dir, addr).await?;
    let payload = body.clone();
    let echo = load(concurrency, duration, move || {
        let (conn, payload) = (conn.clone(), payload.clone());
        async move {
            let (mut s, mut r) = conn.open_bi().await?;
            s.write_all(&payload).await?;
            s.finish()?;
            let back = r.read_to_end(1 << 20).await?;
            if back.len() != payload.len() {
                anyhow::bail!("short echo");
            }
            Ok(())
        }
    })
    .await?;
    let mut out = Vec::new();
    for transport in ["h3", "https"] {
        let client = Arc::new(peer_client(dir, transport, b)?);
        let (body, path) = (body.clone(), path.clone());
        let l = load(concurrency, duration, move || {
            let (client, body, path) = (Arc::clone(&client), body.clone(), path.clone());
            async move {
                let r = client
                    .request("b.example", Method::POST, &path, body)
                    .await?;
                if r.status != 200 {
                    anyhow::bail!("status {}: {}", r.status, String::from_utf8_lossy(&r.body));
                }
                Ok(())
            }
        })
        .await?;
        out.push(l);
    }
    let h2 = out.pop().context("https run")?;
    let h3 = out.pop().context("h3 run")?;
    Ok(LinkLoads { echo, h3, h2 })
}

/// `mimi bench links`.
///
/// # Errors
/// Start-up or request failures.
pub async fn links(dir: &Path, duration: Duration) -> anyhow::Result<String> {
    let fed = LocalFederation::start(&["a.example", "b.example"], dir, unthrottled).await?;
    let mut report = String::from(
        "| concurrency | bare quinn echo (req/s, p50) | HTTP/3 MIMI (req/s, p50, p99) | HTTPS/2 MIMI (req/s, p50, p99) | HTTP/3 ÷ echo | HTTPS ÷ echo |\n|---|---|---|---|---|---|\n",
    );
    for c in [1, 16] {
        let l = link_loads(dir, fed.get("b.example").addrs, c, duration).await?;
        let _ = writeln!(
            report,
            "| {c} | {:.0}, {} | {:.0}, {}, {} | {:.0}, {}, {} | {:.2} | {:.2} |",
            l.echo.per_s,
            us(l.echo.p50),
            l.h3.per_s,
            us(l.h3.p50),
            us(l.h3.p99),
            l.h2.per_s,
            us(l.h2.p50),
            us(l.h2.p99),
            l.h3.per_s / l.echo.per_s,
            l.h2.per_s / l.echo.per_s
        );
    }
    fed.shutdown().await;
    Ok(report)
}

/// `mimi bench fanout`.
///
/// # Errors
/// Start-up or request failures.
pub async fn fanout(dir: &Path, messages: usize) -> anyhow::Result<String> {
    let mut report = String::from(
        "| followers | messages/s (all followers) | deliveries/s | latency p50 | latency p99 | bare HTTP/3 request p50 | p50 ÷ bare request | msgs/s ÷ bare req/s (16 conc.) |\n|---|---|---|---|---|---|---|---|\n",
    );
    for followers in [1usize, 4, 16] {
        let sub = dir.join(format!("fanout-{followers}"));
        let mut domains = vec!["a.example".to_owned(), "b.example".to_owned()];
        domains.extend((2..=followers).map(|i| format!("f{i}.example")));
        let names: Vec<&str> = domains.iter().map(String::as_str).collect();
        let fed = LocalFederation::start(&names, &sub, unthrottled).await?;
        let bare = link_loads(&sub, fed.get("b.example").addrs, 1, Duration::from_secs(1))
            .await?
            .h3;
        let bare16 = link_loads(&sub, fed.get("b.example").addrs, 16, Duration::from_secs(1))
            .await?
            .h3;
        let room = "mimi://a.example/r/bench";
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
        alice.create_room(room, &setup).await?;
        anyhow::ensure!(
            alice.add(room, &users).await? == mimi_session::Verdict::Accepted,
            "adding the followers' users was refused"
        );
        let mut cursors = vec![0u64; readers.len()];
        // Drain the Welcomes.
        for (r, c) in readers.iter().zip(cursors.iter_mut()) {
            let e = r.events(0, 1000, 10).await?;
            *c = e.events.last().map_or(0, |d| d.seq);
        }
        // Latency: one message at a time until every follower's user has it.
        let mut lat = Vec::new();
        let t_lat = Instant::now();
        for i in 0..messages.min(200) {
            let (body, _) = alice.member.send(room, |s, r, salt| {
                builder::text(s, r, salt, &format!("m{i}"))
            })?;
            let t = Instant::now();
            let resp = alice.api.room("submit", room, body).await?;
            anyhow::ensure!(resp.status == 200, "submit answered {}", resp.status);
            let waits = readers.iter().zip(cursors.iter()).map(|(r, c)| {
                let r = Arc::clone(r);
                let c = *c;
                async move {
                    let e = r.events(c, 1000, 10).await?;
                    let last = e
                        .events
                        .last()
                        .map(|d| d.seq)
                        .context("no delivery within 10 s")?;
                    Ok::<_, anyhow::Error>((last, t.elapsed()))
                }
            });
            for (j, r) in futures_util::future::join_all(waits)
                .await
                .into_iter()
                .enumerate()
            {
                let (seq, d) = r?;
                cursors[j] = seq;
                lat.push(d);
            }
        }
        let lat_load = summarize(lat, t_lat.elapsed());
        // Throughput: pre-encrypted messages submitted 16 at a time.
        let bodies: Vec<Vec<u8>> = (0..messages)
            .map(|i| {
                alice
                    .member
                    .send(room, |s, r, salt| {
                        builder::text(s, r, salt, &format!("t{i}"))
                    })
                    .map(|(b, _)| b)
            })
            .collect::<Result<_, _>>()?;
        let api = Arc::new(ApiClient::with_token(
            fed.get("a.example").addrs.client_api,
            alice.api.token().unwrap_or_default(),
        ));
        let start = Instant::now();
        let queue = Arc::new(std::sync::Mutex::new(bodies));
        let mut submitters = Vec::new();
        for _ in 0..16 {
            let (api, queue) = (Arc::clone(&api), Arc::clone(&queue));
            submitters.push(tokio::spawn(async move {
                loop {
                    let next = queue.lock().map_err(|e| anyhow::anyhow!("{e}"))?.pop();
                    let Some(b) = next else {
                        return Ok::<_, anyhow::Error>(());
                    };
                    let r = api.room("submit", room, b).await?;
                    anyhow::ensure!(r.status == 200, "submit answered {}", r.status);
                }
            }));
        }
        for s in submitters {
            s.await??;
        }
        for (r, c) in readers.iter().zip(cursors.iter_mut()) {
            let want = *c + messages as u64;
            while *c < want {
                let e = r.events(*c, 1000, 10).await?;
                *c = e.events.last().map(|d| d.seq).context("fan-out stalled")?;
                r.ack(*c).await?;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let per_s = messages as f64 / elapsed;
        let _ = writeln!(
            report,
            "| {followers} | {per_s:.0} | {:.0} | {} | {} | {} | {:.2} | {:.2} |",
            per_s * followers as f64,
            us(lat_load.p50),
            us(lat_load.p99),
            us(bare.p50),
            lat_load.p50.as_secs_f64() / bare.p50.as_secs_f64(),
            per_s / bare16.per_s
        );
        fed.shutdown().await;
    }
    Ok(report)
}

/// One engine shard over an in-memory store, driven step by step.
pub(crate) struct Solo {
    engine: Engine,
    pub(crate) store: Arc<dyn mimi_engine::store::Store>,
    now: u64,
    /// Bytes the committed batches stored ([`mimi_engine::store::WriteBatch::payload_bytes`]).
    pub(crate) written: usize,
}

impl Solo {
    fn new(domain: &str) -> anyhow::Result<Self> {
        Self::with_store(domain, Arc::new(mimi_engine::store::MemStore::default()))
    }

    /// An engine of `domain` over `store`, one shard.
    pub(crate) fn with_store(
        domain: &str,
        store: Arc<dyn mimi_engine::store::Store>,
    ) -> anyhow::Result<Self> {
        let signer = SignatureKeyPair::new(
            Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.signature_algorithm(),
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let cfg = Arc::new(EngineConfig {
            domain: mimi_proto::uri::Domain::parse(domain)?,
            hub_signer: signer,
            franking_key: vec![1; 32],
            consent: ConsentPolicy::Open,
            asset_domains: Default::default(),
            registration: mimi_engine::Registration::OpenNewUsers,
            partial_name_search: false,
            limits: Limits {
                claims_per_user_per_minute: u32::MAX,
                ..Limits::default()
            },
        });
        let engine = Engine::new(
            cfg,
            openmls_rust_crypto::RustCrypto::default(),
            Arc::clone(&store),
            0,
            1,
            Arc::new(mimi_engine::Shared::default()),
        )?;
        Ok(Self {
            engine,
            store,
            now: 1_800_000_000_000,
            written: 0,
        })
    }

    pub(crate) fn auth(&self, token: Option<[u8; 32]>) -> anyhow::Result<Auth> {
        Ok(match token {
            Some(t) => mimi_engine::authenticate(self.store.as_ref(), self.engine.domain(), &t)?
                .map_or(Auth::Anonymous, Auth::Client),
            None => Auth::Anonymous,
        })
    }

    /// One call: handle, commit the step's writes, and the response.
    pub(crate) fn call(
        &mut self,
        token: Option<[u8; 32]>,
        c: ClientCall,
    ) -> anyhow::Result<mimi_engine::Response> {
        self.now += 1;
        let auth = self.auth(token)?;
        self.engine.handle(
            self.now,
            Input::Client {
                id: self.now,
                auth,
                call: c,
            },
        );
        let w = self.engine.take_writes()?;
        self.written += w.payload_bytes();
        mimi_engine::store::commit(self.store.as_ref(), &[&w])?;
        self.engine.committed();
        let mut resp = None;
        while let Some(o) = self.engine.poll_output() {
            if let Output::Respond { id, response } = o
                && id == self.now
            {
                resp = Some(response);
            }
        }
        resp.context("the engine did not answer")
    }
}

pub(crate) fn body_text(r: &mimi_engine::Response) -> String {
    match &r.body {
        mimi_engine::Body::Refused(x) => x.to_string(),
        other => format!("{other:?}"),
    }
}

pub(crate) fn mimi_body(r: &mimi_engine::Response) -> Bytes {
    match &r.body {
        mimi_engine::Body::Mimi(b) => b.clone(),
        _ => Bytes::new(),
    }
}

pub(crate) fn accepted(r: &mimi_engine::Response, what: &str) -> anyhow::Result<()> {
    use mimi_proto::codec::Wire as _;
    anyhow::ensure!(r.status == 200, "{what}: {}", body_text(r));
    let resp = mimi_proto::messages::UpdateRoomResponse::from_bytes(&mimi_body(r))?;
    anyhow::ensure!(
        matches!(
            resp.outcome,
            mimi_proto::messages::UpdateOutcome::Success { .. }
        ),
        "{what} refused: {resp:?}"
    );
    Ok(())
}

/// `mimi bench commit` (sans-IO: the engine and openmls only).
///
/// # Errors
/// MLS or engine failures.
pub fn commit(rounds: usize) -> anyhow::Result<String> {
    let mut report = String::from(
        "| members | hub accepts a commit (p50) | member processes it (p50) | hub ÷ member |\n|---|---|---|---|\n",
    );
    for n in [10usize, 100, 1000] {
        let mut e = Solo::new("a.example")?;
        let room = "mimi://a.example/r/bench";
        let mut creator = Member::new("a.example", "creator", "d");
        let ct = crate::bench_state::register(&mut e, &creator, 0)?;
        // The observer and n-2 more members, their KeyPackages claimed through the hub, added in
        // one commit.
        let mut observer = Member::new("a.example", "observer", "d");
        crate::bench_state::register(&mut e, &observer, 1)?;
        let mut others = Vec::new();
        for i in 0..n.saturating_sub(2) {
            let m = Member::new("a.example", &format!("u{i}"), "d");
            crate::bench_state::register(&mut e, &m, 1)?;
            others.push(m);
        }
        let mut all: Vec<&Member> = vec![&observer];
        all.extend(others.iter());
        crate::bench_state::room_with(&mut e, &mut creator, ct, room, &all)?;
        let observer_id = "observer/d";
        let mut cursor = 0;
        let mut pull = |e: &mut Solo, obs: &mut Member| -> anyhow::Result<Duration> {
            let page = mimi_engine::store::events(e.store.as_ref(), observer_id, cursor, 1000)?;
            let mut spent = Duration::ZERO;
            for d in page.events {
                cursor = d.seq;
                let t = Instant::now();
                obs.process(room, &d.body.0);
                spent += t.elapsed();
            }
            Ok(spent)
        };
        pull(&mut e, &mut observer)?;
        anyhow::ensure!(observer.epoch(room).is_some(), "the observer did not join");
        let (mut hub, mut member) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let c = creator.commit_pending(room)?;
            let t = Instant::now();
            let r = e.call(
                Some(ct),
                ClientCall::Room {
                    endpoint: Endpoint::Update,
                    target: room.into(),
                    body: c.into(),
                },
            )?;
            hub.push(t.elapsed());
            accepted(&r, "commit")?;
            creator.commit_accepted(room)?;
            member.push(pull(&mut e, &mut observer)?);
        }
        anyhow::ensure!(
            observer.epoch(room) == creator.epoch(room),
            "the observer fell behind"
        );
        let (h, m) = (
            summarize(hub, Duration::from_secs(1)).p50,
            summarize(member, Duration::from_secs(1)).p50,
        );
        let _ = writeln!(
            report,
            "| {n} | {} | {} | {:.2} |",
            us(h),
            us(m),
            h.as_secs_f64() / m.as_secs_f64()
        );
    }
    Ok(report)
}
