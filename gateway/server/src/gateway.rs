//! Starting and stopping a whole gateway: storage, the engine driver, the HTTP/3 and HTTPS
//! federation listeners, the client API and the admin listener.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use mimi_engine::{ConsentPolicy, Engine, EngineConfig, Limits};
use openmls::prelude::Ciphersuite;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls_basic_credential::SignatureKeyPair;
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::Ready;
use crate::client_api::ClientApi;
use crate::config::Config;
use crate::driver::{self, EngineHandle};
use crate::federation::Federation;
use crate::limits::Admission;
use crate::metrics::Metrics;
use crate::peers::PeerClient;
use crate::serving::{Inflight, Serving};
use crate::store::Store;
use crate::tls::{Identity, Trust};

/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// The bound addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addrs {
    /// HTTP/3 (UDP), if enabled.
    pub quic: Option<SocketAddr>,
    /// HTTPS (TCP).
    pub https: SocketAddr,
    /// Admin (TCP).
    pub admin: SocketAddr,
    /// Client API (TCP).
    pub client_api: SocketAddr,
}

impl std::fmt::Display for Addrs {
    /// The line `mimi run` prints once ready.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let quic = self
            .quic
            .map_or_else(|| "off".to_owned(), |a| a.to_string());
        write!(
            f,
            "listening quic={quic} https={} admin={}",
            self.https, self.admin
        )
    }
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    /// Its domain.
    pub domain: String,
    /// Where it listens.
    pub addrs: Addrs,
    /// Its engine (in-process callers: the demo, benchmarks).
    pub engine: EngineHandle,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    quic: Option<quinn::Endpoint>,
    tasks: Vec<JoinHandle<()>>,
    driver: JoinHandle<()>,
    inflight: Arc<Inflight>,
    ready: Arc<Ready>,
    peers: Arc<PeerClient>,
    _bridges: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

fn hub_signer(store: &Store) -> anyhow::Result<SignatureKeyPair> {
    if let Some(b) = store.meta("hub_signer")? {
        return SignatureKeyPair::tls_deserialize_exact(b.as_slice())
            .map_err(|e| anyhow::anyhow!("the stored hub key is unreadable: {e}"));
    }
    let s = SignatureKeyPair::new(
        Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.signature_algorithm(),
    )
    .map_err(|e| anyhow::anyhow!("cannot generate the hub key: {e:?}"))?;
    store.set_meta(
        "hub_signer",
        &s.tls_serialize_detached()
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    )?;
    Ok(s)
}

fn franking_key(store: &Store) -> anyhow::Result<Vec<u8>> {
    if let Some(k) = store.meta("franking_key")? {
        return Ok(k);
    }
    let mut k = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut k);
    store.set_meta("franking_key", &k)?;
    Ok(k)
}

