//! Mutual TLS for federation links (rustls with the ring provider, TLS 1.3): server and client
//! configurations, and the provider identity of a peer, which is the SAN dNSName of its
//! verified client certificate.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

use mimi_proto::uri::Domain;

use crate::config::Config;

/// The ring crypto provider (one place, so no second provider can sneak in).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Our certificate chain and key.
#[derive(Debug)]
pub struct Identity {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Loads PEM files.
    ///
    /// # Errors
    /// Unreadable or empty files.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("cannot read certificate {}", cert.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
        if chain.is_empty() {
            bail!("{} holds no certificate", cert.display());
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("cannot read private key {}", key.display()))?;
        Ok(Self { chain, key })
    }

    /// From PEM text (tests, the demo).
    ///
    /// # Errors
    /// Unparsable PEM.
    pub fn from_pem(cert: &str, key: &str) -> anyhow::Result<Self> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<_, _>>()
            .context("certificate PEM")?;
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).context("key PEM")?;
        Ok(Self { chain, key })
    }

    pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// The DNS names the leaf certificate is valid for.
    pub fn domains(&self) -> Vec<String> {
        self.chain.first().map(cert_domains).unwrap_or_default()
    }
}

/// Loads a PEM CA bundle.
///
/// # Errors
/// Unreadable file or no certificate in it.
pub fn load_roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read CA bundle {}", path.display()))?
    {
        roots
            .add(c.with_context(|| format!("{} is not a PEM bundle", path.display()))?)
            .with_context(|| format!("bad CA certificate in {}", path.display()))?;
    }
    if roots.is_empty() {
        bail!("{} holds no CA certificate", path.display());
    }
    Ok(roots)
}

/// A root store from PEM text.
///
/// # Errors
/// Unparsable PEM.
pub fn roots_from_pem(pem: &str) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(c?)?;
    }
    Ok(roots)
}

/// The SAN dNSNames of a certificate.
pub fn cert_domains(cert: &CertificateDer<'_>) -> Vec<String> {
    webpki::EndEntityCert::try_from(cert)
        .map(|c| c.valid_dns_names().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A TLS 1.3 server configuration that requires a client certificate chaining to `roots`.
///
/// # Errors
/// Invalid key or roots.
pub fn server_config(
    id: &Identity,
    roots: RootCertStore,
    alpn: &[&[u8]],
) -> anyhow::Result<rustls::ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .context("client certificate verifier")?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key())
        .context("our certificate and key do not match")?;
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(cfg)
}

/// A TLS 1.3 client configuration presenting `id` and trusting `roots` for the server.
///
/// # Errors
/// Invalid key.
pub fn client_config(
    id: &Identity,
    roots: RootCertStore,
    alpn: &[&[u8]],
) -> anyhow::Result<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(id.chain.clone(), id.key())
        .context("our certificate and key do not match")?;
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(cfg)
}

/// Why a verified client certificate does not identify an acceptable peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// No certificate (cannot happen after a successful mTLS handshake).
    #[error("no client certificate")]
    NoCertificate,
    /// The certificate names no DNS domain.
    #[error("the client certificate names no DNS domain (SAN dNSName)")]
    NoDomain,
    /// None of its domains is a configured peer.
    #[error("the client certificate names {0}, which is not a configured peer of this gateway")]
    UnknownPeer(String),
    /// It names several configured peers: it cannot speak for one of them.
    #[error(
        "the client certificate names several configured peers ({0}); each provider needs a certificate of its own"
    )]
    Ambiguous(String),
    /// It is not issued by the CA configured for that peer.
    #[error(
        "the client certificate for {domain} is not issued by the CA configured for {domain}: {reason}"
    )]
    WrongCa {
        /// The peer.
        domain: String,
        /// The verifier's reason.
        reason: String,
    },
}

/// What the gateway trusts, per peer.
pub struct Trust {
    federation_roots: RootCertStore,
    federation: Arc<dyn ClientCertVerifier>,
    per_peer: BTreeMap<String, (RootCertStore, Arc<dyn ClientCertVerifier>)>,
    known: Vec<String>,
    allow_unknown: bool,
    /// In a cluster: this gateway's own domain, whose certificate the other nodes present.
    own: Option<String>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("known", &self.known)
            .field("allow_unknown", &self.allow_unknown)
            .finish_non_exhaustive()
    }
}

