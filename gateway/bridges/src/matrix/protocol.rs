//! The application-service side of the Matrix protocol, without IO: the registration, the
//! homeserver's authentication, transactions and their events, the bridge's namespaces
//! (puppets, portal aliases) and bot commands, and what each event asks the bridge to do.

use serde::Deserialize;
use serde_json::Value;
use subtle::ConstantTimeEq as _;

use mimi_adapters::uris::{escape, unescape};

use crate::config::MatrixBridge as Config;

/// The registration YAML of the application service (`mimi bridge matrix registration`).
pub fn registration(c: &Config) -> String {
    let server = c.server_name.replace('.', "\\\\.");
    format!(
        "# Application service registration for the MIMI gateway (mimi bridge matrix registration).\n\
         id: mimi-gateway\nurl: \"http://{}\"\nas_token: \"{}\"\nhs_token: \"{}\"\nsender_localpart: {}\nrate_limited: false\n\
         receive_ephemeral: true\nde.sorunome.msc2409.push_ephemeral: true\n\
         namespaces:\n  users:\n    - exclusive: true\n      regex: '@{}.*:{server}'\n  aliases:\n    - exclusive: true\n      regex: '#{}.*:{server}'\n  rooms: []\n",
        c.listen, c.as_token, c.hs_token, c.bot_localpart, c.puppet_prefix, c.puppet_prefix
    )
}

/// Whether the homeserver authenticated: `Authorization: Bearer <hs_token>` (the query
/// string is not accepted: it ends up in logs), compared in constant time.
pub fn authenticated(authorization: Option<&str>, hs_token: &str) -> bool {
    authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(hs_token.as_bytes())))
}

/// A transaction the homeserver pushes (`PUT /_matrix/app/v1/transactions/{txnId}`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Transaction {
    /// Room events.
    #[serde(default)]
    pub events: Vec<Value>,
    /// Ephemeral events (receipts), with `receive_ephemeral`.
    #[serde(default)]
    pub ephemeral: Vec<Value>,
    /// The same under its MSC2409 name (older homeservers).
    #[serde(default, rename = "de.sorunome.msc2409.ephemeral")]
    pub ephemeral_unstable: Vec<Value>,
}

/// Largest transaction body accepted.
pub const MAX_TXN: usize = 8 << 20;
/// Most events in one transaction.
pub const MAX_EVENTS: usize = 1000;

/// Why a transaction is refused outright.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// Not JSON of a transaction.
    #[error("not a transaction: {0}")]
    Malformed(String),
    /// Too many events.
    #[error("a transaction carries at most {MAX_EVENTS} events")]
    TooMany,
}

impl Transaction {
    /// Parses a transaction body.
    ///
    /// # Errors
    /// [`TxnError`].
    pub fn parse(body: &[u8]) -> Result<Self, TxnError> {
        let t: Self =
            serde_json::from_slice(body).map_err(|e| TxnError::Malformed(e.to_string()))?;
        if t.events.len() + t.ephemeral.len() + t.ephemeral_unstable.len() > MAX_EVENTS {
            return Err(TxnError::TooMany);
        }
        Ok(t)
    }

    /// Ephemeral events under either name.
    pub fn ephemeral(&self) -> impl Iterator<Item = &Value> {
        self.ephemeral.iter().chain(&self.ephemeral_unstable)
    }
}

/// The bridge's names on one homeserver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The server name.
    pub server: String,
    /// Puppet and alias prefix.
    pub prefix: String,
    /// The bot's user ID.
    pub bot: String,
}

impl Names {
    /// From the configuration.
    pub fn new(c: &Config) -> Self {
        Self {
            server: c.server_name.clone(),
            prefix: c.puppet_prefix.clone(),
            bot: format!("@{}:{}", c.bot_localpart, c.server_name),
        }
    }

    /// The MIMI user URI a puppet stands for (None: not a puppet of a MIMI user).
    pub fn puppet_uri(&self, mxid: &str) -> Option<String> {
        let local = mxid
            .strip_prefix('@')?
            .strip_suffix(&format!(":{}", self.server))?
            .strip_prefix(&self.prefix)?;
        unescape(local).filter(|u| u.starts_with("mimi://") && u.contains("/u/"))
    }

    /// The MIMI room URI a portal alias names (`#<prefix><escaped room URI>:<server>`).
    pub fn alias_room(&self, alias: &str) -> Option<String> {
        let local = alias
            .strip_prefix('#')?
            .strip_suffix(&format!(":{}", self.server))?
            .strip_prefix(&self.prefix)?;
        unescape(local).filter(|u| u.starts_with("mimi://") && u.contains("/r/"))
    }

    /// The alias localpart of a MIMI room's portal.
    pub fn alias_local(&self, room: &str) -> String {
        format!("{}{}", self.prefix, escape(room))
    }

