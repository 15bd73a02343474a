//! Provider adapters: Matrix events, XMPP stanzas, Wire `GenericMessage`s and native MIMI
//! content, translated to and from MIMI content (draft-ietf-mimi-content-08).
//!
//! Every adapter implements [`Adapter`]: `to_mimi` turns one native payload into zero or more
//! MIMI messages (a Wire reaction change is an un-react plus a react; an XMPP reaction set is
//! diffed against the previous one), `from_mimi` turns one MIMI message into zero or more
//! native payloads. What cannot be carried is never dropped silently: it is listed in
//! [`Translated::lost`].
//!
//! References between messages (replies, edits, deletes, reactions, quotes) are rewritten
//! through an [`ids::IdMap`], the persisted map between MIMI message IDs (first version and
//! each version) and each provider's IDs, kept as small keyed rows with a retention period. References to messages the map does not know are
//! degraded as the draft says for unknown targets (a reply without a target, an edit sent as
//! a new message), and reported.
//!
//! Users and rooms of other providers get stable MIMI URIs ([`uris::UriScheme`]): message IDs
//! hash the sender and room URIs, so these never change.

use mimi_content::Message;

pub mod attachments;
pub mod ids;
pub mod matrix;
pub mod native;
pub mod text;
pub mod uris;
pub mod wire;
pub mod xml;
pub mod xmpp;

pub use ids::IdMap;
pub use uris::UriScheme;

/// The providers the gateway translates for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Matrix (client-server API events).
    Matrix,
    /// XMPP (`<message/>` stanzas).
    Xmpp,
    /// Wire (`GenericMessage` protobuf).
    Wire,
    /// Native MIMI content.
    Native,
}

impl Provider {
    /// The lowercase name (`matrix`, `xmpp`, `wire`, `native`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Matrix => "matrix",
            Self::Xmpp => "xmpp",
            Self::Wire => "wire",
            Self::Native => "native",
        }
    }

    /// Parses a name.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "matrix" => Self::Matrix,
            "xmpp" => Self::Xmpp,
            "wire" => Self::Wire,
            "native" | "mimi" => Self::Native,
            _ => return None,
        })
    }
}

/// Something that could not be carried across, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Loss {
    /// The feature (`formatting`, `mention`, `reply`, `typing`, `location`, ...).
    pub feature: &'static str,
    /// What exactly was lost or degraded.
    pub detail: String,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.feature, self.detail)
    }
}

/// The result of a translation: the items produced and what was lost.
#[derive(Debug, Clone, Default)]
pub struct Translated<T> {
    /// Zero or more payloads, in the order to send them.
    pub items: Vec<T>,
    /// Everything that could not be carried.
    pub lost: Vec<Loss>,
}

impl<T> Translated<T> {
    fn one(item: T) -> Self {
        Self {
            items: vec![item],
            lost: Vec::new(),
        }
    }

    fn none() -> Self {
        Self {
            items: Vec::new(),
            lost: Vec::new(),
        }
    }

    fn lose(&mut self, feature: &'static str, detail: impl Into<String>) {
        self.lost.push(Loss {
            feature,
            detail: detail.into(),
        });
    }
}

/// Why a payload could not be translated at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// The native payload does not parse.
    #[error("invalid {provider} payload: {reason}")]
    Invalid {
        /// Which provider's format.
        provider: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The MIMI content is invalid (it failed to build or decode).
    #[error("invalid MIMI content: {0}")]
    Mimi(String),
}

pub(crate) fn invalid(provider: Provider, reason: impl Into<String>) -> AdapterError {
    AdapterError::Invalid {
        provider: provider.name(),
        reason: reason.into(),
    }
}

/// Where a translation happens: the room, the map of IDs, the URI scheme, a salt source.
pub struct Context<'a> {
    /// The MIMI room URI.
    pub room: &'a str,
    /// The provider's room (Matrix room ID, MUC JID, Wire conversation); the key of native IDs.
    pub native_room: &'a str,
    /// The ID map (updated by every translation).
    pub ids: &'a mut IdMap,
    /// Canonical URIs of bridged users and rooms.
    pub uris: &'a UriScheme,
    /// Fresh 16-byte salts for new MIMI messages.
    pub salt: &'a mut dyn FnMut() -> [u8; 16],
    /// Downloads and uploads for attachments (bridges); without it attachments that need
    /// re-encryption are carried as a text fallback and reported.
    pub media: Option<&'a mut dyn attachments::Media>,
}

