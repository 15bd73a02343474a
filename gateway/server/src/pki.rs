//! A **development-only** PKI: one CA and a certificate per provider domain, usable as both TLS
//! server and client certificate, plus a config per domain with loopback ports and every other
//! domain as a peer (`mimi init`). Production federations use their own CA or WebPKI.
//!
//! ```text
//! DIR/ca.pem, DIR/ca-key.pem                          the development CA (keep the key private)
//! DIR/<domain>/cert.pem, key.pem, config.toml         one provider
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Whether `d` is a DNS name (labels of letters, digits and hyphens).
pub fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A generated certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    /// Certificate.
    pub cert: String,
    /// PKCS#8 private key.
    pub key: String,
}

/// A development CA.
#[derive(Debug, Clone)]
pub struct Ca {
    /// Its common name (the issuer name of what it signs).
    pub name: String,
    /// Its certificate and key.
    pub pem: Pem,
}

fn ca_params(name: &str) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.distinguished_name.push(DnType::CommonName, name);
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2036, 1, 1);
    Ok(p)
}

/// Creates a CA (valid 2025–2036).
///
/// # Errors
/// rcgen failures.
pub fn new_ca(name: &str) -> anyhow::Result<Ca> {
    let key = KeyPair::generate()?;
    let ca = CertifiedIssuer::self_signed(ca_params(name)?, key)?;
    Ok(Ca {
        name: name.to_owned(),
        pem: Pem {
            cert: ca.pem(),
            key: ca.key().serialize_pem(),
        },
    })
}

/// Issues a provider certificate for `domain` (SAN dNSName, server and client auth) signed by
/// `ca`; `expired` makes one whose validity ended in 2021 (for tests).
///
/// # Errors
/// rcgen failures or an unparsable CA key.
pub fn issue(ca: &Ca, domain: &str, expired: bool) -> anyhow::Result<Pem> {
    let ca_key = KeyPair::from_pem(&ca.pem.key).context("CA key")?;
    // The issuer is rebuilt from the same parameters as the self-signed CA certificate, so the
    // issuer name and key identifier match it.
    let issuer = Issuer::new(ca_params(&ca.name)?, ca_key);
    let mut p = CertificateParams::new(vec![domain.to_owned()])?;
    p.distinguished_name.push(DnType::CommonName, domain);
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    } else {
        p.not_before = rcgen::date_time_ymd(2025, 1, 1);
        p.not_after = rcgen::date_time_ymd(2035, 12, 31);
    }
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The common name of the CA `mimi init` writes.
pub const DEV_CA_NAME: &str = "MIMI development CA (not for production)";

/// Reads the CA a `mimi init` wrote into `out` (to issue more certificates, e.g. in tests).
///
/// # Errors
/// Unreadable files.
pub fn load_ca(out: &Path) -> anyhow::Result<Ca> {
    let cert = std::fs::read_to_string(out.join("ca.pem"))
        .with_context(|| format!("cannot read {}", out.join("ca.pem").display()))?;
    let key = std::fs::read_to_string(out.join("ca-key.pem"))
        .with_context(|| format!("cannot read {}", out.join("ca-key.pem").display()))?;
    Ok(Ca {
        name: DEV_CA_NAME.to_owned(),
        pem: Pem { cert, key },
    })
}

/// Ports of the `index`-th provider of a development federation starting at `base`.
pub fn ports(base: u16, index: usize) -> (u16, u16, u16) {
    let i = index as u16;
    (base + 10 * i, base + 10 * i + 1, base + 10 * i + 2)
}

/// Writes a development federation for `domains` into `out`; returns the config paths.
///
/// # Errors
/// IO or certificate failures.
pub fn init(domains: &[String], out: &Path, base_port: u16) -> anyhow::Result<Vec<PathBuf>> {
    let ports: Vec<(u16, u16, u16)> = (0..domains.len()).map(|i| ports(base_port, i)).collect();
    init_with_ports(domains, out, &ports)
}

/// As [`init`], with explicit (federation, admin, client API) ports per domain.
///
/// # Errors
/// IO or certificate failures.
pub fn init_with_ports(
    domains: &[String],
    out: &Path,
    ports: &[(u16, u16, u16)],
) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(ports.len() == domains.len(), "one port triple per domain");
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let ca = new_ca(DEV_CA_NAME)?;
    std::fs::write(out.join("ca.pem"), &ca.pem.cert)?;
    write_private(&out.join("ca-key.pem"), &ca.pem.key)?;
    let mut configs = Vec::new();
    for (i, d) in domains.iter().enumerate() {
        let dir = out.join(d);
        std::fs::create_dir_all(&dir)?;
        let pem = issue(&ca, d, false)?;
        std::fs::write(dir.join("cert.pem"), &pem.cert)?;
        write_private(&dir.join("key.pem"), &pem.key)?;
        let (fed, admin, client) = ports[i];
        let mut cfg = format!(
            "# Development configuration generated by `mimi init` (development PKI, not for production).\n\
             domain = \"{d}\"\n\n[listen]\nquic = \"127.0.0.1:{fed}\"\nhttps = \"127.0.0.1:{fed}\"\nadmin = \"127.0.0.1:{admin}\"\nclient_api = \"127.0.0.1:{client}\"\n\n\
             [tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\nca = \"../ca.pem\"\n\n[storage]\npath = \"data/{d}.redb\"\n"
        );
        for (j, p) in domains.iter().enumerate() {
            if j == i {
                continue;
            }
            let (pf, _, _) = ports[j];
            let addr = SocketAddr::from(([127, 0, 0, 1], pf));
            cfg.push_str(&format!("\n[[peers]]\ndomain = \"{p}\"\nquic = \"{addr}\"\nhttps = \"{addr}\"\nasset_domains = [\"{p}\"]\n"));
        }
        let path = dir.join("config.toml");
        std::fs::write(&path, cfg)?;
        configs.push(path);
    }
    Ok(configs)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