impl Gateway {
    /// Starts a gateway; returns once every listener is bound and the engine is restored.
    ///
    /// # Errors
    /// Unreadable certificates, a certificate that does not name `cfg.domain`, storage that
    /// cannot be opened, addresses in use.
    pub async fn start(cfg: Config) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let identity = Arc::new(Identity::load(&cfg.tls.cert, &cfg.tls.key)?);
        if !identity
            .domains()
            .iter()
            .any(|d| d.eq_ignore_ascii_case(&cfg.domain))
        {
            bail!(
                "tls.cert names {:?}, not domain {:?}: the certificate's SAN dNSName is the provider identity",
                identity.domains(),
                cfg.domain
            );
        }
        let trust = Arc::new(Trust::from_config(&cfg)?);
        let path = cfg.storage_path();
        let store = Arc::new(tokio::task::spawn_blocking(move || Store::open(&path)).await??);
        let signer = hub_signer(&store)?;
        let franking_key = franking_key(&store)?;
        let asset_domains: BTreeSet<String> = cfg
            .peers
            .iter()
            .flat_map(|p| p.asset_domains.iter().cloned())
            .chain([cfg.domain.clone()])
            .collect();
        let engine_cfg = EngineConfig {
            domain: cfg.domain.clone(),
            hub_signer: signer,
            franking_key,
            consent: if cfg.federation.consent == "required" {
                ConsentPolicy::Required
            } else {
                ConsentPolicy::Open
            },
            asset_domains,
            open_registration: cfg.client_api.open_registration,
            limits: Limits {
                max_deliveries_per_client: cfg.limits.max_deliveries_per_client,
                max_outbox_per_follower: cfg.limits.max_outbox_per_follower,
                notify_batch_bytes: (cfg.limits.notify_max_body_bytes / 2).clamp(64 << 10, 4 << 20),
                ..Limits::default()
            },
        };
        let entries = {
            let s = Arc::clone(&store);
            tokio::task::spawn_blocking(move || s.load_engine()).await??
        };
        let (engine, broken) = Engine::restore(engine_cfg, entries);
        for b in &broken {
            tracing::error!(record = %b, "could not restore a stored record");
        }
        let metrics = Arc::new(Metrics::default());
        let peers = Arc::new(PeerClient::new(
            &cfg,
            Arc::clone(&identity),
            Arc::clone(&trust),
            Arc::clone(&metrics),
        )?);
        let (engine, driver) = driver::spawn(
            engine,
            Arc::clone(&store),
            Arc::clone(&peers),
            Arc::clone(&metrics),
        );
        let peer_client = peers;

