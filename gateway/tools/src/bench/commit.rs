//! `mimi bench commit` (sans-IO: the engine and openmls only): the hub's acceptance of a
//! commit in rooms of 10, 100 and 1000 members against a member's own openmls processing of
//! the same commit. [`Solo`] drives one engine shard over a store step by step; the state
//! benchmark uses it too.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use mimi_client::Member;
use mimi_engine::{Auth, ClientCall, ConsentPolicy, Engine, EngineConfig, Input, Limits, Output};
use mimi_proto::directory::Endpoint;
use openmls::prelude::Ciphersuite;
use openmls_basic_credential::SignatureKeyPair;

use super::{summarize, us};

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
