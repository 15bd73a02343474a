//! Forwarding a request to the node that orders its slot, over the nodes' mutually
//! authenticated federation link (each node presents the domain's own certificate).

use std::sync::Arc;

use bytes::Bytes;
use mimi_engine::{Input, Refusal, Response};

use crate::driver::{FetchFuture, Forward};
use crate::federation::FORWARD_PATH;
use crate::peers::PeerClient;

/// The link name of a node (a key of [`PeerClient`]'s links, never a domain).
pub fn link(node: &str) -> String {
    format!("node:{node}")
}

/// Forwards over [`PeerClient`] links to the other nodes.
#[derive(Debug)]
pub struct NodeForward {
    peers: Arc<PeerClient>,
}

impl NodeForward {
    /// Over `peers`.
    pub fn new(peers: Arc<PeerClient>) -> Self {
        Self { peers }
    }
}

fn unavailable(why: String) -> Response {
    Response::refused(Refusal::Unavailable(why))
}

impl Forward for NodeForward {
    fn forward(&self, node: Arc<str>, input: Input) -> FetchFuture {
        let peers = Arc::clone(&self.peers);
        Box::pin(async move {
            let body = match super::wire::encode_input(&input) {
                Ok(b) => Bytes::from(b),
                Err(e) => return unavailable(e.to_string()),
            };
            match peers
                .request(&link(&node), http::Method::POST, FORWARD_PATH, body)
                .await
            {
                Ok(r) if r.status == 200 => super::wire::decode_response(&r.body)
                    .unwrap_or_else(|e| unavailable(format!("node {node} answered: {e}"))),
                Ok(r) => unavailable(format!(
                    "node {node} refused the forwarded request ({}): {}",
                    r.status,
                    String::from_utf8_lossy(&r.body).trim()
                )),
                Err(e) => unavailable(format!(
                    "the node that orders this room ({node}) cannot be reached: {e}"
                )),
            }
        })
    }
}
