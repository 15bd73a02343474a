//! What the bridges (`mimi-bridges`) get from the gateway: their records in the store's
//! [`Table::Bridge`], and the gateway's asset storage and peer links; and starting them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context as _;
use mimi_engine::store::{Store, Table};
use tokio::sync::watch;

use crate::client_api::fetch_asset;
use crate::config::Config;
use crate::peers::PeerClient;
use crate::store::RedbStore;
use crate::store::assets::AssetStore;

/// The store's bridge table.
#[derive(Debug)]
pub struct StoreForBridges(pub Arc<RedbStore>);

impl mimi_bridges::BridgeStore for StoreForBridges {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.0
            .get(Table::Bridge, key.as_bytes())
            .map_err(|e| e.to_string())
    }

    fn put(&self, records: &[(String, Vec<u8>)]) -> Result<(), String> {
        self.0
            .transact(&mut |t| {
                for (k, v) in records {
                    t.put(Table::Bridge, k.as_bytes(), v)?;
                }
                Ok(())
            })
            .map_err(|e| e.to_string())
    }
}

/// Assets: this provider's own from the asset store, peers' over the federation links.
#[derive(Debug)]
pub struct AssetsForBridges {
    /// The asset store.
    pub assets: AssetStore,
    /// Links to peers.
    pub peers: Arc<PeerClient>,
    /// This provider's asset URL base.
    pub base: String,
}

impl mimi_bridges::Assets for AssetsForBridges {
    fn fetch(
        &self,
        url: &str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + '_>> {
        let url = url.to_owned();
        Box::pin(async move {
            fetch_asset(&self.assets, &self.peers, &self.base, &url)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn store(
        &self,
        bytes: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>> {
        let assets = self.assets.clone();
        let base = self.base.clone();
        Box::pin(async move {
            let id = tokio::task::spawn_blocking(move || assets.put("bridge", &bytes))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            Ok(format!("{base}/{id}"))
        })
    }
}

/// Starts the configured bridges; they run until `stop`.
///
/// # Errors
/// A bridge cannot reach its server or the client API.
pub async fn start_bridges(
    cfg: &Config,
    client_api: SocketAddr,
    store: Arc<RedbStore>,
    assets: AssetStore,
    peers: Arc<PeerClient>,
    asset_base: String,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<Box<dyn std::any::Any + Send + Sync>>> {
    let mut bridges: Vec<Box<dyn std::any::Any + Send + Sync>> = Vec::new();
    if cfg.bridge.matrix.is_none() && cfg.bridge.xmpp.is_none() {
        return Ok(bridges);
    }
    let bridge_store: Arc<dyn mimi_bridges::BridgeStore> = Arc::new(StoreForBridges(store));
    let assets: Arc<dyn mimi_bridges::Assets> = Arc::new(AssetsForBridges {
        assets,
        peers,
        base: asset_base,
    });
    if let Some(m) = cfg.bridge.matrix.clone() {
        let (core, rx) = mimi_bridges::Core::new(
            mimi_adapters::Provider::Matrix,
            &cfg.domain,
            client_api,
            Arc::clone(&bridge_store),
            stop.clone(),
            Arc::clone(&assets),
        )?;
        bridges.push(Box::new(
            mimi_bridges::matrix::MatrixBridge::start(m, core, rx, stop.clone())
                .await
                .context("starting the Matrix bridge")?,
        ));
    }
    if let Some(x) = cfg.bridge.xmpp.clone() {
        let (core, rx) = mimi_bridges::Core::new(
            mimi_adapters::Provider::Xmpp,
            &cfg.domain,
            client_api,
            Arc::clone(&bridge_store),
            stop.clone(),
            Arc::clone(&assets),
        )?;
        bridges.push(Box::new(
            mimi_bridges::xmpp::XmppBridge::start(x, core, rx, stop)
                .await
                .context("starting the XMPP bridge")?,
        ));
    }
    Ok(bridges)
}
