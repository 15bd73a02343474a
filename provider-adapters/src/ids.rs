//! The persisted map between MIMI message IDs and provider message IDs, and the reaction
//! bookkeeping that providers with other reaction models need.
//!
//! One entry per message **version** per provider: the native ID (Matrix event ID, or the
//! transaction ID until the event ID is known; XMPP origin-id, stanza id and MUC stanza-id;
//! Wire UUID) maps to this version's MIMI ID and the MIMI ID of the first version (the target
//! of edits and deletes). The exact CBOR bytes of each MIMI message are kept (message IDs are
//! computed over them), except for deleted messages. Serialized as JSON for storage.

use std::collections::BTreeMap;

use mimi_content::MessageId;
use serde::{Deserialize, Serialize};

use crate::Provider;

/// What one MIMI message version is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The first version's ID (itself for a new message), hex.
    pub first: String,
    /// The sender's user URI.
    pub sender: String,
    /// For a reaction: the target's ID (hex) and the emoji.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<(String, String)>,
}

/// The ID map of one gateway (all rooms).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    /// `provider|native room|native id` → MIMI ID of that version (hex).
    by_native: BTreeMap<String, String>,
    /// `provider|native room|MIMI id hex` → native ID.
    by_mimi: BTreeMap<String, String>,
    /// MIMI ID (hex) → version facts.
    versions: BTreeMap<String, Version>,
    /// `MIMI room|reactor|target first id` → emoji → MIMI reaction ID (hex).
    reactions: BTreeMap<String, BTreeMap<String, String>>,
    /// MIMI ID (hex) → the exact CBOR bytes (hex).
    bytes: BTreeMap<String, String>,
}

fn nkey(p: Provider, room: &str, id: &str) -> String {
    format!("{}|{room}|{id}", p.name())
}

fn parse(hex_id: &str) -> Option<MessageId> {
    hex_id.parse().ok()
}

impl IdMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serialized form (JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// From [`IdMap::to_bytes`].
    ///
    /// # Errors
    /// Malformed JSON.
    pub fn from_bytes(b: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(b)
    }

    /// Records a MIMI message (its bytes, first version, sender, reaction facts).
    pub fn record_mimi(
        &mut self,
        id: MessageId,
        first: MessageId,
        sender: &str,
        reaction: Option<(MessageId, &str)>,
        bytes: &[u8],
    ) {
        let hex_id = id.to_hex();
        self.versions.insert(
            hex_id.clone(),
            Version {
                first: first.to_hex(),
                sender: sender.to_owned(),
                reaction: reaction.map(|(t, e)| (t.to_hex(), e.to_owned())),
            },
        );
        self.bytes.insert(hex_id, hex::encode(bytes));
    }

    /// Links a native ID (of `provider` in `native_room`) with a MIMI message version.
    pub fn link(&mut self, p: Provider, native_room: &str, native_id: &str, id: MessageId) {
        self.by_native
            .insert(nkey(p, native_room, native_id), id.to_hex());
        self.by_mimi
            .insert(nkey(p, native_room, &id.to_hex()), native_id.to_owned());
    }

    /// Adds another native ID for the same version (XMPP stanza-id, Matrix event ID learned
    /// after the transaction); the newest becomes the one used for references.
    pub fn alias(&mut self, p: Provider, native_room: &str, known: &str, other: &str) -> bool {
        let Some(id) = self.by_native.get(&nkey(p, native_room, known)).cloned() else {
            return false;
        };
        self.by_native
            .insert(nkey(p, native_room, other), id.clone());
        self.by_mimi
            .insert(nkey(p, native_room, &id), other.to_owned());
        true
    }

    /// The MIMI version a native ID names.
    pub fn mimi_of(&self, p: Provider, native_room: &str, native_id: &str) -> Option<MessageId> {
        self.by_native
            .get(&nkey(p, native_room, native_id))
            .and_then(|h| parse(h))
    }

    /// The native ID of a MIMI version (the newest alias).
    pub fn native_of(&self, p: Provider, native_room: &str, id: &MessageId) -> Option<String> {
        self.by_mimi
            .get(&nkey(p, native_room, &id.to_hex()))
            .cloned()
    }

    /// Facts about a MIMI version.
    pub fn version(&self, id: &MessageId) -> Option<&Version> {
        self.versions.get(&id.to_hex())
    }

    /// The first version of the message `id` is a version of (itself if unknown).
    pub fn first_of(&self, id: &MessageId) -> MessageId {
        self.version(id)
            .and_then(|v| parse(&v.first))
            .unwrap_or(*id)
    }

    /// The exact bytes of a MIMI message, when kept.
    pub fn bytes_of(&self, id: &MessageId) -> Option<Vec<u8>> {
        self.bytes
            .get(&id.to_hex())
            .and_then(|h| hex::decode(h).ok())
    }

    /// Forgets the bytes of a deleted message (keeps the IDs so late references resolve).
    pub fn forget_bytes(&mut self, id: &MessageId) {
        self.bytes.remove(&id.to_hex());
    }

    fn rkey(room: &str, reactor: &str, target: &MessageId) -> String {
        format!("{room}|{reactor}|{}", target.to_hex())
    }

    /// The reactions `reactor` currently has on `target` (first version): emoji → reaction ID.
    pub fn reactions(
        &self,
        room: &str,
        reactor: &str,
        target: &MessageId,
    ) -> BTreeMap<String, MessageId> {
        self.reactions
            .get(&Self::rkey(room, reactor, target))
            .map(|m| {
                m.iter()
                    .filter_map(|(e, h)| parse(h).map(|id| (e.clone(), id)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records a reaction.
    pub fn add_reaction(
        &mut self,
        room: &str,
        reactor: &str,
        target: &MessageId,
        emoji: &str,
        reaction: MessageId,
    ) {
        self.reactions
            .entry(Self::rkey(room, reactor, target))
            .or_default()
            .insert(emoji.to_owned(), reaction.to_hex());
    }

    /// Removes a reaction (by its MIMI ID); returns its target and emoji.
    pub fn remove_reaction(
        &mut self,
        room: &str,
        reactor: &str,
        reaction: &MessageId,
    ) -> Option<(MessageId, String)> {
        let (target_hex, emoji) = self.version(reaction)?.reaction.clone()?;
        let target = parse(&target_hex)?;
        if let Some(m) = self.reactions.get_mut(&Self::rkey(room, reactor, &target)) {
            m.remove(&emoji);
        }
        Some((target, emoji))
    }

    /// Number of message versions known.
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }
}
