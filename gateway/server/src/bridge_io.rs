//! What the bridges (`mimi-bridges`) get from the gateway: their rows in the store's
//! [`Table::Bridge`], the gateway's asset storage and peer links, the announcements of their
//! users' deliveries; and starting them.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use mimi_bridges::{AssetError, AssetFuture, BridgeStore, Change, Host, StoreError};
use mimi_engine::store::{Store, Table};
use tokio::sync::watch;

use crate::client_api::fetch_asset;
use crate::config::Config;
use crate::peers::PeerClient;
use crate::store::assets::AssetStore;

/// The store's bridge table.
#[derive(Debug)]
pub struct StoreForBridges(pub Arc<dyn Store>);

fn e(x: impl std::fmt::Display) -> StoreError {
    StoreError(x.to_string())
}

impl BridgeStore for StoreForBridges {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(Table::Bridge, key).map_err(e)
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<mimi_bridges::Row>, StoreError> {
        self.0.scan(Table::Bridge, prefix, after, limit).map_err(e)
    }

    fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
        self.0
            .transact(&mut |t| {
                for (k, v) in changes {
                    match v {
                        Some(v) => t.put(Table::Bridge, k, v)?,
                        None => t.delete(Table::Bridge, k)?,
                    }
                }
                Ok(())
            })
            .map_err(e)
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
    fn fetch(&self, url: &str) -> AssetFuture<'_, Vec<u8>> {
        let url = url.to_owned();
        Box::pin(async move {
            fetch_asset(&self.assets, &self.peers, &self.base, &url)
                .await
                .map_err(|x| AssetError(x.to_string()))
        })
    }

    fn store(&self, bytes: Vec<u8>) -> AssetFuture<'_, String> {
        let assets = self.assets.clone();
        let base = self.base.clone();
        Box::pin(async move {
            let id = tokio::task::spawn_blocking(move || assets.put("bridge", &bytes))
                .await
                .map_err(|x| AssetError(x.to_string()))?
                .map_err(|x| AssetError(x.to_string()))?;
            Ok(format!("{base}/{id}"))
        })
    }
}

/// What the bridges need from the running gateway.
#[derive(Debug)]
pub struct BridgeContext {
    /// The client API (loopback).
    pub client_api: SocketAddr,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Assets.
    pub assets: AssetStore,
    /// Peer links.
    pub peers: Arc<PeerClient>,
    /// This provider's asset URL base.
    pub asset_base: String,
    /// Announcements of bridged clients' deliveries.
    pub wakes: tokio::sync::broadcast::Sender<String>,
    /// Ends the bridges.
    pub stop: watch::Receiver<bool>,
}

/// Starts the configured bridges; they run until `stop`.
///
/// # Errors
/// A bridge cannot reach its server or bind its listener.
pub async fn start_bridges(
    cfg: &Config,
    cx: BridgeContext,
) -> anyhow::Result<Vec<Box<dyn std::any::Any + Send + Sync>>> {
    let mut bridges: Vec<Box<dyn std::any::Any + Send + Sync>> = Vec::new();
    if cfg.bridge.matrix.is_none() && cfg.bridge.xmpp.is_none() {
        return Ok(bridges);
    }
    let host = Host {
        domain: cfg.domain.clone(),
        api: cx.client_api,
        admin_token: cfg.client_api.admin_token.clone(),
        store: Arc::new(StoreForBridges(cx.store)),
        assets: Arc::new(AssetsForBridges {
            assets: cx.assets,
            peers: cx.peers,
            base: cx.asset_base,
        }),
        wakes: cx.wakes,
        data_dir: cfg.storage_path().parent().map_or_else(
            || std::path::PathBuf::from("."),
            std::path::Path::to_path_buf,
        ),
        stop: cx.stop,
    };
    if let Some(m) = cfg.bridge.matrix.clone() {
        bridges.push(Box::new(
            mimi_bridges::matrix::MatrixBridge::start(m, host.clone())
                .await
                .context("starting the Matrix bridge")?,
        ));
    }
    if let Some(x) = cfg.bridge.xmpp.clone() {
        bridges.push(Box::new(
            mimi_bridges::xmpp::XmppBridge::start(x, host)
                .await
                .context("starting the XMPP bridge")?,
        ));
    }
    Ok(bridges)
}
