//! The homeserver's client-server API as the application service calls it: reqwest with
//! rustls (WebPKI roots for `https://`; plain HTTP for a homeserver on loopback), pooled
//! connections, request and connect timeouts, and responses read up to a cap.

use std::sync::Arc;
use std::time::Duration;

use mimi_proto::directory::encode_path_value as enc;
use reqwest::Method;
use serde_json::{Value, json};

/// Largest response body read (media downloads included).
const MAX_RESPONSE: usize = 64 << 20;

/// A failed homeserver call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsError {
    /// No answer (connection, TLS, timeout).
    #[error("homeserver unreachable ({call}): {detail}")]
    Transport {
        /// The call.
        call: String,
        /// Why.
        detail: String,
    },
    /// The homeserver refused.
    #[error("{call} answered {status}: {body}")]
    Status {
        /// The call.
        call: String,
        /// The status.
        status: u16,
        /// `errcode` and `error`.
        body: String,
    },
    /// The response is not what the API promises.
    #[error("{call}: unexpected answer: {detail}")]
    Unexpected {
        /// The call.
        call: String,
        /// What.
        detail: String,
    },
}

impl HsError {
    /// The Matrix `errcode`, when the homeserver gave one.
    pub fn errcode(&self) -> Option<String> {
        match self {
            Self::Status { body, .. } => serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v["errcode"].as_str().map(str::to_owned)),
            _ => None,
        }
    }
}

/// The homeserver, as the application service.
#[derive(Debug, Clone)]
pub struct Homeserver {
    http: reqwest::Client,
    base: String,
    token: Arc<str>,
}

fn tls() -> Result<rustls::ClientConfig, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

