//! Receiver sanity checks of draft-ietf-mimi-content-08 §9.1, as a separate step.
//!
//! Structural validity ([`crate::codec::decode`]) never depends on the clock, so the draft's own
//! examples stay valid forever. These checks do: they take the receiver's context (its clock,
//! the IDs it has seen, the room's creation time and membership) and list what looks malicious.
//! The draft says such messages "should be logged and discarded"; what to do is the caller's
//! decision. References to unknown messages, unknown dispositions, content types and languages
//! are legitimate and never reported.

use crate::model::{HASH_SHA_256, MessageId, MimiContent};

/// One year, in seconds (365 days).
pub const YEAR_SECS: u64 = 365 * 24 * 3600;
/// Default tolerated clock skew for "received in the future": five minutes.
pub const DEFAULT_FUTURE_SKEW_MS: u64 = 5 * 60 * 1000;
/// No MIMI message can predate the first MIMI content draft: 2022-01-01T00:00:00Z.
pub const SPEC_EPOCH_MS: u64 = 1_640_995_200_000;

/// What the receiver knows.
pub struct ReceiverContext<'a> {
    /// The receiver's clock, ms since the UNIX epoch.
    pub now_ms: u64,
    /// How far in the future an accepted timestamp may be.
    pub max_future_skew_ms: u64,
    /// When the room was created, if known.
    pub room_created_ms: Option<u64>,
    /// Whether an ID was already seen in this room.
    pub is_known_id: &'a dyn Fn(&MessageId) -> bool,
    /// Whether a sender URI has a member client in the group (if the receiver can tell).
    pub is_member: Option<&'a dyn Fn(&str) -> bool>,
}

impl std::fmt::Debug for ReceiverContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverContext")
            .field("now_ms", &self.now_ms)
            .field("max_future_skew_ms", &self.max_future_skew_ms)
            .field("room_created_ms", &self.room_created_ms)
            .finish_non_exhaustive()
    }
}

/// A reason to distrust a structurally valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Suspicion {
    /// The sender has no member client in the group.
    #[error("sender {sender} is not a member of the group")]
    NotAMember {
        /// The senderUri.
        sender: String,
    },
    /// The message ID was already seen.
    #[error("duplicate message ID {0}")]
    DuplicateId(MessageId),
    /// A message ID (its own, `replaces` or `inReplyTo`) names an unknown hash algorithm.
    #[error("{field} uses unknown hash algorithm {alg}")]
    UnknownHashAlgorithm {
        /// `messageId`, `replaces` or `inReplyTo`.
        field: &'static str,
        /// The first octet.
        alg: u8,
    },
    /// The accepted timestamp is further in the future than the tolerated skew.
    #[error("timestamp {timestamp_ms} is {ahead_ms} ms in the future")]
    FromTheFuture {
        /// The accepted timestamp.
        timestamp_ms: u64,
        /// How far ahead of the receiver's clock.
        ahead_ms: u64,
    },
    /// The accepted timestamp predates MIMI content.
    #[error("timestamp {0} predates the MIMI content format")]
    BeforeSpec(u64),
    /// The accepted timestamp predates the room.
    #[error("timestamp {timestamp_ms} predates the room (created {room_created_ms})")]
    BeforeRoom {
        /// The accepted timestamp.
        timestamp_ms: u64,
        /// The room's creation time.
        room_created_ms: u64,
    },
    /// An absolute expiry more than a year in the past.
    #[error("absolute expiry {0} is more than a year in the past")]
    ExpiredLongAgo(u32),
    /// An expiry more than a year in the future.
    #[error("expiry is more than a year in the future")]
    ExpiresTooLate,
}