    /// Whether `mxid` belongs to the bridge (its bot or a puppet): its events are echoes.
    pub fn is_ours(&self, mxid: &str) -> bool {
        mxid == self.bot
            || mxid.strip_prefix('@').is_some_and(|m| {
                m.starts_with(&self.prefix) && m.ends_with(&format!(":{}", self.server))
            })
    }
}

/// A command to the bridge's bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `!mimi help`.
    Help,
    /// `!mimi join <room URI>`: the portal of a MIMI room (invites the sender).
    Join(String),
    /// `!mimi dm <user URI>`: a direct-message portal with a MIMI user.
    Dm(String),
    /// Anything else after `!mimi`.
    Unknown(String),
}

/// The bot's help text.
pub const HELP: &str = "MIMI bridge commands:\n\
    !mimi join <room URI> — join a MIMI room (mimi://provider/r/name) through its portal\n\
    !mimi dm <user URI> — open a direct conversation with a MIMI user (mimi://provider/u/name)\n\
    !mimi help — this text\n\
    You can also join #<prefix><escaped room URI>:<server> or invite a MIMI user's puppet.";

/// The bot command in a message body, if it is one.
pub fn command(body: &str) -> Option<Command> {
    let rest = body.trim().strip_prefix("!mimi")?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let mut words = rest.split_whitespace();
    Some(match (words.next(), words.next()) {
        (None | Some("help"), _) => Command::Help,
        (Some("join"), Some(r)) if r.starts_with("mimi://") && r.contains("/r/") => {
            Command::Join(r.to_owned())
        }
        (Some("dm"), Some(u)) if u.starts_with("mimi://") && u.contains("/u/") => {
            Command::Dm(u.to_owned())
        }
        _ => Command::Unknown(rest.trim().to_owned()),
    })
}

/// What a room event asks the bridge to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing (an echo, an event type the bridge does not carry, an unknown room).
    Ignore,
    /// A local user invited a puppet: a direct conversation with that MIMI user.
    DirectInvite {
        /// The inviter.
        user: String,
        /// The room.
        room: String,
        /// The MIMI user.
        peer: String,
        /// The puppet invited.
        puppet: String,
    },
    /// The bot was invited (it joins, for commands).
    BotInvite {
        /// The room.
        room: String,
    },
    /// A user joined a room.
    Joined {
        /// The user.
        user: String,
        /// The room.
        room: String,
    },
    /// A user left a room by themself.
    Left {
        /// The user.
        user: String,
        /// The room.
        room: String,
    },
    /// `by` kicked (or banned) `user`.
    Kicked {
        /// Who.
        by: String,
        /// Whom.
        user: String,
        /// The room.
        room: String,
        /// A ban.
        ban: bool,
    },
    /// A bot command.
    Command {
        /// The sender.
        user: String,
        /// The room.
        room: String,
        /// The command.
        command: Command,
    },
    /// A message, reaction, edit or redaction to translate.
    Content {
        /// The sender.
        user: String,
        /// The room.
        room: String,
    },
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

/// Classifies a room event.
pub fn classify(names: &Names, ev: &Value) -> Action {
    let (sender, room, kind) = (s(ev, "sender"), s(ev, "room_id"), s(ev, "type"));
    if sender.is_empty() || room.is_empty() || names.is_ours(sender) {
        return Action::Ignore;
    }
    match kind {
        "m.room.member" => {
            let target = ev["state_key"].as_str().unwrap_or("");
            let membership = ev["content"]["membership"].as_str().unwrap_or("");
            match membership {
                "invite" if target == names.bot => Action::BotInvite {
                    room: room.to_owned(),
                },
                "invite" => match names.puppet_uri(target) {
                    Some(peer) => Action::DirectInvite {
                        user: sender.to_owned(),
                        room: room.to_owned(),
                        peer,
                        puppet: target.to_owned(),
                    },
                    None => Action::Ignore,
                },
                "join" if target == sender => Action::Joined {
                    user: sender.to_owned(),
                    room: room.to_owned(),
                },
                "leave" if target == sender => Action::Left {
                    user: sender.to_owned(),
                    room: room.to_owned(),
                },
                "leave" | "ban" if !target.is_empty() => Action::Kicked {
                    by: sender.to_owned(),
                    user: target.to_owned(),
                    room: room.to_owned(),
                    ban: membership == "ban",
                },
                _ => Action::Ignore,
            }
        }
        "m.room.message" => match command(s(&ev["content"], "body")) {
            Some(c) => Action::Command {
                user: sender.to_owned(),
                room: room.to_owned(),
                command: c,
            },
            None => Action::Content {
                user: sender.to_owned(),
                room: room.to_owned(),
            },
        },
        "m.reaction" | "m.room.redaction" => Action::Content {
            user: sender.to_owned(),
            room: room.to_owned(),
        },
        _ => Action::Ignore,
    }
}

