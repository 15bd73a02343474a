//! Several gateways in one process on loopback, with a generated development PKI: the demo,
//! the benchmarks and tests that do not need separate processes use it.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use anyhow::Context;

use mimi_gateway::config::Config;
use mimi_gateway::gateway::Gateway;
use mimi_gateway::pki;

/// A port free for both TCP and UDP on 127.0.0.1, chosen below the kernel's ephemeral range
/// (32768 and up on Linux) so that outgoing connections never take it before it is bound.
///
/// # Errors
/// When no port is found.
pub fn free_port() -> anyhow::Result<u16> {
    for _ in 0..1000 {
        let p = 10_000 + rand::random::<u16>() % 22_000;
        if TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], p))).is_ok()
            && UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], p))).is_ok()
        {
            return Ok(p);
        }
    }
    anyhow::bail!("no free loopback port")
}

/// Gateways of a development federation running in this process.
#[derive(Debug)]
pub struct LocalFederation {
    /// Where the PKI, configs and databases live.
    pub dir: PathBuf,
    /// The gateways, in the order of the domains given.
    pub gateways: Vec<Gateway>,
}

impl LocalFederation {
    /// Writes a development federation for `domains` into `dir` (free loopback ports) and
    /// starts every gateway; `tweak` adjusts each configuration first.
    ///
    /// # Errors
    /// PKI, configuration or start-up failures.
    pub async fn start(
        domains: &[&str],
        dir: &Path,
        tweak: impl Fn(&mut Config),
    ) -> anyhow::Result<Self> {
        let domains: Vec<String> = domains.iter().map(|d| (*d).to_owned()).collect();
        // Placeholder ports in the files; every gateway binds port 0 and the real addresses
        // are given to the others once all are up (no race for free ports).
        let ports: Vec<(u16, u16, u16)> =
            (0..domains.len()).map(|i| (1 + i as u16, 1, 1)).collect();
        let configs = pki::init_with_ports(&domains, dir, &ports)
            .with_context(|| format!("cannot write a federation into {}", dir.display()))?;
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut gateways = Vec::new();
        for path in configs {
            let mut cfg = Config::load(&path)?;
            cfg.listen.quic = Some(any);
            cfg.listen.https = any;
            cfg.listen.admin = any;
            cfg.listen.client_api = any;
            tweak(&mut cfg);
            gateways.push(Gateway::start(cfg).await?);
        }
        for g in &gateways {
            for other in gateways.iter().filter(|o| o.domain != g.domain) {
                g.set_peer_address(&other.domain, other.addrs.quic, other.addrs.https)
                    .await;
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            gateways,
        })
    }

    /// The gateway of `domain`.
    ///
    /// # Panics
    /// For a domain that is not part of the federation (a programming error).
    pub fn get(&self, domain: &str) -> &Gateway {
        self.gateways
            .iter()
            .find(|g| g.domain == domain)
            .unwrap_or_else(|| panic!("{domain} is not in this federation"))
    }

    /// Stops every gateway gracefully.
    pub async fn shutdown(self) {
        for g in self.gateways {
            g.shutdown().await;
        }
    }
}
