//! Starting and stopping a whole gateway: storage, the engine shards and their committer, the
//! HTTP/3 and HTTPS federation listeners, the client API, the admin listener and the bridges.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mimi_engine::store::{QueueCap, Store, Table};
use mimi_engine::{ConsentPolicy, EngineConfig, Limits, Refusal, Registration, Response, Shared};
use mimi_listen::{ConnectionCaps, Listener};
use mimi_proto::uri::Domain;
use openmls::prelude::Ciphersuite;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls_basic_credential::SignatureKeyPair;
use rand::RngCore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::Ready;
use crate::client_api::{ClientApi, FetchError, fetch_asset};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::config::StorageBackend;
use crate::driver::{self, EngineHandle, FetchFuture, Slots};
use crate::federation::Federation;
use crate::limits::Admission;
use crate::metrics::Metrics;
use crate::peers::PeerClient;
use crate::serving::{Inflight, Serving};
use crate::store::RedbStore;
use crate::store::assets::{self, AssetStore};
use crate::store::pg::PgStore;

/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);
/// How often expired assets are collected.
const ASSET_GC: Duration = Duration::from_secs(3600);

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
    /// Its store.
    pub store: Arc<dyn Store>,
    /// Its cluster membership (PostgreSQL storage).
    pub cluster: Option<Arc<Cluster>>,
    stop: watch::Sender<bool>,
    quic: Option<quinn::Endpoint>,
    tasks: Vec<JoinHandle<()>>,
    slots: Arc<Slots>,
    inflight: Arc<Inflight>,
    ready: Arc<Ready>,
    peers: Arc<PeerClient>,
    _bridges: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

fn hub_signer(store: &dyn Store) -> anyhow::Result<SignatureKeyPair> {
    let fresh = SignatureKeyPair::new(
        Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.signature_algorithm(),
    )
    .map_err(|e| anyhow::anyhow!("cannot generate the hub key: {e:?}"))?
    .tls_serialize_detached()
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    // The first node of a cluster to start decides; the others read its key.
    let b = store.get_or_put(Table::Meta, b"hub_signer", &fresh)?;
    SignatureKeyPair::tls_deserialize_exact(b.as_slice())
        .map_err(|e| anyhow::anyhow!("the stored hub key is unreadable: {e}"))
}

fn franking_key(store: &dyn Store) -> anyhow::Result<Vec<u8>> {
    let mut k = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut k);
    Ok(store.get_or_put(Table::Meta, b"franking_key", &k)?)
}

/// Opens the configured store.
async fn open_store(cfg: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let path = cfg.storage_path();
    Ok(match cfg.storage.backend {
        StorageBackend::Redb => {
            Arc::new(tokio::task::spawn_blocking(move || RedbStore::open(&path)).await??)
        }
        StorageBackend::Postgres => {
            let url = cfg.storage.url.clone().unwrap_or_default();
            let n = cfg.storage.connections;
            Arc::new(
                tokio::task::spawn_blocking(move || PgStore::open(&url, n))
                    .await?
                    .map_err(|e| anyhow::anyhow!("PostgreSQL: {e}"))?,
            )
        }
    })
}

/// The slots of a cluster, fixed by its first node.
fn cluster_slots(cfg: &Config, store: &dyn Store) -> anyhow::Result<u16> {
    let want = cfg.cluster.slots;
    let b = store.get_or_put(Table::Meta, b"cluster_slots", &want.to_be_bytes())?;
    let have = <[u8; 2]>::try_from(b.as_slice())
        .map(u16::from_be_bytes)
        .map_err(|_| anyhow::anyhow!("the stored cluster_slots is unreadable"))?;
    if have != want {
        anyhow::bail!(
            "cluster.slots is {want} but this database was set up with {have} slots; set cluster.slots = {have}"
        );
    }
    Ok(have)
}