        let https = crate::https_server::bind(cfg.listen.https).await?;
        let https_addr = https.local_addr()?;
        let admin = TcpListener::bind(cfg.listen.admin)
            .await
            .with_context(|| format!("cannot bind the admin listener on {}", cfg.listen.admin))?;
        let client = TcpListener::bind(cfg.listen.client_api)
            .await
            .with_context(|| format!("cannot bind the client API on {}", cfg.listen.client_api))?;
        let public = format!("https://{}:{}", cfg.domain, https_addr.port());
        let federation = Arc::new(Federation::new(
            &cfg.domain,
            &cfg.federation.path_prefix,
            &format!("{public}{}", cfg.federation.path_prefix),
            cfg.limits.max_body_bytes,
            cfg.limits.notify_max_body_bytes,
            engine.clone(),
            Admission::new(
                cfg.limits.rate_per_second,
                cfg.limits.rate_burst,
                cfg.limits.max_concurrent_requests_per_peer,
            ),
            Arc::clone(&metrics),
            Arc::clone(&store),
        ));
        let (stop, stop_rx) = watch::channel(false);
        let inflight = Arc::new(Inflight::default());
        let serving = Serving {
            federation,
            trust,
            metrics: Arc::clone(&metrics),
            inflight: Arc::clone(&inflight),
            shutdown: stop_rx.clone(),
            request_timeout: Duration::from_millis(cfg.limits.request_timeout_ms),
            max_streams: cfg.limits.max_streams_per_connection,
            idle_timeout: Duration::from_millis(cfg.limits.idle_timeout_ms),
        };
        let mut tasks = Vec::new();
        let quic = match cfg.listen.quic {
            Some(addr) => {
                let ep = crate::h3_server::bind(addr, &identity, &serving)?;
                tasks.push(tokio::spawn(crate::h3_server::serve(
                    ep.clone(),
                    serving.clone(),
                )));
                Some(ep)
            }
            None => None,
        };
        let acceptor = crate::https_server::acceptor(&identity, &serving)?;
        tasks.push(tokio::spawn(crate::https_server::serve(
            https, acceptor, serving,
        )));
        let ready = Arc::new(Ready::default());
        let addrs = Addrs {
            quic: quic.as_ref().map(quinn::Endpoint::local_addr).transpose()?,
            https: https_addr,
            admin: admin.local_addr()?,
            client_api: client.local_addr()?,
        };
        tasks.push(tokio::spawn(crate::admin::serve(
            admin,
            Arc::clone(&metrics),
            Arc::clone(&ready),
            stop_rx.clone(),
        )));
        let store_for_bridges = Arc::clone(&store);
        let api = Arc::new(ClientApi {
            engine: engine.clone(),
            store,
            open_registration: cfg.client_api.open_registration,
            admin_token: cfg.client_api.admin_token.clone(),
            max_body: cfg.limits.max_body_bytes,
            max_asset: cfg.limits.max_asset_bytes,
            asset_base: format!("{public}/assets"),
            peers: Arc::clone(&peer_client),
        });
        tasks.push(tokio::spawn(api.serve(client, stop_rx.clone())));
        let mut bridges: Vec<Box<dyn std::any::Any + Send + Sync>> = Vec::new();
        let bridge_store: Arc<dyn mimi_bridges::BridgeStore> = Arc::new(
            crate::bridge_io::StoreForBridges(Arc::clone(&store_for_bridges)),
        );
        let assets: Arc<dyn mimi_bridges::Assets> = Arc::new(crate::bridge_io::AssetsForBridges {
            store: Arc::clone(&store_for_bridges),
            peers: Arc::clone(&peer_client),
            base: format!("{public}/assets"),
        });
        if let Some(m) = cfg.bridge.matrix.clone() {
            let (core, rx) = mimi_bridges::Core::new(
                mimi_adapters::Provider::Matrix,
                &cfg.domain,
                addrs.client_api,
                Arc::clone(&bridge_store),
                stop_rx.clone(),
                Arc::clone(&assets),
            )?;
            bridges.push(Box::new(
                mimi_bridges::matrix::MatrixBridge::start(m, core, rx, stop_rx.clone())
                    .await
                    .context("starting the Matrix bridge")?,
            ));
        }
        if let Some(x) = cfg.bridge.xmpp.clone() {
            let (core, rx) = mimi_bridges::Core::new(
                mimi_adapters::Provider::Xmpp,
                &cfg.domain,
                addrs.client_api,
                Arc::clone(&bridge_store),
                stop_rx.clone(),
                Arc::clone(&assets),
            )?;
            bridges.push(Box::new(
                mimi_bridges::xmpp::XmppBridge::start(x, core, rx, stop_rx.clone())
                    .await
                    .context("starting the XMPP bridge")?,
            ));
        }
        ready.set(true);
        tracing::info!(domain = %cfg.domain, quic = ?addrs.quic, https = %addrs.https, admin = %addrs.admin, client_api = %addrs.client_api, "gateway ready");
        Ok(Self {
            domain: cfg.domain,
            addrs,
            engine,
            metrics,
            stop,
            quic,
            tasks,
            driver,
            inflight,
            ready,
            peers: peer_client,
            _bridges: bridges,
        })
    }

    /// Changes where this gateway reaches the peer `domain` (see [`PeerClient::set_address`]).
    pub async fn set_peer_address(
        &self,
        domain: &str,
        quic: Option<SocketAddr>,
        https: SocketAddr,
    ) {
        self.peers.set_address(domain, quic, https).await;
    }

    /// Graceful shutdown: stop accepting, let requests in flight finish (up to 10 s), close
    /// QUIC connections with H3_NO_ERROR, commit the engine's last writes.
    pub async fn shutdown(self) {
        self.ready.set(false);
        let _ = self.stop.send(true);
        let left = self.inflight.drained(DRAIN).await;
        if left > 0 {
            tracing::warn!(
                requests = left,
                "shutting down with requests still in flight"
            );
        }
        if let Some(ep) = &self.quic {
            ep.close(
                crate::h3_server::CLOSE_SHUTDOWN.into(),
                b"gateway shutting down",
            );
            let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
        }
        self.engine.stop().await;
        let _ = self.driver.await;
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(12), t).await;
        }
        tracing::info!(domain = %self.domain, "gateway stopped");
    }
}
