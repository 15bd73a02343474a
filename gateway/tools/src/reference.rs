//! A reference gateway: this project's gateway playing "our side" for the conformance suite
//! and other black-box tests, started from a configuration file, plus the development PKI
//! they use to mint certificates (including rogue ones).

use std::path::Path;

use mimi_gateway::config::Config;
use mimi_gateway::gateway::Gateway;

pub use mimi_gateway::pki::{Ca, Pem as IssuedPem, issue, new_ca};

/// A running reference gateway.
#[derive(Debug)]
pub struct ReferenceGateway(Gateway);

impl ReferenceGateway {
    /// Starts a gateway from a TOML configuration file (docs/config.md).
    ///
    /// # Errors
    /// An invalid configuration, unreadable certificates or an address in use.
    pub async fn start(config: &Path) -> anyhow::Result<Self> {
        Ok(Self(Gateway::start(Config::load(config)?).await?))
    }

    /// Its domain.
    pub fn domain(&self) -> &str {
        &self.0.domain
    }

    /// Graceful shutdown.
    pub async fn shutdown(self) {
        self.0.shutdown().await;
    }
}