/// Runs every check and returns what looks wrong (empty = nothing suspicious).
///
/// `id` is the message's ID (computed over the received bytes) and `accepted_ms` the hub's
/// accepted timestamp.
pub fn check(
    content: &MimiContent,
    id: &MessageId,
    accepted_ms: u64,
    ctx: &ReceiverContext<'_>,
) -> Vec<Suspicion> {
    let mut out = Vec::new();
    if let (Some(is_member), Some(sender)) = (ctx.is_member, content.extensions.sender_uri())
        && !is_member(sender)
    {
        out.push(Suspicion::NotAMember {
            sender: sender.to_owned(),
        });
    }
    if (ctx.is_known_id)(id) {
        out.push(Suspicion::DuplicateId(*id));
    }
    for (field, mid) in [
        ("messageId", Some(id)),
        ("replaces", content.replaces.as_ref()),
        ("inReplyTo", content.in_reply_to.as_ref()),
    ] {
        if let Some(mid) = mid
            && mid.hash_alg() != HASH_SHA_256
        {
            out.push(Suspicion::UnknownHashAlgorithm {
                field,
                alg: mid.hash_alg(),
            });
        }
    }
    if accepted_ms > ctx.now_ms.saturating_add(ctx.max_future_skew_ms) {
        out.push(Suspicion::FromTheFuture {
            timestamp_ms: accepted_ms,
            ahead_ms: accepted_ms - ctx.now_ms,
        });
    }
    if accepted_ms < SPEC_EPOCH_MS {
        out.push(Suspicion::BeforeSpec(accepted_ms));
    }
    if let Some(created) = ctx.room_created_ms
        && accepted_ms < created
    {
        out.push(Suspicion::BeforeRoom {
            timestamp_ms: accepted_ms,
            room_created_ms: created,
        });
    }
    if let Some(e) = content.expires {
        let now_s = ctx.now_ms / 1000;
        let t = u64::from(e.time);
        if e.relative {
            if t > YEAR_SECS {
                out.push(Suspicion::ExpiresTooLate);
            }
        } else if t + YEAR_SECS < now_s {
            out.push(Suspicion::ExpiredLongAgo(e.time));
        } else if t > now_s + YEAR_SECS {
            out.push(Suspicion::ExpiresTooLate);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder;

    const A: &str = "mimi://a.example/u/alice";
    const R: &str = "mimi://a.example/r/lobby";
    const NOW: u64 = 1_800_000_000_000;

    fn ctx<'a>(known: &'a dyn Fn(&MessageId) -> bool) -> ReceiverContext<'a> {
        ReceiverContext {
            now_ms: NOW,
            max_future_skew_ms: DEFAULT_FUTURE_SKEW_MS,
            room_created_ms: Some(NOW - 1000),
            is_known_id: known,
            is_member: None,
        }
    }

    #[test]
    fn clean_message_passes() {
        let m = builder::text(A, R, [1; 16], "hi").build().unwrap();
        let none = |_: &MessageId| false;
        assert!(check(m.content(), &m.id().unwrap(), NOW, &ctx(&none)).is_empty());
    }

    #[test]
    fn each_suspicion() {
        let m = builder::text(A, R, [1; 16], "hi")
            .expires_at(1)
            .build()
            .unwrap();
        let id = m.id().unwrap();
        let all = |_: &MessageId| true;
        let member = |_: &str| false;
        let mut c = ctx(&all);
        c.is_member = Some(&member);
        let found = check(m.content(), &id, NOW + 10 * 60 * 1000, &c);
        assert!(found.contains(&Suspicion::DuplicateId(id)));
        assert!(
            found
                .iter()
                .any(|s| matches!(s, Suspicion::FromTheFuture { .. }))
        );
        assert!(
            found
                .iter()
                .any(|s| matches!(s, Suspicion::NotAMember { .. }))
        );
        assert!(found.contains(&Suspicion::ExpiredLongAgo(1)));
        let none = |_: &MessageId| false;
        let found = check(m.content(), &MessageId([2; 32]), 5, &ctx(&none));
        assert!(found.contains(&Suspicion::BeforeSpec(5)));
        assert!(
            found
                .iter()
                .any(|s| matches!(s, Suspicion::BeforeRoom { .. }))
        );
        assert!(found.contains(&Suspicion::UnknownHashAlgorithm {
            field: "messageId",
            alg: 2
        }));
        let late = builder::text(A, R, [1; 16], "x")
            .expires_after_read((YEAR_SECS + 1) as u32)
            .build()
            .unwrap();
        assert_eq!(
            check(late.content(), &late.id().unwrap(), NOW, &ctx(&none)),
            vec![Suspicion::ExpiresTooLate]
        );
    }
}
