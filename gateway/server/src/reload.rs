//! Certificates and trust that change without a restart: the TLS servers resolve our
//! certificate and verify client certificates through [`Credentials`], and the peer client
//! reads it for each new connection. `SIGHUP`, `POST /admin/v1/reload` or a change of the
//! files on disk (checked every [`WATCH`]) reloads them; a reload that fails (unreadable
//! files, a key that does not match, a certificate that does not name our domain) changes
//! nothing and says why.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::tls::{Identity, Trust, provider};

/// How often the files are checked for changes.
pub const WATCH: Duration = Duration::from_secs(10);

struct Current {
    identity: Arc<Identity>,
    trust: Arc<Trust>,
    certified: Arc<CertifiedKey>,
    verifier: Arc<dyn ClientCertVerifier>,
    stamps: Vec<Option<SystemTime>>,
}

/// Our certificate and the CAs we trust, swappable at run time.
pub struct Credentials {
    cfg: Config,
    current: RwLock<Current>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("domain", &self.cfg.domain)
            .finish_non_exhaustive()
    }
}

fn files(cfg: &Config) -> Vec<PathBuf> {
    let mut v = vec![cfg.tls.cert.clone(), cfg.tls.key.clone()];
    v.extend(cfg.tls.ca.clone());
    v.extend(cfg.peers.iter().filter_map(|p| p.ca.clone()));
    v
}

fn stamps(cfg: &Config) -> Vec<Option<SystemTime>> {
    files(cfg)
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

fn load(cfg: &Config) -> anyhow::Result<Current> {
    let identity = Identity::load(&cfg.tls.cert, &cfg.tls.key)?;
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
    let key = provider()
        .key_provider
        .load_private_key(identity.key())
        .context("tls.key is not a usable private key")?;
    let certified = CertifiedKey::new(identity.chain.clone(), key);
    certified
        .keys_match()
        .context("tls.key does not belong to tls.cert")?;
    let trust = Trust::from_config(cfg)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(trust.server_roots()),
        provider(),
    )
    .build()
    .context("client certificate verifier")?;
    Ok(Current {
        identity: Arc::new(identity),
        trust: Arc::new(trust),
        certified: Arc::new(certified),
        verifier,
        stamps: stamps(cfg),
    })
}

impl Credentials {
    /// Loads the configured certificate, key and CAs.
    ///
    /// # Errors
    /// Unreadable or mismatched files, a certificate that does not name the domain.
    pub fn load(cfg: &Config) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            current: RwLock::new(load(cfg)?),
            cfg: cfg.clone(),
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Our certificate and key now.
    pub fn identity(&self) -> Arc<Identity> {
        Arc::clone(&self.read().identity)
    }

    /// Who we trust now.
    pub fn trust(&self) -> Arc<Trust> {
        Arc::clone(&self.read().trust)
    }

    /// What is served now.
    pub fn describe(&self) -> mimi_proto::admin_api::Reloaded {
        let id = self.identity();
        mimi_proto::admin_api::Reloaded {
            names: id.domains(),
            fingerprint: id
                .chain
                .first()
                .map(|c| hex::encode(Sha256::digest(c.as_ref())))
                .unwrap_or_default(),
        }
    }

    /// Reads the files again and swaps them in (new handshakes use them; open connections
    /// keep theirs).
    ///
    /// # Errors
    /// What is wrong with the files; then nothing changed.
    pub fn reload(&self) -> anyhow::Result<mimi_proto::admin_api::Reloaded> {
        let next = load(&self.cfg)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        let d = self.describe();
        tracing::info!(names = ?d.names, fingerprint = %d.fingerprint, "certificates reloaded");
        Ok(d)
    }

    /// Whether a file changed on disk since the last (re)load.
    pub fn changed_on_disk(&self) -> bool {
        stamps(&self.cfg) != self.read().stamps
    }

    /// A TLS 1.3 server configuration that requires a client certificate and always uses
    /// the current certificate and trust.
    ///
    /// # Errors
    /// Never in practice (TLS 1.3 with the ring provider).
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> anyhow::Result<rustls::ServerConfig> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(Verifier(Arc::clone(self))))
            .with_cert_resolver(Arc::new(Resolver(Arc::clone(self))));
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Ok(cfg)
    }
}

#[derive(Debug)]
struct Resolver(Arc<Credentials>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0.read().certified))
    }
}

#[derive(Debug)]
struct Verifier(Arc<Credentials>);

impl Verifier {
    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::clone(&self.0.read().verifier)
    }
}

impl ClientCertVerifier for Verifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; the roots change at run time.
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// Reloads on `SIGHUP` and when the files change on disk, until `stop`; after a reload the
/// peer client's cached connections are closed so new ones present the new certificate.
pub async fn watch(
    credentials: Arc<Credentials>,
    peers: Arc<crate::peers::PeerClient>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(WATCH);
    tick.tick().await;
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<()>();
        let why = tokio::select! {
            () = signalled => "SIGHUP",
            _ = tick.tick() => {
                if !credentials.changed_on_disk() {
                    continue;
                }
                "a file changed"
            }
            () = crate::serving::stopping(&mut stop) => return,
        };
        match credentials.reload() {
            Ok(_) => peers.drop_connections().await,
            Err(e) => {
                tracing::error!(reason = why, error = %format!("{e:#}"), "certificate reload failed; the previous certificates stay in use")
            }
        }
    }
}
