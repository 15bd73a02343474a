//! What the bridges (`mimi-bridges`) get from the gateway: their records in the store and the
//! gateway's asset storage and peer links.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::peers::PeerClient;
use crate::store::Store;

/// The store's `bridge` table.
#[derive(Debug)]
pub struct StoreForBridges(pub Arc<Store>);

impl mimi_bridges::BridgeStore for StoreForBridges {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.0.bridge_get(key).map_err(|e| format!("{e:#}"))
    }

    fn put(&self, records: &[(String, Vec<u8>)]) -> Result<(), String> {
        self.0.bridge_put(records).map_err(|e| format!("{e:#}"))
    }
}

/// Assets: this provider's own from the store, peers' over the federation links.
#[derive(Debug)]
pub struct AssetsForBridges {
    /// The store.
    pub store: Arc<Store>,
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
            crate::client_api::fetch_asset(&self.store, &self.peers, &self.base, &url).await
        })
    }

    fn store(
        &self,
        bytes: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>> {
        Box::pin(
            async move { crate::client_api::store_asset(&self.store, &self.base, bytes).await },
        )
    }
}
