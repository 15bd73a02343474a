//! Wake-ups of clients waiting for deliveries (long-polls, streams, the bridges).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Wake-ups for clients waiting on new deliveries, and the announcements the in-process
/// bridges follow (client IDs of bridged users, on a broadcast of bounded capacity: a bridge
/// that lags sweeps its users).
#[derive(Debug)]
pub struct Wakes {
    by_client: Mutex<HashMap<String, Arc<Notify>>>,
    bridges: tokio::sync::broadcast::Sender<String>,
}

/// Announcements held for a slow bridge before it lags.
const BRIDGE_ANNOUNCEMENTS: usize = 4096;

impl Default for Wakes {
    fn default() -> Self {
        Self {
            by_client: Mutex::default(),
            bridges: tokio::sync::broadcast::channel(BRIDGE_ANNOUNCEMENTS).0,
        }
    }
}

impl Wakes {
    /// The announcements of bridged clients' deliveries.
    pub fn bridges(&self) -> tokio::sync::broadcast::Sender<String> {
        self.bridges.clone()
    }

    /// The notifier of a client (created on first use).
    pub fn get(&self, client: &str) -> Arc<Notify> {
        let mut m = self
            .by_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(m.entry(client.to_owned()).or_default())
    }

    /// Wakes a client's readers.
    pub fn wake(&self, client: &str) {
        if client.contains("/bridge") && self.bridges.receiver_count() > 0 {
            let _ = self.bridges.send(client.to_owned());
        }
        if let Ok(m) = self.by_client.lock()
            && let Some(n) = m.get(client)
        {
            n.notify_waiters();
        }
    }
}

impl Wakes {
    /// Wakes every waiting client (after wake-ups from other nodes may have been missed).
    pub fn wake_all(&self) {
        let all: Vec<String> = self
            .by_client
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for c in all {
            self.wake(&c);
        }
    }
}