impl Homeserver {
    /// The homeserver at `base` (`https://…` or `http://…`), authenticated with `as_token`.
    ///
    /// # Errors
    /// A client that cannot be built (bad TLS setup).
    pub fn new(base: &str, as_token: &str, timeout: Duration) -> Result<Self, HsError> {
        let tls = tls().map_err(|e| HsError::Transport {
            call: "client".into(),
            detail: e.to_string(),
        })?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(16)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| HsError::Transport {
                call: "client".into(),
                detail: e.to_string(),
            })?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: Arc::from(as_token),
        })
    }

    /// One call; `as_user` masquerades as a user of the namespace (`?user_id=`).
    ///
    /// # Errors
    /// [`HsError`] for transport failures and non-2xx answers.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        as_user: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, HsError> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let (_, b) = self
            .raw(method, path, as_user, "application/json", bytes)
            .await?;
        if b.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&b).map_err(|e| HsError::Unexpected {
            call: path.to_owned(),
            detail: e.to_string(),
        })
    }

    /// One call with a raw body; returns the content type and body of a 2xx answer.
    ///
    /// # Errors
    /// [`HsError`].
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        as_user: Option<&str>,
        content_type: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(String, Vec<u8>), HsError> {
        let mut url = format!("{}{path}", self.base);
        if let Some(u) = as_user {
            url.push(if path.contains('?') { '&' } else { '?' });
            url.push_str("user_id=");
            url.push_str(&enc(u));
        }
        let call = format!("{method} {path}");
        let mut req = self.http.request(method, &url).bearer_auth(&*self.token);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(b);
        }
        let transport = |e: reqwest::Error| HsError::Transport {
            call: call.clone(),
            detail: e.to_string(),
        };
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if out.len() + chunk.len() > MAX_RESPONSE {
                return Err(HsError::Unexpected {
                    call,
                    detail: format!("a response over {MAX_RESPONSE} bytes"),
                });
            }
            out.extend_from_slice(&chunk);
        }
        if !(200..300).contains(&status) {
            return Err(HsError::Status {
                call,
                status,
                body: String::from_utf8_lossy(&out).chars().take(500).collect(),
            });
        }
        Ok((ct, out))
    }

    /// Registers a puppet of the namespace (already registered is fine).
    ///
    /// # Errors
    /// [`HsError`].
    pub async fn register(&self, localpart: &str) -> Result<(), HsError> {
        let r = self
            .call(
                Method::POST,
                "/_matrix/client/v3/register",
                None,
                Some(&json!({"type": "m.login.application_service", "username": localpart, "inhibit_login": true})),
            )
            .await;
        match r {
            Err(e) if e.errcode().as_deref() == Some("M_USER_IN_USE") => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Sets a display name.
    ///
    /// # Errors
    /// [`HsError`].
    pub async fn set_displayname(&self, mxid: &str, name: &str) -> Result<(), HsError> {
        self.call(
            Method::PUT,
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(mxid)),
            Some(mxid),
            Some(&json!({"displayname": name})),
        )
        .await
        .map(|_| ())
    }

    /// Joins a room (by ID or alias) as `user`; returns the room ID.
    ///
    /// # Errors
    /// [`HsError`].
    pub async fn join(&self, room: &str, user: &str) -> Result<String, HsError> {
        let v = self
            .call(
                Method::POST,
                &format!("/_matrix/client/v3/join/{}", enc(room)),
                Some(user),
                Some(&json!({})),
            )
            .await?;
        Ok(v["room_id"].as_str().unwrap_or(room).to_owned())
    }

    /// Leaves a room as `user`.
    ///
    /// # Errors
    /// [`HsError`].
    pub async fn leave(&self, room: &str, user: &str) -> Result<(), HsError> {
        self.call(
            Method::POST,
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(room)),
            Some(user),
            Some(&json!({})),
        )
        .await
        .map(|_| ())
    }

    /// Invites `user` as `by`.
    ///
    /// # Errors
    /// [`HsError`].
    pub async fn invite(&self, room: &str, user: &str, by: &str) -> Result<(), HsError> {
        self.call(
            Method::POST,
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(room)),
            Some(by),
            Some(&json!({"user_id": user})),
        )
        .await
        .map(|_| ())
    }

    /// Kicks `user` as `by`, with a reason.
    ///
    /// # Errors
    /// [`HsError`].
    pub async fn kick(
        &self,
        room: &str,
        user: &str,
        by: &str,
        reason: &str,
    ) -> Result<(), HsError> {
        self.call(
            Method::POST,
            &format!("/_matrix/client/v3/rooms/{}/kick", enc(room)),
            Some(by),
            Some(&json!({"user_id": user, "reason": reason})),
        )
        .await
        .map(|_| ())
    }

    /// Creates a room as `by`; returns its ID.
    ///
    /// # Errors
    /// [`HsError`].
    pub async fn create_room(&self, body: &Value, by: &str) -> Result<String, HsError> {
        let v = self
            .call(
                Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(by),
                Some(body),
            )
            .await?;
        v["room_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| HsError::Unexpected {
                call: "createRoom".into(),
                detail: "no room_id".into(),
            })
    }

    /// The room an alias points to, if any.
    ///
    /// # Errors
    /// [`HsError`] other than not found.
    pub async fn resolve_alias(&self, alias: &str) -> Result<Option<String>, HsError> {
        match self
            .call(
                Method::GET,
                &format!("/_matrix/client/v3/directory/room/{}", enc(alias)),
                None,
                None,
            )
            .await
        {
            Ok(v) => Ok(v["room_id"].as_str().map(str::to_owned)),
            Err(HsError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends an event as `by` with a transaction ID (the homeserver deduplicates retries);
    /// returns the event ID.
    ///
    /// # Errors
    /// [`HsError`].
    pub async fn send(
        &self,
        room: &str,
        event_type: &str,
        txn: &str,
        content: &Value,
        by: &str,
    ) -> Result<String, HsError> {
        let v = self
            .call(
                Method::PUT,
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/{}/{}",
                    enc(room),
                    enc(event_type),
                    enc(txn)
                ),
                Some(by),
                Some(content),
            )
            .await?;
        Ok(v["event_id"].as_str().unwrap_or("").to_owned())
    }

    /// Redacts an event as `by`.
    ///
    /// # Errors
    /// [`HsError`].
    pub async fn redact(
        &self,
        room: &str,
        event: &str,
        txn: &str,
        by: &str,
    ) -> Result<String, HsError> {
        let v = self
            .call(
                Method::PUT,
                &format!(
                    "/_matrix/client/v3/rooms/{}/redact/{}/{}",
                    enc(room),
                    enc(event),
                    enc(txn)
                ),
                Some(by),
                Some(&json!({})),
            )
            .await?;
        Ok(v["event_id"].as_str().unwrap_or("").to_owned())
    }

    /// Marks `event` read by `by`.
    ///
    /// # Errors
    /// [`HsError`].
    pub async fn read_receipt(&self, room: &str, event: &str, by: &str) -> Result<(), HsError> {
        self.call(
            Method::POST,
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                enc(room),
                enc(event)
            ),
            Some(by),
            Some(&json!({})),
        )
        .await
        .map(|_| ())
    }

    /// Downloads media (`mxc://server/id`), authenticated.
    ///
    /// # Errors
    /// [`HsError`].
    pub async fn download(&self, mxc: &str) -> Result<Vec<u8>, HsError> {
        let rest = mxc
            .strip_prefix("mxc://")
            .ok_or_else(|| HsError::Unexpected {
                call: "download".into(),
                detail: format!("{mxc} is not an mxc:// URI"),
            })?;
        self.raw(
            Method::GET,
            &format!("/_matrix/client/v1/media/download/{rest}"),
            None,
            "",
            None,
        )
        .await
        .map(|(_, b)| b)
    }

    /// Uploads media; returns its `mxc://` URI.
    ///
    /// # Errors
    /// [`HsError`].
    pub async fn upload(
        &self,
        bytes: Vec<u8>,
        content_type: &str,
        filename: &str,
    ) -> Result<String, HsError> {
        let path = format!("/_matrix/media/v3/upload?filename={}", enc(filename));
        let (_, b) = self
            .raw(Method::POST, &path, None, content_type, Some(bytes))
            .await?;
        serde_json::from_slice::<Value>(&b)
            .ok()
            .and_then(|v| v["content_uri"].as_str().map(str::to_owned))
            .ok_or_else(|| HsError::Unexpected {
                call: path,
                detail: "no content_uri".into(),
            })
    }
}