/// What the other nodes of a cluster are told about this one.
fn cluster_settings(
    cfg: &Config,
    https: SocketAddr,
    quic: Option<SocketAddr>,
) -> anyhow::Result<crate::cluster::Settings> {
    let https = cfg.cluster.advertise_https.unwrap_or(https);
    if https.ip().is_unspecified() {
        anyhow::bail!(
            "cluster.advertise_https: the HTTPS listener is on a wildcard address ({https}); say where the other nodes reach this one"
        );
    }
    let quic = cfg
        .cluster
        .advertise_quic
        .or_else(|| quic.filter(|q| !q.ip().is_unspecified()));
    let node = match &cfg.cluster.node {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!("cluster.node: no host name to default to; name this node")
            })?,
    };
    Ok(crate::cluster::Settings {
        url: cfg.storage.url.clone().unwrap_or_default(),
        node,
        slots: cfg.cluster.slots,
        failover: Duration::from_millis(cfg.cluster.failover_ms),
        https,
        quic,
    })
}

/// The engine's configuration from the gateway's.
fn engine_config(
    cfg: &Config,
    domain: Domain,
    store: &dyn Store,
    slots: u16,
) -> anyhow::Result<EngineConfig> {
    let l = &cfg.limits;
    let mut asset_domains: BTreeMap<String, BTreeSet<String>> = cfg
        .peers
        .iter()
        .map(|p| (p.domain.clone(), p.asset_domains.iter().cloned().collect()))
        .collect();
    asset_domains
        .entry(cfg.domain.clone())
        .or_default()
        .insert(cfg.domain.clone());
    Ok(EngineConfig {
        domain,
        hub_signer: hub_signer(store)?,
        franking_key: franking_key(store)?,
        consent: if cfg.federation.consent == "required" {
            ConsentPolicy::Required
        } else {
            ConsentPolicy::Open
        },
        asset_domains,
        registration: if cfg.client_api.open_registration {
            Registration::OpenNewUsers
        } else {
            Registration::Closed
        },
        partial_name_search: cfg.federation.partial_name_search,
        limits: Limits {
            delivery_queue: QueueCap {
                count: l.delivery_queue_entries,
                bytes: l.delivery_queue_bytes,
            },
            outbox_bytes_per_follower: l.outbox_bytes_per_follower,
            notify_batch_bytes: (l.notify_max_body_bytes / 2).clamp(64 << 10, 4 << 20),
            notify_parallel_per_follower: l.notify_parallel_per_follower,
            // The bound is per node: spread over the slots that may all run here.
            room_cache_entries: (l.room_cache_entries * usize::from(shard_count(cfg))
                / usize::from(slots.max(1)))
            .max(64),
            claims_per_peer_per_minute: l.claims_per_peer_per_minute,
            claims_per_user_per_minute: l.claims_per_user_per_minute,
            ..Limits::default()
        },
    })
}

/// How many engine shards to run.
fn shard_count(cfg: &Config) -> u16 {
    if cfg.limits.engine_shards > 0 {
        return cfg.limits.engine_shards;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get().min(64) as u16)
}

