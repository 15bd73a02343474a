//! The local client API's requests, responses and deliveries (docs/client-api.md), as types the
//! gateway and its clients share. JSON is the default body format; deliveries also have a
//! binary form ([`DeliveryPage`], TLS presentation language) that a client gets by sending
//! `Accept: application/vnd.mimi.deliveries` ([`DELIVERIES_BINARY`]).
//!
//! Byte strings travel in JSON as lowercase hex ([`Hex`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::codec::Bytes;
use crate::uri::{ClientUri, Domain, RoomUri, UserUri};

/// The route prefix of the client API.
pub const PREFIX: &str = "/client/v1";
/// Media type of the binary delivery page ([`DeliveryPage`]).
pub const DELIVERIES_BINARY: &str = "application/vnd.mimi.deliveries";

/// Bytes carried as a lowercase hex string in JSON.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Hex(pub Vec<u8>);

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hex({} bytes)", self.0.len())
    }
}

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s)
            .map(Self)
            .map_err(|e| serde::de::Error::custom(format!("not hex: {e}")))
    }
}

impl From<Vec<u8>> for Hex {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

/// `POST /register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// User name (local part, 1..64 of `[a-z0-9._-]`).
    pub user: String,
    /// Device name (same alphabet).
    pub device: String,
    /// Display name of a new user.
    #[serde(default)]
    pub display_name: String,
}

/// `201` to `POST /register`, and `GET /whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// `<user>/<device>`.
    pub client_id: String,
    /// The user.
    pub user: UserUri,
    /// The client (its MLS credential identity).
    pub client_uri: ClientUri,
    /// The bearer token (only in the registration answer; stored as its SHA-256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `GET /hub`: what a room creator puts in its group's `external_senders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubInfo {
    /// This provider.
    pub domain: Domain,
    /// The hub's RFC 9420 ExternalSender entry.
    pub external_sender: Hex,
    /// Its signature public key.
    pub signature_key: Hex,
    /// `ed25519`.
    pub signature_scheme: String,
}

/// `POST /key-packages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishKeyPackages {
    /// RFC 9420 KeyPackages whose credential is the client URI; each handed out once.
    #[serde(default)]
    pub key_packages: Vec<Hex>,
    /// A KeyPackage with the `last_resort` extension: handed out when no other is left, and
    /// never consumed (it replaces the client's previous one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_resort: Option<Hex>,
}

/// `200` to `POST /key-packages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// KeyPackages stored (the last-resort one included).
    pub published: usize,
    /// Unused one-time KeyPackages the client now has (the last-resort one not counted):
    /// publishing an empty list asks how many are left.
    #[serde(default)]
    pub available: usize,
}

/// `POST /rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    /// `mimi://<this domain>/r/<id>`.
    pub room: RoomUri,
    /// The creator's GroupInfo (raw, without ratchet_tree).
    pub group_info: Hex,
    /// The `ratchet_tree` vector.
    pub ratchet_tree: Hex,
}

/// `201` to `POST /rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomCreated {
    /// The room.
    pub room: RoomUri,
    /// Its MLS group ID.
    pub group_id: Hex,
    /// Its epoch.
    pub epoch: u64,
}

/// What a delivery carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryKind {
    /// A Welcome FanoutMessage.
    Welcome,
    /// A commit FanoutMessage.
    Commit,
    /// A proposal FanoutMessage.
    Proposal,
    /// An application-message FanoutMessage.
    Application,
    /// A ConsentEntry.
    Consent,
}

impl DeliveryKind {
    /// The wire value in [`DeliveryRecord`].
    pub fn value(self) -> u8 {
        match self {
            Self::Welcome => 1,
            Self::Commit => 2,
            Self::Proposal => 3,
            Self::Application => 4,
            Self::Consent => 5,
        }
    }

    /// From the wire value.
    pub fn from_value(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Welcome,
            2 => Self::Commit,
            3 => Self::Proposal,
            4 => Self::Application,
            5 => Self::Consent,
            _ => return None,
        })
    }

    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Welcome => "welcome",
            Self::Commit => "commit",
            Self::Proposal => "proposal",
            Self::Application => "application",
            Self::Consent => "consent",
        }
    }
}

/// One delivery to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Position in the client's queue (increasing).
    pub seq: u64,
    /// The room (empty for consent).
    pub room: String,
    /// Hub acceptance time (ms).
    pub timestamp: u64,
    /// What it is.
    pub kind: DeliveryKind,
    /// The FanoutMessage (or ConsentEntry).
    pub body: Hex,
}

/// `GET /events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsPage {
    /// The client (`<user>/<device>`).
    pub client: String,
    /// Deliveries after the cursor, in order.
    pub events: Vec<Delivery>,
    /// The queue overflowed since the last acknowledgement: the client must resync.
    pub gap: bool,
}

/// `POST /ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Highest processed sequence number.
    pub upto: u64,
}

