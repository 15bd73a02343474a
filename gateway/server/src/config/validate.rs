//! Validation of a loaded configuration: every value that can be checked without starting,
//! each refusal naming the key and the fix.

use super::{Config, ConfigError, StorageBackend, invalid, is_domain};

impl Config {
    /// Checks every value that can be checked without starting.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_domain(&self.domain) {
            return Err(invalid(
                "domain",
                format!("{:?} is not a DNS name", self.domain),
            ));
        }
        if self.storage.backend == StorageBackend::Postgres && self.storage.url.is_none() {
            return Err(invalid(
                "storage.url",
                "backend = \"postgres\" needs url = \"postgres://user@host:port/database\"",
            ));
        }
        if self.storage.connections == 0 || self.storage.connections > 256 {
            return Err(invalid("storage.connections", "1 to 256"));
        }
        if self.cluster.failover_ms < 2000 {
            return Err(invalid("cluster.failover_ms", "at least 2000 ms"));
        }
        if !(1..=1024).contains(&self.cluster.slots) {
            return Err(invalid("cluster.slots", "1 to 1024"));
        }
        if let Some(n) = &self.cluster.node
            && (n.is_empty()
                || n.len() > 64
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        {
            return Err(invalid("cluster.node", "1 to 64 of [A-Za-z0-9._-]"));
        }
        if self.tls.ca.is_none() && !self.tls.webpki {
            return Err(invalid(
                "tls.ca",
                "set tls.ca (a federation CA bundle), tls.webpki = true (public certificates), or both",
            ));
        }
        for (key, p) in [
            ("tls.cert", Some(&self.tls.cert)),
            ("tls.key", Some(&self.tls.key)),
            ("tls.ca", self.tls.ca.as_ref()),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.map(|p| (k, p)))
        {
            if !p.is_file() {
                return Err(invalid(
                    key,
                    format!(
                        "{} does not exist; `mimi init` generates a development PKI",
                        p.display()
                    ),
                ));
            }
        }
        let l = &self.limits;
        for (key, v) in [
            ("limits.max_body_bytes", l.max_body_bytes as u64),
            (
                "limits.notify_max_body_bytes",
                l.notify_max_body_bytes as u64,
            ),
            (
                "limits.max_concurrent_requests_per_peer",
                l.max_concurrent_requests_per_peer as u64,
            ),
            ("limits.max_asset_bytes", l.max_asset_bytes as u64),
            ("limits.asset_quota_bytes", l.asset_quota_bytes),
            ("limits.delivery_queue_entries", l.delivery_queue_entries),
            ("limits.delivery_queue_bytes", l.delivery_queue_bytes),
            (
                "limits.outbox_bytes_per_follower",
                l.outbox_bytes_per_follower,
            ),
            (
                "limits.federation_connections",
                l.federation_connections as u64,
            ),
            (
                "limits.federation_connections_per_address",
                l.federation_connections_per_address as u64,
            ),
            ("limits.local_connections", l.local_connections as u64),
            (
                "limits.local_connections_per_address",
                l.local_connections_per_address as u64,
            ),
            ("limits.header_timeout_ms", l.header_timeout_ms),
            ("limits.handshake_timeout_ms", l.handshake_timeout_ms),
            ("limits.streams_per_client", l.streams_per_client as u64),
            ("limits.room_cache_entries", l.room_cache_entries as u64),
            (
                "limits.notify_parallel_per_follower",
                l.notify_parallel_per_follower as u64,
            ),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if l.max_streams_per_connection == 0 || l.idle_timeout_ms == 0 || l.request_timeout_ms == 0
        {
            return Err(invalid(
                "limits",
                "max_streams_per_connection, idle_timeout_ms and request_timeout_ms must be greater than 0",
            ));
        }
        if l.rate_per_second <= 0.0 || l.rate_burst < 1.0 {
            return Err(invalid(
                "limits.rate_per_second",
                "rate_per_second must be > 0 and rate_burst >= 1",
            ));
        }
        if !matches!(self.federation.consent.as_str(), "open" | "required") {
            return Err(invalid(
                "federation.consent",
                "must be \"open\" or \"required\"",
            ));
        }
        if !self.federation.path_prefix.is_empty() && !self.federation.path_prefix.starts_with('/')
        {
            return Err(invalid(
                "federation.path_prefix",
                "must start with / (or be empty)",
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid("log.format", "must be \"text\" or \"json\""));
        }
        if self.client_api.open_registration && !self.listen.client_api.ip().is_loopback() {
            return Err(invalid(
                "client_api.open_registration",
                format!(
                    "anyone could create users: the client API listens on {}, which is not a loopback address; set open_registration = false and register with the admin token or provider tokens",
                    self.listen.client_api
                ),
            ));
        }
        if self
            .client_api
            .admin_token
            .as_deref()
            .is_some_and(|t| t.len() < 16)
        {
            return Err(invalid(
                "client_api.admin_token",
                "must be at least 16 characters (it registers any client)",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in self.peers.iter().enumerate() {
            let key = format!("peers[{i}]");
            if !is_domain(&p.domain) {
                return Err(invalid(
                    format!("{key}.domain"),
                    format!("{:?} is not a DNS name", p.domain),
                ));
            }
            if p.domain == self.domain {
                return Err(invalid(
                    format!("{key}.domain"),
                    "a gateway cannot list itself as a peer",
                ));
            }
            if !seen.insert(p.domain.clone()) {
                return Err(invalid(
                    format!("{key}.domain"),
                    format!("{} is listed twice", p.domain),
                ));
            }
            if !matches!(p.transport.as_str(), "auto" | "h3" | "https") {
                return Err(invalid(
                    format!("{key}.transport"),
                    "must be \"auto\", \"h3\" or \"https\"",
                ));
            }
            if p.transport == "h3" && p.quic.is_none() {
                return Err(invalid(
                    format!("{key}.quic"),
                    "transport \"h3\" needs a quic address",
                ));
            }
            if let Some(ca) = &p.ca
                && !ca.is_file()
            {
                return Err(invalid(
                    format!("{key}.ca"),
                    format!("{} does not exist", ca.display()),
                ));
            }
        }
        Ok(())
    }
}
