//! Message status reports, draft-mahy-mimi-message-status-01 (`application/mimi-message-status`).
//!
//! `MessageStatusReport = [* [messageId: bstr .size 32, status: uint 0..255]]`, decoded with
//! the same strict deterministic-CBOR rules as MIMI content.

use crate::cbor::{Reader, Writer};
use crate::error::{DecodeError, Rule, Segment};
use crate::model::MessageId;

/// The media type of a report.
pub const MEDIA_TYPE: &str = "application/mimi-message-status";

/// The status of one message at the reporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// 0: not yet read.
    Unread,
    /// 1: a client of the reporter received it.
    Delivered,
    /// 2: the reporter read it.
    Read,
    /// 3: it expired.
    Expired,
    /// 4: it was deleted.
    Deleted,
    /// 5: the reporter hid it.
    Hidden,
    /// 6: it could not be received properly.
    Error,
    /// 7..255, kept as received.
    Unknown(u8),
}

impl Status {
    /// The wire value.
    pub fn code(self) -> u8 {
        match self {
            Self::Unread => 0,
            Self::Delivered => 1,
            Self::Read => 2,
            Self::Expired => 3,
            Self::Deleted => 4,
            Self::Hidden => 5,
            Self::Error => 6,
            Self::Unknown(n) => n,
        }
    }

    /// From the wire value.
    pub fn from_code(n: u8) -> Self {
        match n {
            0 => Self::Unread,
            1 => Self::Delivered,
            2 => Self::Read,
            3 => Self::Expired,
            4 => Self::Deleted,
            5 => Self::Hidden,
            6 => Self::Error,
            n => Self::Unknown(n),
        }
    }

    /// The draft's name, if registered.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::Unread => "unread",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Expired => "expired",
            Self::Deleted => "deleted",
            Self::Hidden => "hidden",
            Self::Error => "error",
            Self::Unknown(_) => return None,
        })
    }
}

/// A list of message-ID / status pairs for messages of one room.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageStatusReport {
    /// The reported statuses, in the sender's order.
    pub statuses: Vec<(MessageId, Status)>,
}

impl MessageStatusReport {
    /// Decodes a report strictly.
    ///
    /// # Errors
    /// [`DecodeError`] naming the entry and rule.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let (n, _) = r.array("MessageStatusReport array")?;
        let mut statuses = Vec::with_capacity(n as usize);
        for i in 0..n as usize {
            r.push(Segment::Index(i));
            let (k, at) = r.array("PerMessageStatus array")?;
            if k != 2 {
                return Err(r.err(
                    at,
                    Rule::WrongArrayLength {
                        expected: "2 (PerMessageStatus)",
                        found: k,
                    },
                ));
            }
            r.push(Segment::Field("messageId"));
            let at = r.pos();
            let raw = r.bytes("byte string")?;
            let id = MessageId::try_from(raw).map_err(|_| {
                r.err(
                    at,
                    Rule::WrongSize {
                        expected: 32,
                        found: raw.len(),
                    },
                )
            })?;
            r.pop();
            r.push(Segment::Field("status"));
            let (s, at) = r.uint("unsigned integer")?;
            let code = u8::try_from(s).map_err(|_| r.err(at, Rule::StatusOutOfRange(s)))?;
            r.pop();
            r.pop();
            statuses.push((id, Status::from_code(code)));
        }
        r.finish()?;
        Ok(Self { statuses })
    }

    /// Encodes the report deterministically.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(1 + 36 * self.statuses.len());
        w.array(self.statuses.len());
        for (id, status) in &self.statuses {
            w.array(2);
            w.bytes(&id.0);
            w.uint(u64::from(status.code()));
        }
        w.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example report of draft-mahy-mimi-message-status-01 §5.
    const EXAMPLE: &str = "84825820017ce54837404c3696e0c747b985cb172716d0ed0a3d249ca63ace7d82a096f402\
        825820015354973c2b65ca937bf1e035ae53a5ab80e947afa43d46920d4202e5cc0b2702\
        825820018d825adf9f6be00dcafc5704c4102f5022e74219d0b603e4ba7622654042af00\
        82582001e59db8173939facc2c8a4a0f0ae8d0c7a11a81239626630c9464a8d6717a0303";

    #[test]
    fn draft_example_round_trips() {
        let bytes = hex::decode(EXAMPLE).unwrap();
        let report = MessageStatusReport::decode(&bytes).unwrap();
        assert_eq!(report.statuses.len(), 4);
        assert_eq!(report.statuses[0].1, Status::Read);
        assert_eq!(report.statuses[3].1, Status::Expired);
        assert_eq!(report.encode(), bytes);
    }

    #[test]
    fn rejects_bad_reports() {
        let bytes = hex::decode(EXAMPLE).unwrap();
        assert!(matches!(
            MessageStatusReport::decode(&bytes[..bytes.len() - 1])
                .unwrap_err()
                .rule,
            Rule::Truncated { .. }
        ));
        let mut long = bytes;
        long.push(0);
        assert!(matches!(
            MessageStatusReport::decode(&long).unwrap_err().rule,
            Rule::TrailingBytes { .. }
        ));
        // A 31-byte ID.
        let e = MessageStatusReport::decode(
            &hex::decode(format!("8182581f{}00", "01".repeat(31))).unwrap(),
        )
        .unwrap_err();
        assert_eq!(
            e.rule,
            Rule::WrongSize {
                expected: 32,
                found: 31
            }
        );
        assert_eq!(e.path.to_string(), "[0].messageId");
        // Status 256.
        let e = MessageStatusReport::decode(
            &hex::decode(format!("81825820{}190100", "01".repeat(32))).unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.rule, Rule::StatusOutOfRange(256));
    }

    #[test]
    fn unknown_status_is_kept() {
        let r = MessageStatusReport {
            statuses: vec![(MessageId([1; 32]), Status::Unknown(200))],
        };
        assert_eq!(MessageStatusReport::decode(&r.encode()).unwrap(), r);
    }
}
