//! Every refusal of the engine, with the one mapping to an HTTP status (compare rustls's
//! `Error` → alert). The sentence says what was wrong and, where it helps, what to do.
//! Refusals inside a MIMI response body (UpdateRoomResponse `notAllowed`, GroupInfoResponse
//! codes) are protocol answers with status 200, not these.

use mimi_proto::uri::{Domain, UriError};

/// Why the engine refuses a request or call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A body does not decode.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// The structure.
        what: &'static str,
        /// The decoder's explanation.
        detail: String,
    },
    /// An identifier is not what it must be.
    #[error("{what}: {error}")]
    BadUri {
        /// Which identifier.
        what: &'static str,
        /// Why.
        error: UriError,
    },
    /// The path variable and the body disagree.
    #[error("the path names {path} but the body names {body}")]
    PathMismatch {
        /// From the path.
        path: String,
        /// From the body.
        body: String,
    },
    /// A new room is not acceptable.
    #[error("{0}")]
    InvalidRoom(String),
    /// A published KeyPackage is not acceptable.
    #[error("KeyPackage {index}: {detail}")]
    InvalidKeyPackage {
        /// Its position.
        index: usize,
        /// Why.
        detail: String,
    },
    /// A user or device name outside the alphabet.
    #[error("user and device names must be 1..64 of [a-z0-9._-]")]
    BadName,
    /// An operation that needs a different shape of request.
    #[error("{0}")]
    Invalid(String),
    /// No valid client token.
    #[error("missing or unknown client token; register with POST /client/v1/register")]
    Unauthenticated,
    /// Registration without credentials is closed.
    #[error(
        "registration needs Authorization: Bearer <client_api.admin_token> or a provider-issued token"
    )]
    RegistrationClosed,
    /// A new device of an existing user without that user's authority.
    #[error(
        "{user} exists: a new device needs the token of one of its devices (device linking), the admin token or a provider token for that user"
    )]
    DeviceLinking {
        /// The user name.
        user: String,
    },
    /// A provider called itself.
    #[error("a provider cannot send federation requests to itself")]
    FromSelf,
    /// `/notify` from another provider than the room's hub.
    #[error("only the room's hub ({hub}) may notify for {room}")]
    NotHub {
        /// The room.
        room: String,
        /// Its hub.
        hub: String,
    },
    /// A caller claims to act for a user it does not speak for.
    #[error("{caller} may not {action} as {user}")]
    NotYours {
        /// Who called (`provider d` or `client uri`).
        caller: String,
        /// The user claimed.
        user: String,
        /// What it tried.
        action: &'static str,
    },
    /// A signature does not verify.
    #[error("{0} signature does not verify")]
    BadSignature(&'static str),
    /// A credential that does not match the user it is presented for.
    #[error("{0}")]
    CredentialMismatch(String),
    /// The user is not a participant of the room (or it does not exist: indistinguishable).
    #[error("{user} is not a participant of {room}")]
    NotParticipant {
        /// The user.
        user: String,
        /// The room.
        room: String,
    },
    /// A client that is not a member of the room asks for its events.
    #[error("{client} is not a member of {room}; join it first (external join or Welcome)")]
    NotMember {
        /// The client.
        client: String,
        /// The room.
        room: String,
    },
    /// `/proxyDownload` to a host that is not an asset host of the caller's peers.
    #[error(
        "{host} is not an asset domain of a peer of this hub (refusing to be an open proxy for {peer})"
    )]
    OpenProxy {
        /// The host asked for.
        host: String,
        /// The caller.
        peer: String,
    },
    /// Nothing of that name here.
    #[error("{0}")]
    NotFound(String),
    /// It exists already.
    #[error("{0} already exists")]
    Exists(String),
    /// Over a size or count limit.
    #[error("{what}: at most {max}")]
    TooMany {
        /// What.
        what: &'static str,
        /// The limit.
        max: u64,
    },
    /// Over a rate quota.
    #[error("{what}; retry after {retry_after_s} s")]
    Quota {
        /// What is limited.
        what: String,
        /// When to retry.
        retry_after_s: u64,
    },
    /// The peer that must answer did not.
    #[error("{peer} did not answer: {reason}")]
    PeerUnreachable {
        /// The peer.
        peer: Domain,
        /// Why.
        reason: String,
    },
    /// An operator's action without the admin token.
    #[error("this needs the admin token (Authorization: Bearer <client_api.admin_token>)")]
    AdminOnly,
    /// Storage is failing: nothing was done.
    #[error("the gateway cannot store this now ({0}); nothing was done, retry")]
    Unavailable(String),
    /// A refusal made by the node of this cluster that handled the request, relayed as it was.
    #[error("{sentence}")]
    Relayed {
        /// Its status.
        status: u16,
        /// Its kind (one of [`Refusal::KINDS`], or `relayed`).
        kind: &'static str,
        /// Its sentence.
        sentence: String,
        /// Its Retry-After.
        retry_after_s: Option<u64>,
    },
}