/// `(room, event ID, user)` of each read receipt in an ephemeral `m.receipt` event.
pub fn receipts(ev: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    if s(ev, "type") != "m.receipt" {
        return out;
    }
    let room = s(ev, "room_id");
    if let Some(events) = ev["content"].as_object() {
        for (event_id, kinds) in events {
            for kind in ["m.read", "m.read.private"] {
                if let Some(users) = kinds[kind].as_object() {
                    for user in users.keys() {
                        out.push((room.to_owned(), event_id.clone(), user.clone()));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> Names {
        Names {
            server: "matrix.test".into(),
            prefix: "mimi_".into(),
            bot: "@mimi_bot:matrix.test".into(),
        }
    }

    #[test]
    fn only_the_bearer_header_authenticates() {
        assert!(authenticated(Some("Bearer secret"), "secret"));
        assert!(!authenticated(Some("Bearer secreT"), "secret"));
        assert!(!authenticated(Some("secret"), "secret"));
        assert!(!authenticated(None, "secret"));
        assert!(!authenticated(Some("Bearer "), "secret"));
    }

    #[test]
    fn namespaces_round_trip() {
        let n = names();
        let puppet = format!("@mimi_{}:matrix.test", escape("mimi://a.example/u/alice"));
        assert_eq!(
            n.puppet_uri(&puppet).as_deref(),
            Some("mimi://a.example/u/alice")
        );
        assert_eq!(n.puppet_uri("@mimi_bot:matrix.test"), None);
        assert_eq!(n.puppet_uri("@bob:matrix.test"), None);
        let alias = format!("#{}:matrix.test", n.alias_local("mimi://a.example/r/x"));
        assert_eq!(
            n.alias_room(&alias).as_deref(),
            Some("mimi://a.example/r/x")
        );
        assert_eq!(n.alias_room("#mimi_garbage:matrix.test"), None);
        assert!(n.is_ours(&puppet) && n.is_ours("@mimi_bot:matrix.test"));
        assert!(!n.is_ours("@bob:matrix.test"));
    }

    #[test]
    fn commands() {
        assert_eq!(command("!mimi"), Some(Command::Help));
        assert_eq!(command(" !mimi help "), Some(Command::Help));
        assert_eq!(
            command("!mimi join mimi://a.example/r/x"),
            Some(Command::Join("mimi://a.example/r/x".into()))
        );
        assert_eq!(
            command("!mimi dm mimi://a.example/u/al"),
            Some(Command::Dm("mimi://a.example/u/al".into()))
        );
        assert!(matches!(
            command("!mimi join nowhere"),
            Some(Command::Unknown(_))
        ));
        assert_eq!(command("!mimicry"), None);
        assert_eq!(command("hello"), None);
    }

    #[test]
    fn events_classify() {
        let n = names();
        let puppet = format!("@mimi_{}:matrix.test", escape("mimi://a.example/u/alice"));
        let inv = json!({"type": "m.room.member", "sender": "@bob:matrix.test", "room_id": "!r", "state_key": puppet, "content": {"membership": "invite"}});
        assert!(
            matches!(classify(&n, &inv), Action::DirectInvite { peer, .. } if peer == "mimi://a.example/u/alice")
        );
        let kick = json!({"type": "m.room.member", "sender": "@bob:matrix.test", "room_id": "!r", "state_key": "@carol:matrix.test", "content": {"membership": "ban"}});
        assert!(matches!(
            classify(&n, &kick),
            Action::Kicked { ban: true, .. }
        ));
        let echo = json!({"type": "m.room.message", "sender": puppet, "room_id": "!r", "content": {"body": "x"}});
        assert_eq!(classify(&n, &echo), Action::Ignore);
        let cmd = json!({"type": "m.room.message", "sender": "@bob:matrix.test", "room_id": "!r", "content": {"body": "!mimi help"}});
        assert!(matches!(
            classify(&n, &cmd),
            Action::Command {
                command: Command::Help,
                ..
            }
        ));
        assert_eq!(
            classify(
                &n,
                &json!({"type": "m.room.topic", "sender": "@b:m", "room_id": "!r"})
            ),
            Action::Ignore
        );
        assert_eq!(classify(&n, &json!("not an object")), Action::Ignore);
        let rec = json!({"type": "m.receipt", "room_id": "!r", "content": {"$e": {"m.read": {"@bob:matrix.test": {"ts": 1}}}}});
        assert_eq!(
            receipts(&rec),
            vec![("!r".into(), "$e".into(), "@bob:matrix.test".into())]
        );
        assert!(Transaction::parse(b"{\"events\": 5}").is_err());
        let many = json!({"events": vec![json!({}); MAX_EVENTS + 1]});
        assert_eq!(
            Transaction::parse(many.to_string().as_bytes()).unwrap_err(),
            TxnError::TooMany
        );
    }
}
