//! Helpers of the gateway's end-to-end tests: development federations on free loopback ports,
//! `mimi run` processes, and raw HTTP/3 and HTTPS clients that can present any certificate and
//! any headers (to test every refusal).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mimi_gateway::pki;

pub mod peers;

/// A port free for both TCP and UDP on 127.0.0.1: below the kernel's ephemeral range (no
/// outgoing connection takes it meanwhile) and in a block of this test process (nextest runs
/// tests in parallel processes), so parallel tests do not pick the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 10_000 + (std::process::id() % 1_000) as u16 * 22;
    loop {
        let p = base + NEXT.fetch_add(1, Ordering::Relaxed) % 22;
        if TcpListener::bind(("127.0.0.1", p)).is_ok() && UdpSocket::bind(("127.0.0.1", p)).is_ok()
        {
            return p;
        }
    }
}

/// A development federation in a temporary directory.
pub struct Fed {
    pub dir: PathBuf,
    pub domains: Vec<String>,
    pub ports: Vec<(u16, u16, u16)>,
}

impl Fed {
    pub fn new(name: &str, domains: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("mimi-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let domains: Vec<String> = domains.iter().map(|d| (*d).to_owned()).collect();
        let ports: Vec<(u16, u16, u16)> = domains
            .iter()
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        pki::init_with_ports(&domains, &dir, &ports).unwrap();
        Self {
            dir,
            domains,
            ports,
        }
    }

    pub fn config(&self, domain: &str) -> PathBuf {
        self.dir.join(domain).join("config.toml")
    }

    /// Appends TOML to a domain's config (e.g. a `[limits]` table).
    pub fn append(&self, domain: &str, toml: &str) {
        let p = self.config(domain);
        let mut s = std::fs::read_to_string(&p).unwrap();
        s.push_str(toml);
        std::fs::write(p, s).unwrap();
    }

    /// Replaces text in a domain's config.
    pub fn edit(&self, domain: &str, from: &str, to: &str) {
        let p = self.config(domain);
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.contains(from), "{from:?} not in {}", p.display());
        std::fs::write(p, s.replacen(from, to, 1)).unwrap();
    }

    pub fn start(&self, domain: &str) -> Proc {
        Proc::start(&self.config(domain), domain)
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.join("ca.pem")).unwrap()
    }

    pub fn ca(&self) -> pki::Ca {
        pki::load_ca(&self.dir).unwrap()
    }

    /// The certificate and key `mimi init` wrote for `domain`.
    pub fn identity(&self, domain: &str) -> Pem {
        Pem {
            cert: std::fs::read_to_string(self.dir.join(domain).join("cert.pem")).unwrap(),
            key: std::fs::read_to_string(self.dir.join(domain).join("key.pem")).unwrap(),
        }
    }

    pub fn fed_addr(&self, domain: &str) -> SocketAddr {
        let i = self.domains.iter().position(|d| d == domain).unwrap();
        SocketAddr::from(([127, 0, 0, 1], self.ports[i].0))
    }
}

impl Drop for Fed {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub use mimi_tools::raw::Pem;

/// A `mimi run` process.
pub struct Proc {
    child: Child,
    pub domain: String,
    pub quic: Option<SocketAddr>,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    pub client_api: SocketAddr,
    config: PathBuf,
}

fn addr_of(line: &str, key: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
}

impl Proc {
    pub fn start(config: &Path, domain: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mimi"))
            .args(["run", "--config"])
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var("MIMI_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        assert!(
            first.starts_with("listening quic="),
            "mimi run printed {first:?}"
        );
        let mut second = String::new();
        out.read_line(&mut second).unwrap();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in out.lines() {});
        Self {
            child,
            domain: domain.to_owned(),
            quic: addr_of(&first, "quic"),
            https: addr_of(&first, "https").unwrap(),
            admin: addr_of(&first, "admin").unwrap(),
            client_api: addr_of(&second, "client_api").unwrap(),
            config: config.to_owned(),
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..300 {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} did not stop within 15 s of SIGTERM", self.domain);
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the same gateway again.
    pub fn restart(&mut self) {
        self.stop();
        *self = Self::start(&self.config.clone(), &self.domain.clone());
    }

    /// Reads `/metrics` from the admin listener.
    pub async fn metrics(&self) -> String {
        let (s, body) = plain_get(self.admin, "/metrics").await;
        assert_eq!(s, 200);
        body
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sum of `mimi_requests_total` samples whose labels contain every `needle`.
pub fn count(metrics: &str, name: &str, needles: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A plain HTTP/1.1 GET (admin listener).
pub async fn plain_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = s.send_request(req).await.unwrap();
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[allow(unused_imports)] // not every test file uses both
pub use mimi_tools::raw::{Got, Raw};