impl Refusal {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed { .. }
            | Self::BadUri { .. }
            | Self::PathMismatch { .. }
            | Self::InvalidRoom(_)
            | Self::InvalidKeyPackage { .. }
            | Self::BadName
            | Self::Invalid(_) => 400,
            Self::Unauthenticated | Self::RegistrationClosed => 401,
            Self::DeviceLinking { .. }
            | Self::FromSelf
            | Self::NotHub { .. }
            | Self::NotYours { .. }
            | Self::BadSignature(_)
            | Self::CredentialMismatch(_)
            | Self::NotParticipant { .. }
            | Self::NotMember { .. }
            | Self::OpenProxy { .. }
            | Self::AdminOnly => 403,
            Self::NotFound(_) => 404,
            Self::Exists(_) => 409,
            Self::TooMany { .. } => 413,
            Self::Quota { .. } => 429,
            Self::PeerUnreachable { .. } => 502,
            Self::Unavailable(_) => 503,
            Self::Relayed { status, .. } => *status,
        }
    }

    /// Retry-After, for refusals that pass.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            Self::Quota { retry_after_s, .. } => Some(*retry_after_s),
            Self::PeerUnreachable { .. } | Self::Unavailable(_) => Some(1),
            Self::Relayed { retry_after_s, .. } => *retry_after_s,
            _ => None,
        }
    }

    /// A short name of the kind (metrics label).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed",
            Self::BadUri { .. } => "bad_uri",
            Self::PathMismatch { .. } => "path_mismatch",
            Self::InvalidRoom(_) => "invalid_room",
            Self::InvalidKeyPackage { .. } => "invalid_key_package",
            Self::BadName => "bad_name",
            Self::Invalid(_) => "invalid",
            Self::Unauthenticated => "unauthenticated",
            Self::RegistrationClosed => "registration_closed",
            Self::DeviceLinking { .. } => "device_linking",
            Self::FromSelf => "from_self",
            Self::NotHub { .. } => "not_hub",
            Self::NotYours { .. } => "not_yours",
            Self::BadSignature(_) => "bad_signature",
            Self::CredentialMismatch(_) => "credential_mismatch",
            Self::NotParticipant { .. } => "not_participant",
            Self::NotMember { .. } => "not_member",
            Self::OpenProxy { .. } => "open_proxy",
            Self::NotFound(_) => "not_found",
            Self::Exists(_) => "exists",
            Self::TooMany { .. } => "too_many",
            Self::Quota { .. } => "quota",
            Self::PeerUnreachable { .. } => "peer_unreachable",
            Self::Unavailable(_) => "unavailable",
            Self::AdminOnly => "admin_only",
            Self::Relayed { kind, .. } => kind,
        }
    }

    /// Every kind [`Refusal::kind`] names.
    pub const KINDS: [&'static str; 25] = [
        "malformed",
        "bad_uri",
        "path_mismatch",
        "invalid_room",
        "invalid_key_package",
        "bad_name",
        "invalid",
        "unauthenticated",
        "registration_closed",
        "device_linking",
        "from_self",
        "not_hub",
        "not_yours",
        "bad_signature",
        "credential_mismatch",
        "not_participant",
        "not_member",
        "open_proxy",
        "not_found",
        "exists",
        "too_many",
        "quota",
        "peer_unreachable",
        "unavailable",
        "admin_only",
    ];

    /// A refusal another node made, from its status, kind and sentence. Statuses outside
    /// 400..=599 become 502 (a node never relays success as a refusal).
    pub fn relayed(status: u16, kind: &str, sentence: String, retry_after_s: Option<u64>) -> Self {
        Self::Relayed {
            status: if (400..=599).contains(&status) {
                status
            } else {
                502
            },
            kind: Self::KINDS
                .iter()
                .find(|k| **k == kind)
                .copied()
                .unwrap_or("relayed"),
            sentence,
            retry_after_s,
        }
    }

    pub(crate) fn malformed(what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Malformed {
            what,
            detail: e.to_string(),
        }
    }

    pub(crate) fn uri(what: &'static str, error: UriError) -> Self {
        Self::BadUri { what, error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_refusals_keep_status_kind_and_sentence() {
        let r = Refusal::relayed(403, "not_member", "x is not a member".into(), None);
        assert_eq!(
            (r.status(), r.kind(), r.to_string()),
            (403, "not_member", "x is not a member".to_owned())
        );
        let r = Refusal::relayed(200, "made-up", "s".into(), Some(2));
        assert_eq!(
            (r.status(), r.kind(), r.retry_after_s()),
            (502, "relayed", Some(2))
        );
        for k in Refusal::KINDS {
            assert_eq!(Refusal::relayed(400, k, String::new(), None).kind(), k);
        }
    }

    #[test]
    fn statuses_and_sentences() {
        let r = Refusal::NotYours {
            caller: "provider b.example".into(),
            user: "mimi://c.example/u/carol".into(),
            action: "send",
        };
        assert_eq!(r.status(), 403);
        assert_eq!(
            r.to_string(),
            "provider b.example may not send as mimi://c.example/u/carol"
        );
        assert_eq!(
            Refusal::Unavailable("disk full".into()).retry_after_s(),
            Some(1)
        );
        assert!((400..500).contains(&Refusal::BadName.status()));
    }
}