/// `200` to `POST /ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acked {
    /// The cursor.
    pub acked: u64,
    /// Deliveries dropped.
    pub dropped: usize,
}

fn yes() -> bool {
    true
}

/// `POST /subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    /// The room.
    pub room: RoomUri,
    /// Start (true) or stop.
    #[serde(default = "yes")]
    pub on: bool,
}

/// `200` to `POST /subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribed {
    /// The room.
    pub room: RoomUri,
    /// Whether deliveries now flow.
    pub subscribed: bool,
}

/// `201` to `POST /assets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetStored {
    /// Content address (SHA-256, hex).
    pub id: String,
    /// Where peers download it.
    pub url: String,
}

crate::wire_struct! {
    /// One delivery in the binary page.
    pub struct DeliveryRecord as "DeliveryRecord" {
        /// Queue position.
        pub seq: u64 as "seq",
        /// Room URI (empty for consent).
        pub room: Bytes as "room",
        /// Hub acceptance time (ms).
        pub timestamp: u64 as "timestamp",
        /// [`DeliveryKind::value`].
        pub kind: u8 as "kind",
        /// The FanoutMessage or ConsentEntry.
        pub body: Bytes as "body",
    }
}

crate::wire_struct! {
    /// The binary form of [`EventsPage`] (`Accept: application/vnd.mimi.deliveries`).
    pub struct DeliveryPage as "DeliveryPage" {
        /// 1 when the queue overflowed.
        pub gap: u8 as "gap",
        /// Deliveries in order.
        pub events: Vec<DeliveryRecord> as "events",
    }
}

impl From<&EventsPage> for DeliveryPage {
    fn from(p: &EventsPage) -> Self {
        Self {
            gap: u8::from(p.gap),
            events: p
                .events
                .iter()
                .map(|d| DeliveryRecord {
                    seq: d.seq,
                    room: Bytes(d.room.as_bytes().to_vec()),
                    timestamp: d.timestamp,
                    kind: d.kind.value(),
                    body: Bytes(d.body.0.clone()),
                })
                .collect(),
        }
    }
}

impl DeliveryPage {
    /// The page as JSON types (`client` is not part of the binary form).
    ///
    /// # Errors
    /// An unknown kind or a room that is not UTF-8.
    pub fn into_events(self, client: &str) -> Result<EventsPage, crate::DecodeError> {
        let mut events = Vec::with_capacity(self.events.len());
        for e in self.events {
            let bad = |what: &str| crate::DecodeError {
                path: format!("DeliveryPage.events.{what}"),
                offset: 0,
                kind: crate::ErrorKind::Invalid(format!("invalid {what}")),
            };
            events.push(Delivery {
                seq: e.seq,
                room: String::from_utf8(e.room.0).map_err(|_| bad("room"))?,
                timestamp: e.timestamp,
                kind: DeliveryKind::from_value(e.kind).ok_or_else(|| bad("kind"))?,
                body: Hex(e.body.0),
            });
        }
        Ok(EventsPage {
            client: client.to_owned(),
            events,
            gap: self.gap != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Wire;

    #[test]
    fn json_shapes_are_the_documented_ones() {
        let r: RegisterRequest =
            serde_json::from_str(r#"{"user":"alice","device":"phone"}"#).expect("register request");
        assert_eq!(r.display_name, "");
        assert!(
            serde_json::from_str::<RegisterRequest>(r#"{"user":"a","device":"b","x":1}"#).is_err()
        );
        let s: SubscribeRequest =
            serde_json::from_str(r#"{"room":"mimi://a.example/r/x"}"#).expect("subscribe");
        assert!(s.on);
        assert!(serde_json::from_str::<SubscribeRequest>(r#"{"room":"x"}"#).is_err());
        let d = Delivery {
            seq: 3,
            room: "mimi://a.example/r/x".into(),
            timestamp: 9,
            kind: DeliveryKind::Application,
            body: Hex(vec![0xab, 0x01]),
        };
        assert_eq!(
            serde_json::to_string(&d).expect("json"),
            r#"{"seq":3,"room":"mimi://a.example/r/x","timestamp":9,"kind":"application","body":"ab01"}"#
        );
    }

    #[test]
    fn binary_page_round_trips() {
        let page = EventsPage {
            client: "alice/phone".into(),
            events: vec![Delivery {
                seq: 1,
                room: String::new(),
                timestamp: 5,
                kind: DeliveryKind::Consent,
                body: Hex(vec![1, 2, 3]),
            }],
            gap: true,
        };
        let bytes = DeliveryPage::from(&page).to_bytes();
        let back = DeliveryPage::from_bytes(&bytes)
            .expect("decodes")
            .into_events("alice/phone")
            .expect("valid");
        assert_eq!(back, page);
        let mut bad = DeliveryPage::from(&page);
        bad.events[0].kind = 99;
        assert!(
            DeliveryPage::from_bytes(&bad.to_bytes())
                .expect("decodes")
                .into_events("x")
                .is_err()
        );
    }
}
