//! The black-box suite: the environment (our side of the federation and the target), the
//! runner, and the tests of both roles. Every test is documented in conformance/TESTS.md.

use std::future::Future;
use std::io::{IsTerminal, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mimi_client::Event;
use mimi_proto::directory::{Endpoint, encode_path_value};
use mimi_proto::messages::*;
use mimi_session::Session;
use mimi_tools::raw::{Got, Pem, Raw};
use mimi_tools::reference::ReferenceGateway;

use crate::report::{Outcome, Status};

type Res = Result<(), String>;
type TestFn = for<'a> fn(&'a mut Env) -> Pin<Box<dyn Future<Output = Res> + Send + 'a>>;

/// A test: ID, draft section, whether it is required, what it runs.
pub struct Test {
    /// ID.
    pub id: &'static str,
    /// Section.
    pub section: &'static str,
    /// Required.
    pub required: bool,
    /// Body.
    pub run: TestFn,
}

macro_rules! test {
    ($id:literal, $section:literal, $required:expr, $f:ident) => {
        Test {
            id: $id,
            section: $section,
            required: $required,
            run: |e| Box::pin($f(e)),
        }
    };
}

mod follower;
mod generic;
mod hub;
mod security;

pub use follower::follower_tests;
pub use hub::{bad_bodies, hub_tests};
pub use security::security_tests;

/// The options of `mimi-conformance run`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The target's federation address.
    pub target: SocketAddr,
    /// The target's provider domain.
    pub target_domain: String,
    /// Our provider domain (our certificate's SAN).
    pub our_domain: String,
    /// Our certificate, key and the CA bundle we trust for the target.
    pub cert: PathBuf,
    /// Key.
    pub key: PathBuf,
    /// CA bundle.
    pub ca: PathBuf,
    /// Where our side listens (QUIC and HTTPS): the address the target knows for our domain.
    pub listen: SocketAddr,
    /// The target's test hook (its client API).
    pub hook: SocketAddr,
    /// A token that may register users on the hook when its registration is closed (the
    /// target's admin token).
    pub hook_token: Option<String>,
    /// `h3` or `https`.
    pub transport: String,
    /// Only tests whose ID starts with this.
    pub only: Option<String>,
}

/// Everything the tests share.
pub struct Env {
    o: Options,
    raw: Raw,
    ca_pem: String,
    dir: PathBuf,
    our: Option<ReferenceGateway>,
    our_api: SocketAddr,
    run: u32,
    prefix: String,
    room: String,
    admin: Option<Session>,
    bob: Option<Session>,
    eve: Option<Session>,
    tom: Option<Session>,
}

