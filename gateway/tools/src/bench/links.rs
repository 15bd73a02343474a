//! `mimi bench links`: one MIMI request (a real 1024-byte signed `KeyMaterialRequest` from
//! a.example to b.example, answered by b's whole path: mutual TLS, peer identity, Host/From
//! checks, admission, body read, engine, metrics) over HTTP/3 and HTTPS, at each in-flight
//! count, against the bare baselines at the same count.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;

use super::baseline::Bare;
use super::{IN_FLIGHT, Load, Measurement, kmr, load, peer_client, unthrottled};
use crate::local::LocalFederation;

/// The gateway's request round trips over `transport` with `in_flight` outstanding.
pub(crate) async fn mimi_requests(
    dir: &Path,
    b: mimi_gateway::gateway::Addrs,
    transport: &str,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<Load> {
    let (body, path) = kmr(1024);
    let body = Bytes::from(body);
    let client = Arc::new(peer_client(dir, transport, b)?);
    load(in_flight, duration, move || {
        let (client, body, path) = (Arc::clone(&client), body.clone(), path.clone());
        async move {
            let r = client
                .request("b.example", Method::POST, &path, body)
                .await?;
            anyhow::ensure!(
                r.status == 200,
                "status {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            Ok(())
        }
    })
    .await
}

/// `mimi bench links`: the baselines and both transports at 1, 16 and 64 in flight.
///
/// # Errors
/// Start-up or request failures.
pub async fn links(dir: &Path, duration: Duration) -> anyhow::Result<Vec<Measurement>> {
    let fed = LocalFederation::start(&["a.example", "b.example"], dir, unthrottled).await?;
    let bare = Bare::start(dir).await?;
    let mut out = Vec::new();
    for n in IN_FLIGHT {
        let base = bare.measure(n, duration).await?;
        out.push(Measurement::new("bare_echo", "quic", n, &base.echo, &base));
        out.push(Measurement::new("bare_h3", "h3", n, &base.h3, &base));
        for (transport, name) in [("h3", "h3"), ("https", "https")] {
            let l = mimi_requests(dir, fed.get("b.example").addrs, transport, n, duration).await?;
            out.push(Measurement::new("links", name, n, &l, &base));
        }
    }
    fed.shutdown().await;
    Ok(out)
}