impl Gateway {
    /// Starts a gateway; returns once every listener is bound and the engine is ready.
    ///
    /// # Errors
    /// Unreadable certificates, a certificate that does not name `cfg.domain`, storage that
    /// cannot be opened, addresses in use.
    pub async fn start(cfg: Config) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let domain = Domain::parse_lenient(&cfg.domain)
            .map_err(|e| anyhow::anyhow!("domain {:?}: {e}", cfg.domain))?;
        let credentials = crate::reload::Credentials::load(&cfg)?;
        let path = cfg.storage_path();
        let store = open_store(&cfg).await?;
        let slots = match cfg.storage.backend {
            StorageBackend::Redb => shard_count(&cfg),
            StorageBackend::Postgres => cluster_slots(&cfg, store.as_ref())?,
        };
        let engine_cfg = Arc::new(engine_config(&cfg, domain.clone(), store.as_ref(), slots)?);
        let shared = Arc::new(Shared::default());
        let shared_state = Arc::clone(&shared);
        let metrics = Arc::new(Metrics::default());
        let peer_client = Arc::new(PeerClient::new(
            &cfg,
            Arc::clone(&credentials),
            Arc::clone(&metrics),
        )?);
        let https = crate::https_server::bind(cfg.listen.https).await?;
        let https_addr = https.local_addr()?;
        let public = format!("https://{}:{}", cfg.domain, https_addr.port());
        let asset_base = format!("{public}/assets");
        let assets = AssetStore::new(
            assets::dir_of(&path),
            Arc::clone(&store),
            cfg.limits.max_asset_bytes as u64,
            cfg.limits.asset_quota_bytes,
            cfg.limits.asset_retention_days * 86_400_000,
        );
        let fetch = {
            let (assets, peers, base) =
                (assets.clone(), Arc::clone(&peer_client), asset_base.clone());
            Arc::new(move |peer: Domain, url: String| -> FetchFuture {
                let (assets, peers, base) = (assets.clone(), Arc::clone(&peers), base.clone());
                Box::pin(async move {
                    match fetch_asset(&assets, &peers, &base, &url).await {
                        Ok(b) => Response {
                            status: 200,
                            body: mimi_engine::Body::Asset(b.into()),
                            retry_after_s: None,
                        },
                        Err(FetchError::NotFound) => {
                            Response::refused(Refusal::NotFound("no such asset".into()))
                        }
                        Err(FetchError::Refused(why)) => Response::refused(Refusal::Invalid(why)),
                        Err(e) => Response::refused(Refusal::PeerUnreachable {
                            peer,
                            reason: e.to_string(),
                        }),
                    }
                })
            })
        };
        let (engine, slot_set) = driver::spawn(driver::Parts {
            cfg: engine_cfg,
            slots,
            shared,
            store: Arc::clone(&store),
            peers: Arc::clone(&peer_client),
            metrics: Arc::clone(&metrics),
            fetch,
        });
        if cfg.storage.backend == StorageBackend::Redb {
            let s = Arc::clone(&slot_set);
            tokio::task::spawn_blocking(move || (0..slots).try_for_each(|i| s.start(i, None)))
                .await?
                .context("restoring the engine from the store")?;
        }
        let local_limits = mimi_listen::Limits {
            max_connections: cfg.limits.local_connections,
            max_per_address: cfg.limits.local_connections_per_address,
            header_timeout: Duration::from_millis(cfg.limits.header_timeout_ms),
            max_streams: cfg.limits.max_streams_per_connection,
        };
        let admin = Listener::bind(cfg.listen.admin, local_limits)
            .await
            .with_context(|| format!("cannot bind the admin listener on {}", cfg.listen.admin))?;
        let client = Listener::bind(cfg.listen.client_api, local_limits)
            .await
            .with_context(|| format!("cannot bind the client API on {}", cfg.listen.client_api))?;
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
            assets.clone(),
        ));
        let (stop, stop_rx) = watch::channel(false);
        let inflight = Arc::new(Inflight::default());
        let serving = Serving {
            federation,
            credentials: Arc::clone(&credentials),
            metrics: Arc::clone(&metrics),
            inflight: Arc::clone(&inflight),
            shutdown: stop_rx.clone(),
            request_timeout: Duration::from_millis(cfg.limits.request_timeout_ms),
            max_streams: cfg.limits.max_streams_per_connection,
            idle_timeout: Duration::from_millis(cfg.limits.idle_timeout_ms),
            handshake_timeout: Duration::from_millis(cfg.limits.handshake_timeout_ms),
            connections: ConnectionCaps::new(
                cfg.limits.federation_connections,
                cfg.limits.federation_connections_per_address,
            ),
        };
        let mut tasks = Vec::new();
        let quic = match cfg.listen.quic {
            Some(addr) => {
                let ep = crate::h3_server::bind(addr, &serving)?;
                tasks.push(tokio::spawn(crate::h3_server::serve(
                    ep.clone(),
                    serving.clone(),
                )));
                Some(ep)
            }
            None => None,
        };
        let acceptor = crate::https_server::acceptor(&serving)?;
        tasks.push(tokio::spawn(crate::https_server::serve(
            https, acceptor, serving,
        )));
        let cluster = match cfg.storage.backend {
            StorageBackend::Redb => None,
            StorageBackend::Postgres => Some(
                Cluster::join(
                    cluster_settings(
                        &cfg,
                        https_addr,
                        quic.as_ref().and_then(|q| q.local_addr().ok()),
                    )?,
                    Arc::clone(&slot_set),
                    engine.clone(),
                    Arc::clone(&peer_client),
                    stop_rx.clone(),
                )
                .await?,
            ),
        };
        let ready = Arc::new(Ready::default());
        let addrs = Addrs {
            quic: quic.as_ref().map(quinn::Endpoint::local_addr).transpose()?,
            https: https_addr,
            admin: admin.local_addr()?,
            client_api: client.local_addr()?,
        };
        let admin_api = Arc::new(crate::admin::api::AdminApi {
            domain: cfg.domain.clone(),
            token: cfg.client_api.admin_token.clone(),
            store: Arc::clone(&store),
            engine: engine.clone(),
            shared: Arc::clone(&shared_state),
            peers: Arc::clone(&peer_client),
            health: Arc::clone(&engine.health),
            credentials: Arc::clone(&credentials),
            shards: slots,
            started: std::time::Instant::now(),
            cluster: cluster.clone(),
        });
        tasks.push(tokio::spawn(crate::admin::serve(
            admin,
            Arc::clone(&metrics),
            Arc::clone(&ready),
            Arc::clone(&engine.health),
            admin_api,
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::reload::watch(
            Arc::clone(&credentials),
            Arc::clone(&peer_client),
            stop_rx.clone(),
        )));
        let provider_tokens = cfg
            .client_api
            .provider_tokens
            .as_ref()
            .map(|p| crate::auth::ProviderTokens::load(p, &domain).map(Arc::new))
            .transpose()?;
        let api = Arc::new(ClientApi {
            domain: domain.clone(),
            engine: engine.clone(),
            store: Arc::clone(&store),
            assets: assets.clone(),
            admin_token: cfg.client_api.admin_token.clone(),
            provider_tokens,
            max_body: cfg.limits.max_body_bytes,
            asset_base: asset_base.clone(),
            peers: Arc::clone(&peer_client),
            streams_per_client: cfg.limits.streams_per_client,
            streams: Arc::default(),
        });
        tasks.push(tokio::spawn(api.serve(client, stop_rx.clone())));
        tasks.push(tokio::spawn(collect_assets(
            assets.clone(),
            stop_rx.clone(),
        )));
        let bridges = crate::bridge_io::start_bridges(
            &cfg,
            crate::bridge_io::BridgeContext {
                client_api: addrs.client_api,
                store: Arc::clone(&store),
                assets,
                peers: Arc::clone(&peer_client),
                asset_base,
                wakes: engine.wakes.bridges(),
                stop: stop_rx.clone(),
            },
        )
        .await?;
        ready.set(true);
        tracing::info!(domain = %cfg.domain, slots, quic = ?addrs.quic, https = %addrs.https, admin = %addrs.admin, client_api = %addrs.client_api, "gateway ready");
        Ok(Self {
            domain: cfg.domain,
            addrs,
            engine,
            metrics,
            store,
            cluster,
            stop,
            quic,
            tasks,
            slots: slot_set,
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

    /// Resolves when the engine failed for good (a shard died): the process should exit
    /// non-zero so that its supervisor restarts it.
    pub async fn failed(&self) {
        self.engine.health.fatal().await;
    }

    /// Graceful shutdown: stop accepting, let requests in flight finish (up to 10 s), close
    /// QUIC connections with H3_NO_ERROR, stop the engine after its last commit.
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
        if let Some(c) = &self.cluster {
            c.stopped().await;
        }
        self.engine.stop().await;
        let slots = self.slots;
        let _ = tokio::task::spawn_blocking(move || slots.join()).await;
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(12), t).await;
        }
        tracing::info!(domain = %self.domain, "gateway stopped");
    }
}

/// Collects expired assets now and then, off the engine's write path.
async fn collect_assets(assets: AssetStore, mut stop: watch::Receiver<bool>) {
    loop {
        let a = assets.clone();
        match tokio::task::spawn_blocking(move || a.collect(100_000)).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(removed = n, "expired assets collected"),
            Ok(Err(e)) => tracing::warn!(error = %e, "asset collection failed"),
            _ => {}
        }
        tokio::select! {
            () = tokio::time::sleep(ASSET_GC) => {}
            () = crate::serving::stopping(&mut stop) => return,
        }
    }
}