fn s<T>(r: Result<T, impl std::fmt::Display>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn expect(cond: bool, why: impl Into<String>) -> Res {
    if cond { Ok(()) } else { Err(why.into()) }
}

fn not_5xx(g: &Got, what: &str) -> Res {
    expect(
        (400..500).contains(&g.status),
        format!("{what}: expected a 4xx, got {} {}", g.status, g.text()),
    )
}

impl Env {
    /// Starts our side (a reference gateway for `our_domain`, peered with the target).
    ///
    /// # Errors
    /// Unreadable certificates or an address in use.
    pub async fn new(o: Options) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("mimi-conformance-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let ca_pem = std::fs::read_to_string(&o.ca)?;
        let cert = Pem {
            cert: std::fs::read_to_string(&o.cert)?,
            key: std::fs::read_to_string(&o.key)?,
        };
        let raw = Raw::new(Some(cert), &ca_pem, &o.target_domain);
        let our_api = SocketAddr::from(([127, 0, 0, 1], mimi_tools::local::free_port()?));
        let mut env = Self {
            o,
            raw,
            ca_pem,
            dir,
            our: None,
            our_api,
            run: rand::random::<u32>() % 1_000_000,
            prefix: "/v1".into(),
            room: String::new(),
            admin: None,
            bob: None,
            eve: None,
            tom: None,
        };
        env.start_ours().await?;
        Ok(env)
    }

    fn our_config(&self) -> String {
        let abs = |p: &Path| {
            std::fs::canonicalize(p)
                .unwrap_or_else(|_| p.to_owned())
                .display()
                .to_string()
        };
        let transport = if self.o.transport == "https" {
            "https"
        } else {
            "h3"
        };
        format!(
            "domain = \"{d}\"\n[listen]\nquic = \"{l}\"\nhttps = \"{l}\"\nadmin = \"127.0.0.1:0\"\nclient_api = \"{api}\"\n[tls]\ncert = \"{c}\"\nkey = \"{k}\"\nca = \"{ca}\"\n[storage]\npath = \"{db}\"\n[log]\nlevel = \"error\"\n[[peers]]\ndomain = \"{t}\"\nquic = \"{ta}\"\nhttps = \"{ta}\"\ntransport = \"{transport}\"\n",
            d = self.o.our_domain,
            l = self.o.listen,
            api = self.our_api,
            c = abs(&self.o.cert),
            k = abs(&self.o.key),
            ca = abs(&self.o.ca),
            db = self.dir.join("ours.redb").display(),
            t = self.o.target_domain,
            ta = self.o.target,
        )
    }

    async fn start_ours(&mut self) -> anyhow::Result<()> {
        let path = self.dir.join("ours.toml");
        std::fs::write(&path, self.our_config())?;
        self.our = Some(ReferenceGateway::start(&path).await?);
        Ok(())
    }

    async fn stop_ours(&mut self) {
        if let Some(g) = self.our.take() {
            g.shutdown().await;
        }
    }

    /// Stops our side and removes its files.
    pub async fn close(mut self) {
        self.stop_ours().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn headers(&self) -> [(&'static str, String); 2] {
        [
            ("from", format!("mimi@{}", self.o.our_domain)),
            ("content-type", "application/octet-stream".into()),
        ]
    }

    async fn post(&self, endpoint: Endpoint, value: &str, body: Vec<u8>) -> Result<Got, String> {
        let h = self.headers();
        let hv: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.raw
            .send(
                &self.o.transport,
                self.o.target,
                "POST",
                &format!(
                    "{}/{}/{}",
                    self.prefix,
                    endpoint.name(),
                    encode_path_value(value)
                ),
                &hv,
                body,
            )
            .await
            .map_err(|e| e.to_string())
    }

    fn user(&self, domain: &str, name: &str) -> String {
        format!("mimi://{domain}/u/{name}{}", self.run)
    }

    async fn session(
        &self,
        ours: bool,
        name: &str,
        device: &str,
        kps: usize,
    ) -> Result<Session, String> {
        let (api, domain, token) = if ours {
            (self.our_api, self.o.our_domain.as_str(), None)
        } else {
            (
                self.o.hook,
                self.o.target_domain.as_str(),
                self.o.hook_token.as_deref(),
            )
        };
        let name = format!("{name}{}", self.run);
        s(Session::register_with(api, token, domain, &name, device, kps).await)
    }
}

fn take<T>(o: &mut Option<T>, what: &str) -> Result<T, String> {
    o.take()
        .ok_or_else(|| format!("{what} is missing (an earlier test failed)"))
}

async fn wait_message(
    sess: &mut Session,
    what: &str,
    pred: impl Fn(&mimi_content::Message) -> bool,
) -> Result<Vec<mimi_content::MessageId>, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ids = Vec::new();
    while Instant::now() < deadline {
        for e in s(sess.sync(2).await)? {
            if let Event::Message { message, id, .. } = e {
                if pred(&message) {
                    return Ok(vec![id]);
                }
                ids.push(id);
            }
        }
    }
    Err(format!("{what} never arrived"))
}

async fn wait_event(sess: &mut Session, what: &str, pred: impl Fn(&Event) -> bool) -> Res {
    let evs = s(sess.sync_until(20, &pred).await)?;
    expect(evs.iter().any(pred), format!("{what} never arrived"))
}

fn text_of(m: &mimi_content::Message) -> String {
    mimi_content::render::part_text(&m.content().nested_part)
}

/// Runs `tests` in order with a progress bar on standard error.
pub async fn run(env: &mut Env, tests: Vec<Test>) -> Vec<Outcome> {
    let tests: Vec<Test> = tests
        .into_iter()
        .filter(|t| {
            env.o
                .only
                .as_deref()
                .is_none_or(|o| t.id.starts_with(o) || t.id.ends_with("setup"))
        })
        .collect();
    let n = tests.len();
    let tty = std::io::stderr().is_terminal();
    let mut out = Vec::new();
    for (i, t) in tests.into_iter().enumerate() {
        let bar = format!(
            "[{}{}] {:>2}/{n} {}",
            "#".repeat(i * 20 / n.max(1)),
            " ".repeat(20 - i * 20 / n.max(1)),
            i + 1,
            t.id
        );
        if tty {
            eprint!("\r\x1b[2K{bar}");
        } else {
            eprintln!("{bar}");
        }
        let _ = std::io::stderr().flush();
        let start = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(120), (t.run)(env))
            .await
            .unwrap_or_else(|_| Err("timed out after 120 s".into()));
        let (status, reason) = match r {
            Ok(()) => (Status::Pass, String::new()),
            Err(e) => (Status::Fail, e),
        };
        out.push(Outcome {
            id: t.id,
            section: t.section,
            required: t.required,
            status,
            reason,
            time: start.elapsed(),
        });
    }
    if tty {
        eprintln!("\r\x1b[2K[{}] {n}/{n} done", "#".repeat(20));
    }
    out
}
