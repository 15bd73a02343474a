//! Tests of both roles: the directory, mutual TLS, From, body and rate limits.

use super::*;
use mimi_proto::directory::{Directory, Endpoint, WELL_KNOWN_PATH, encode_path_value};
use mimi_tools::raw::{Got, Raw};
use std::net::SocketAddr;
use std::time::Duration;

pub(super) async fn directory(e: &mut Env) -> Res {
    let g = s(e
        .raw
        .send(
            &e.o.transport,
            e.o.target,
            "GET",
            WELL_KNOWN_PATH,
            &[],
            Vec::new(),
        )
        .await)?;
    expect(
        g.status == 200,
        format!("GET {WELL_KNOWN_PATH}: {} {}", g.status, g.text()),
    )?;
    let d = s(Directory::parse(&g.body))?;
    for ep in [
        Endpoint::KeyMaterial,
        Endpoint::Update,
        Endpoint::Notify,
        Endpoint::SubmitMessage,
        Endpoint::GroupInfo,
        Endpoint::IdentifierQuery,
        Endpoint::ReportAbuse,
        Endpoint::RequestConsent,
        Endpoint::UpdateConsent,
        Endpoint::ProxyDownload,
    ] {
        expect(
            d.url(ep, "x").is_some(),
            format!("the directory has no {} endpoint", ep.name()),
        )?;
    }
    // Learn the path prefix the target uses.
    if let Some(u) = d.url(Endpoint::Update, "x").and_then(|u| {
        u.split_once("://")
            .and_then(|(_, r)| r.find('/').map(|i| r[i..].to_owned()))
    }) {
        e.prefix = u.trim_end_matches("/update/x").to_owned();
    }
    Ok(())
}

pub(super) async fn mtls_no_certificate(e: &mut Env) -> Res {
    let anon = Raw::new(None, &e.ca_pem, &e.o.target_domain);
    match anon
        .send(
            &e.o.transport,
            e.o.target,
            "GET",
            WELL_KNOWN_PATH,
            &[],
            Vec::new(),
        )
        .await
    {
        Err(_) => Ok(()),
        Ok(g) => Err(format!(
            "a client without a certificate got an HTTP answer ({})",
            g.status
        )),
    }
}

pub(super) async fn mtls_unknown_ca(e: &mut Env) -> Res {
    let ca = s(mimi_tools::reference::new_ca("mimi-conformance rogue CA"))?;
    let rogue = s(mimi_tools::reference::issue(&ca, &e.o.our_domain, false))?;
    let r = Raw::new(Some(rogue.into()), &e.ca_pem, &e.o.target_domain);
    match r
        .send(
            &e.o.transport,
            e.o.target,
            "GET",
            WELL_KNOWN_PATH,
            &[],
            Vec::new(),
        )
        .await
    {
        Err(_) => Ok(()),
        Ok(g) => Err(format!(
            "a certificate from an unknown CA got an HTTP answer ({})",
            g.status
        )),
    }
}

pub(super) async fn from_mismatch(e: &mut Env) -> Res {
    let h = [
        ("from", "mimi@someone-else.example"),
        ("content-type", "application/octet-stream"),
    ];
    let g = s(e
        .raw
        .send(
            &e.o.transport,
            e.o.target,
            "POST",
            &format!(
                "{}/keyMaterial/{}",
                e.prefix,
                encode_path_value(&e.user(&e.o.target_domain, "nobody"))
            ),
            &h,
            vec![0],
        )
        .await)?;
    expect(
        g.status == 403 || g.status == 401,
        format!(
            "From naming another domain than the certificate: expected 401/403, got {} {}",
            g.status,
            g.text()
        ),
    )
}

pub(super) async fn oversize_body(e: &mut Env) -> Res {
    let g = s(e
        .post(
            Endpoint::Update,
            &format!("mimi://{}/r/none", e.o.target_domain),
            vec![0u8; 16 << 20],
        )
        .await)?;
    expect(
        g.status == 413,
        format!("a 16 MiB body: expected 413, got {} {}", g.status, g.text()),
    )
}

pub(super) async fn rate_limit_retry_after(e: &mut Env) -> Res {
    // Many cheap requests, 64 at a time, until the target says 429.
    let r = s(burst(&e.raw, e.o.target, WELL_KNOWN_PATH, 6000).await)?;
    let Some(g) = r else {
        return Err(
            "no 429 after 6000 requests (the target's rate limit is above the suite's probe)"
                .into(),
        );
    };
    let wait = g.retry_after.ok_or("429 without Retry-After")?;
    expect(wait >= 1, "Retry-After must be at least 1 second")?;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let ok = s(e
        .raw
        .send(
            &e.o.transport,
            e.o.target,
            "GET",
            WELL_KNOWN_PATH,
            &[],
            Vec::new(),
        )
        .await)?;
    expect(
        ok.status == 200,
        format!(
            "after waiting Retry-After ({wait} s) the target still answers {}",
            ok.status
        ),
    )
}

pub(super) async fn burst(
    raw: &Raw,
    addr: SocketAddr,
    path: &str,
    n: usize,
) -> anyhow::Result<Option<Got>> {
    use futures_util::StreamExt as _;
    let c = raw.clone();
    let results = futures_util::stream::iter(0..n)
        .map(|_| {
            let c = c.clone();
            async move { c.h2(addr, "GET", path, &[], Vec::new()).await }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    Ok(results
        .into_iter()
        .filter_map(Result::ok)
        .find(|g| g.status == 429))
}