impl Context<'_> {
    /// Builds a MIMI message and records it in the ID map (with `native_id` of `provider`).
    pub(crate) fn finish(
        &mut self,
        provider: Provider,
        native_id: Option<&str>,
        b: mimi_content::builder::Builder,
    ) -> Result<Message, AdapterError> {
        let m = b.build().map_err(|e| AdapterError::Mimi(e.to_string()))?;
        self.record(provider, native_id, &m)?;
        Ok(m)
    }

    /// Records a MIMI message (and its native ID) in the map.
    pub(crate) fn record(
        &mut self,
        provider: Provider,
        native_id: Option<&str>,
        m: &Message,
    ) -> Result<(), AdapterError> {
        let id = m.id().map_err(|e| AdapterError::Mimi(e.to_string()))?;
        let c = m.content();
        let sender = c.extensions.sender_uri().unwrap_or_default().to_owned();
        let reaction = if text::is_reaction(c) && c.replaces.is_none() {
            c.in_reply_to.map(|t| {
                (
                    self.ids.first_of(&t),
                    text::text_of(&c.nested_part)
                        .map(|t| t.plain)
                        .unwrap_or_default(),
                )
            })
        } else {
            None
        };
        let first = match c.replaces {
            Some(r) if !text::is_reaction(c) => self.ids.first_of(&r),
            _ => id,
        };
        let excerpt = if reaction.is_some() {
            String::new()
        } else {
            text::text_of(&c.nested_part)
                .map(|t| t.plain)
                .unwrap_or_default()
        };
        self.ids.record_mimi(
            id,
            first,
            &sender,
            reaction.as_ref().map(|(t, e)| (*t, e.as_str())),
            &excerpt,
        );
        if let Some((target, emoji)) = &reaction {
            self.ids.add_reaction(self.room, &sender, target, emoji, id);
        }
        if let (Some(r), true) = (c.replaces, text::is_reaction(c)) {
            self.ids.remove_reaction(self.room, &sender, &r);
        }
        if matches!(c.nested_part.body, mimi_content::PartBody::Null)
            && !text::is_reaction(c)
            && let Some(r) = c.replaces
        {
            let first = self.ids.first_of(&r);
            self.ids.forget_text(&first);
        }
        if let Some(n) = native_id {
            self.ids.link(provider, self.native_room, n, id);
        }
        Ok(())
    }
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("room", &self.room)
            .field("native_room", &self.native_room)
            .finish_non_exhaustive()
    }
}

/// A random salt (for [`Context::salt`]).
pub fn random_salt() -> [u8; 16] {
    rand::random()
}

/// One provider's payload format.
pub trait Adapter {
    /// The provider.
    const PROVIDER: Provider;
    /// A native payload.
    type Native;

    /// Parses a native payload from its wire form (JSON event, XML stanza, protobuf bytes).
    ///
    /// # Errors
    /// [`AdapterError::Invalid`] with the reason.
    fn parse(&self, bytes: &[u8]) -> Result<Self::Native, AdapterError>;

    /// Serializes a native payload to its wire form.
    fn serialize(&self, native: &Self::Native) -> Vec<u8>;

    /// The native message ID of a payload, if it has one (for the ID map).
    fn native_id(&self, native: &Self::Native) -> Option<String>;

    /// Translates one native payload sent by `sender` (a MIMI user URI) into MIMI messages,
    /// recording their IDs in the map.
    ///
    /// # Errors
    /// [`AdapterError`] when nothing sensible can be produced.
    fn to_mimi(
        &self,
        ctx: &mut Context<'_>,
        sender: &str,
        native: &Self::Native,
    ) -> Result<Translated<Message>, AdapterError>;

    /// Translates one MIMI message from `sender` (a MIMI user URI) into native payloads,
    /// recording their IDs in the map.
    ///
    /// # Errors
    /// [`AdapterError`] when nothing sensible can be produced.
    #[allow(clippy::wrong_self_convention)] // the pair to_mimi/from_mimi reads as the mapping table does
    fn from_mimi(
        &self,
        ctx: &mut Context<'_>,
        sender: &str,
        msg: &Message,
    ) -> Result<Translated<Self::Native>, AdapterError>;
}
