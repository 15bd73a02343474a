//! `/reportAbuse`: a report about messages of a hosted room, each carrying the frank this hub
//! issued, so the report proves what was said, by whom, when. Reports without evidence are
//! refused; each room keeps a bounded number of reports and a bounded size per report.

use bytes::Bytes;
use mimi_proto::codec::{Uri, Wire};
use mimi_proto::franking::{ServerFrankingContext, franking_tag, hub_recognises, verify_frank};
use mimi_proto::messages::AbuseReport;
use mimi_proto::uri::{RoomUri, UserUri};
use openmls_traits::crypto::OpenMlsCrypto;

use super::Caller;
use crate::store::rows::AbuseRow;
use crate::store::{Table, keys};
use crate::{Engine, Refusal, RequestId, Response};

impl<C: OpenMlsCrypto> Engine<C> {
    pub(crate) fn hub_report_abuse(
        &mut self,
        id: RequestId,
        caller: &Caller,
        room: &RoomUri,
        body: &Bytes,
    ) {
        if body.len() > self.cfg.limits.abuse_report_bytes {
            return self.refuse(
                id,
                Refusal::TooMany {
                    what: "an abuse report's bytes",
                    max: self.cfg.limits.abuse_report_bytes as u64,
                },
            );
        }
        let report = match AbuseReport::from_bytes(body) {
            Ok(r) => r,
            Err(e) => return self.refuse(id, Refusal::malformed("AbuseReport", e)),
        };
        if !report.reporting_user.as_str().is_empty() {
            let user: UserUri = match (&report.reporting_user).try_into() {
                Ok(u) => u,
                Err(e) => return self.refuse(id, Refusal::uri("reportingUser", e)),
            };
            if !caller.speaks_for(&user) {
                return self.refuse(id, caller.not_yours(user.as_str(), "report"));
            }
        }
        if report.messages.is_empty() {
            return self.refuse(
                id,
                Refusal::Invalid(
                    "an abuse report must carry at least one franked message as evidence".into(),
                ),
            );
        }
        if let Err(r) = self.check_evidence(room, &report) {
            return self.refuse(id, r);
        }
        let rk = room.as_str().as_bytes();
        let next = match self.store.last(Table::Abuse, &keys::prefix(&[rk])) {
            Ok(last) => last
                .and_then(|(k, _)| keys::seq_of(&k))
                .map_or(1, |n| n + 1),
            Err(e) => return self.store_failed(Some(id), e),
        };
        // Reports of this room already in this step's batch count too.
        let in_batch = self
            .writes
            .writes
            .iter()
            .filter(|w| matches!(w, crate::store::Write::Put { table: Table::Abuse, key, .. } if key.starts_with(&keys::prefix(&[rk]))))
            .count() as u64;
        let n = next + in_batch;
        if n > self.cfg.limits.abuse_reports_per_room {
            return self.refuse(
                id,
                Refusal::Quota {
                    what: format!(
                        "{room} already holds {} abuse reports, the most this hub keeps",
                        self.cfg.limits.abuse_reports_per_room
                    ),
                    retry_after_s: 3600,
                },
            );
        }
        self.writes.put(
            Table::Abuse,
            keys::with_seq(&[rk], n),
            &AbuseRow {
                reporter: caller.label(),
                report: body.to_vec(),
                received_ms: self.now_ms,
            },
        );
        self.respond(id, Response::empty(201));
    }

    /// Every reported message is MIMI content of this room with a frank this hub issued.
    fn check_evidence(&self, room: &RoomUri, report: &AbuseReport) -> Result<(), Refusal> {
        for (i, m) in report.messages.iter().enumerate() {
            let content = mimi_content::Message::decode(m.message_content.0.clone())
                .map_err(|e| Refusal::Invalid(format!("message {i} is not MIMI content: {e}")))?;
            let ext = &content.content().extensions;
            let (Some(sender), Some(room_uri)) = (ext.sender_uri(), ext.room_uri()) else {
                return Err(Refusal::Invalid(format!(
                    "message {i} lacks senderUri or roomUri"
                )));
            };
            if room_uri != room.as_str() {
                return Err(Refusal::Invalid(format!(
                    "message {i} is from room {room_uri}, not {room}"
                )));
            }
            let tag = franking_tag(&content.content().salt, &m.message_content.0);
            let ctx = ServerFrankingContext {
                sender_uri: Uri::from(sender),
                room_uri: Uri::from(room),
                accepted_timestamp: m.accepted_timestamp,
            };
            let ok = hub_recognises(&self.cfg.franking_key, &tag, &ctx, &m.frank)
                && verify_frank(&self.crypto, self.cfg.hub_signer.public(), &m.frank, &ctx).is_ok();
            if !ok {
                return Err(Refusal::Invalid(format!(
                    "message {i}: the frank was not issued by this hub for that content"
                )));
            }
        }
        Ok(())
    }
}