impl Trust {
    /// From the configuration's CA files.
    ///
    /// # Errors
    /// Unreadable CA bundles.
    pub fn from_config(cfg: &Config) -> anyhow::Result<Self> {
        let mut federation_roots = match &cfg.tls.ca {
            Some(ca) => load_roots(ca)?,
            None => RootCertStore::empty(),
        };
        if cfg.tls.webpki {
            federation_roots
                .roots
                .extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        let mut per_peer = BTreeMap::new();
        for p in &cfg.peers {
            if let Some(ca) = &p.ca {
                let roots = load_roots(ca)?;
                let v = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots.clone()),
                    provider(),
                )
                .build()?;
                per_peer.insert(p.domain.clone(), (roots, v));
            }
        }
        let federation = WebPkiClientVerifier::builder_with_provider(
            Arc::new(federation_roots.clone()),
            provider(),
        )
        .build()?;
        Ok(Self {
            federation_roots,
            federation,
            per_peer,
            known: cfg.peers.iter().map(|p| p.domain.clone()).collect(),
            allow_unknown: cfg.federation.allow_unknown_peers,
            own: (cfg.storage.backend == crate::config::StorageBackend::Postgres)
                .then(|| cfg.domain.to_ascii_lowercase()),
        })
    }

    /// Roots the TLS servers accept client certificates from: the federation CA and every
    /// per-peer CA (which CA may vouch for which peer is checked by [`Trust::identify`]).
    pub fn server_roots(&self) -> RootCertStore {
        let mut r = self.federation_roots.clone();
        for (roots, _) in self.per_peer.values() {
            r.roots.extend(roots.roots.iter().cloned());
        }
        r
    }

    /// Roots to verify `peer`'s server certificate with.
    pub fn roots_for(&self, peer: &str) -> RootCertStore {
        self.per_peer
            .get(peer)
            .map_or_else(|| self.federation_roots.clone(), |(r, _)| r.clone())
    }

    /// The provider domain a verified client chain speaks for. A peer with its own CA is
    /// vouched for by that CA only; every other peer (and, when allowed, unknown ones) by the
    /// federation CA only; a certificate naming several configured peers speaks for none.
    ///
    /// # Errors
    /// [`PeerError`].
    pub fn identify(&self, chain: &[CertificateDer<'_>]) -> Result<Domain, PeerError> {
        let leaf = chain.first().ok_or(PeerError::NoCertificate)?;
        let domains: Vec<String> = cert_domains(leaf)
            .into_iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        if domains.is_empty() {
            return Err(PeerError::NoDomain);
        }
        let configured: Vec<&String> = domains.iter().filter(|d| self.known.contains(d)).collect();
        let own = self
            .own
            .as_ref()
            .filter(|o| domains.contains(o))
            .map(|o| vec![o]);
        let domain = match own.as_deref().unwrap_or(configured.as_slice()) {
            [one] if own.is_some() && domains.len() > 1 => {
                return Err(PeerError::Ambiguous(format!("{one} and others")));
            }
            [one] => (*one).clone(),
            [] if self.allow_unknown && domains.len() == 1 => domains[0].clone(),
            [] if self.allow_unknown => return Err(PeerError::Ambiguous(domains.join(", "))),
            [] => return Err(PeerError::UnknownPeer(domains.join(", "))),
            many => {
                return Err(PeerError::Ambiguous(
                    many.iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                ));
            }
        };
        let verifier = self
            .per_peer
            .get(&domain)
            .map_or(&self.federation, |(_, v)| v);
        let intermediates: Vec<CertificateDer<'_>> = chain[1..].to_vec();
        verifier
            .verify_client_cert(leaf, &intermediates, UnixTime::now())
            .map_err(|e| PeerError::WrongCa {
                domain: domain.clone(),
                reason: e.to_string(),
            })?;
        Domain::parse(&domain).map_err(|_| PeerError::NoDomain)
    }
}
