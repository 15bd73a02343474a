//! `mimi init --domain a.example [--domain b.example ...] --out DIR`: a development federation
//! (one CA, a certificate per domain, one config per domain with every other domain as a
//! peer). **Development-only PKI**: the CA key sits next to the certificates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use mimi_gateway::pki;

/// `mimi init`
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// A provider domain (repeat for each provider)
    #[arg(long = "domain", required = true)]
    domains: Vec<String>,
    /// The output directory
    #[arg(long)]
    out: PathBuf,
    /// First loopback port; provider i uses base+10i (QUIC and HTTPS), +1 (admin), +2 (client API)
    #[arg(long, default_value_t = 4433)]
    base_port: u16,
}

/// Runs `mimi init`.
pub(crate) fn run(a: InitArgs) -> anyhow::Result<ExitCode> {
    let mut seen = std::collections::BTreeSet::new();
    for d in &a.domains {
        if !pki::is_domain(d) {
            eprintln!("mimi: --domain {d:?} is not a DNS name");
            return Ok(ExitCode::from(2));
        }
        if !seen.insert(d) {
            eprintln!("mimi: --domain {d} is given twice");
            return Ok(ExitCode::from(2));
        }
    }
    if usize::from(a.base_port) + 10 * a.domains.len() > usize::from(u16::MAX) {
        eprintln!(
            "mimi: --base-port {} leaves no room for {} providers",
            a.base_port,
            a.domains.len()
        );
        return Ok(ExitCode::from(2));
    }
    let configs = pki::init(&a.domains, &a.out, a.base_port)?;
    println!("{}", a.out.join("ca.pem").display());
    for c in configs {
        println!("{}", c.display());
    }
    eprintln!(
        "mimi: development PKI written to {} (not for production; keep ca-key.pem private)",
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
