//! MIMI → Matrix: a bridged user's deliveries become puppet posts, portal invitations,
//! kicks, puppet joins and leaves, and read receipts.

use mimi_adapters::ids::IdMap;
use mimi_adapters::{Adapter, Context, Provider};
use mimi_client::Event;
use mimi_content::MessageId;
use mimi_content::status::{MessageStatusReport, Status};
use serde_json::{Value, json};

use super::{MatrixBridge, MatrixMedia, StepError};
use crate::Change;
use crate::db::{PortalKind, PortalRow};
use crate::deliveries::Handler;
use crate::users::{Bridged, Page, UserError};

const P: Provider = Provider::Matrix;
/// Puppet memberships remembered (beyond it the memo restarts; joins are idempotent).
const MAX_MEMO: usize = 100_000;

fn user_error(e: StepError) -> UserError {
    match e {
        StepError::User(u) => u,
        // A homeserver that cannot take the post now: retry the deliveries later (the
        // deterministic transaction IDs make the retry safe).
        other if other.transient() => UserError::Status {
            what: "homeserver".into(),
            status: 503,
            body: other.to_string(),
        },
        other => UserError::Refused(other.to_string()),
    }
}

impl Handler for MatrixBridge {
    async fn handle(&self, u: &mut Bridged, page: Page) -> Result<Vec<Change>, UserError> {
        let mut extra = Vec::new();
        for ev in page.events {
            let r = match ev {
                Event::Message {
                    room,
                    sender,
                    message,
                    id,
                    ..
                } => self.relay(&room, &sender, &message, id).await,
                Event::Joined { room } => self.invited(u, &room, &mut extra).await,
                Event::Removed { room } => self.removed(u, &room).await,
                _ => Ok(()),
            };
            match r {
                Ok(()) => {}
                Err(e) if e.transient() => return Err(user_error(e)),
                Err(e) => {
                    tracing::warn!(user = %u.native, error = %e, "could not carry a MIMI event into Matrix")
                }
            }
        }
        for m in page.membership {
            let Ok(Some(room)) = self.users.db.native_room(&m.room) else {
                continue;
            };
            for added in m
                .added
                .iter()
                .filter(|a| self.users.uris.native_user(a).is_none())
            {
                if let Err(e) = self.puppet_in(added, &room).await {
                    tracing::info!(%room, user = %added, error = %e, "a puppet could not join");
                }
            }
            for gone in m
                .removed
                .iter()
                .filter(|a| self.users.uris.native_user(a).is_none())
            {
                let mxid = self.adapter.mxid_of(&self.users.uris, gone);
                self.forget_puppet(&mxid, &room);
                let _ = self.hs.leave(&room, &mxid).await;
            }
        }
        Ok(extra)
    }
}

impl MatrixBridge {
    pub(crate) fn remember_puppet(&self, mxid: &str, room: &str) {
        let mut p = self
            .puppets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if p.len() >= MAX_MEMO {
            p.clear();
        }
        p.insert((mxid.to_owned(), room.to_owned()));
    }

    pub(crate) fn forget_puppet(&self, mxid: &str, room: &str) {
        self.puppets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(mxid.to_owned(), room.to_owned()));
    }

    fn knows_puppet(&self, mxid: &str, room: &str) -> bool {
        self.puppets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&(mxid.to_owned(), room.to_owned()))
    }

    /// Registers the puppet of a MIMI user (with its display name); returns its user ID.
    pub(crate) async fn register_puppet(&self, uri: &str) -> Result<String, StepError> {
        let mxid = self.adapter.mxid_of(&self.users.uris, uri);
        if self.knows_puppet(&mxid, "") {
            return Ok(mxid);
        }
        let local = mxid
            .trim_start_matches('@')
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        self.hs.register(&local).await?;
        let _ = self.hs.set_displayname(&mxid, &crate::display(uri)).await;
        self.remember_puppet(&mxid, "");
        Ok(mxid)
    }

    /// The puppet of a MIMI user, registered and joined to `room` (invited by the bot when
    /// the room needs an invitation).
    pub(crate) async fn puppet_in(&self, uri: &str, room: &str) -> Result<String, StepError> {
        let mxid = self.register_puppet(uri).await?;
        if self.knows_puppet(&mxid, room) {
            return Ok(mxid);
        }
        if let Err(e) = self.hs.join(room, &mxid).await {
            if e.errcode().as_deref() != Some("M_FORBIDDEN") {
                return Err(e.into());
            }
            self.hs.invite(room, &mxid, &self.names.bot).await?;
            self.hs.join(room, &mxid).await?;
        }
        self.remember_puppet(&mxid, room);
        Ok(mxid)
    }

    /// Posts a MIMI message into its portal, once per room whichever bridged member received
    /// it first.
    async fn relay(
        &self,
        mimi: &str,
        sender: &str,
        message: &mimi_content::Message,
        id: MessageId,
    ) -> Result<(), StepError> {
        if matches!(self.users.uris.native_user(sender), Some((p, _)) if p == P) {
            return Ok(()); // a Matrix user's own message: it is in Matrix already
        }
        let Some(room) = self.users.db.native_room(mimi)? else {
            tracing::debug!(%mimi, "no portal for this MIMI room");
            return Ok(());
        };
        let _one = self.room_lock(&room).lock().await;
        let mut ids = IdMap::over(self.users.db.id_rows(), crate::now_s());
        if ids.native_of(P, &room, &id).is_some() || ids.version(&id).is_some() {
            return Ok(()); // posted already (by another bridged member's delivery)
        }
        let puppet = self.puppet_in(sender, &room).await?;
        let out = {
            let mut salt = mimi_adapters::random_salt;
            let mut media = MatrixMedia {
                hs: &self.hs,
                assets: &*self.host.assets,
            };
            let mut ctx = Context {
                room: mimi,
                native_room: &room,
                ids: &mut ids,
                uris: &self.users.uris,
                salt: &mut salt,
                media: Some(&mut media),
            };
            self.adapter.from_mimi(&mut ctx, sender, message)
        };
        if let Some(e) = ids.take_failure() {
            return Err(e.into());
        }
        let out = out?;
        for l in &out.lost {
            tracing::info!(%mimi, lost = %l, "not carried into Matrix");
        }
        for (i, item) in out.items.iter().enumerate() {
            // Derived from the MIMI message: a retry after a crash is deduplicated by the
            // homeserver (transaction IDs are per user).
            let txn = format!("mimi-{}-{i}", id.to_hex());
            self.post(&room, &puppet, &txn, item, &mut ids).await?;
        }
        let rows = self.users.db.id_changes(ids.take_changes());
        self.users.db.apply(&rows)?;
        Ok(())
    }

    async fn post(
        &self,
        room: &str,
        puppet: &str,
        txn: &str,
        item: &Value,
        ids: &mut IdMap,
    ) -> Result<(), StepError> {
        if let Some(report) = item["status_report"].as_str() {
            let report = hex::decode(report)
                .ok()
                .and_then(|b| MessageStatusReport::decode(&b).ok());
            for (target, status) in report.map(|r| r.statuses).unwrap_or_default() {
                if status == Status::Read
                    && let Some(event) = ids.native_of(P, room, &target)
                {
                    self.hs.read_receipt(room, &event, puppet).await?;
                }
            }
            return Ok(());
        }
        let event_id = if item["type"] == "m.room.redaction" {
            self.hs
                .redact(room, item["redacts"].as_str().unwrap_or(""), txn, puppet)
                .await?
        } else {
            self.hs
                .send(
                    room,
                    item["type"].as_str().unwrap_or("m.room.message"),
                    txn,
                    &item["content"],
                    puppet,
                )
                .await?
        };
        if let Some(t) = item["txn_id"].as_str()
            && !event_id.is_empty()
        {
            ids.alias(P, room, t, &event_id);
        }
        Ok(())
    }

    /// A bridged user joined a MIMI room (a MIMI user added them): its portal, made if
    /// needed, and an invitation.
    async fn invited(
        &self,
        u: &mut Bridged,
        mimi: &str,
        extra: &mut Vec<Change>,
    ) -> Result<(), StepError> {
        let room = match self.users.db.native_room(mimi)? {
            Some(r) => r,
            None => {
                let participants = u.member.participants(mimi);
                let others: Vec<String> = participants
                    .iter()
                    .map(|(p, _)| p.clone())
                    .filter(|p| p != u.uri())
                    .collect();
                let direct = others.len() == 1;
                let room = self
                    .hs
                    .create_room(
                        &json!({"preset": "private_chat", "is_direct": direct, "name": format!("MIMI {}", crate::display_room(mimi)), "power_level_content_override": {"redact": 0, "invite": 0}}),
                        &self.names.bot,
                    )
                    .await?;
                extra.extend(self.users.db.put_portal(
                    &room,
                    &PortalRow {
                        mimi: mimi.to_owned(),
                        kind: if direct {
                            PortalKind::Direct
                        } else {
                            PortalKind::Invited
                        },
                        peer: direct.then(|| others[0].clone()),
                    },
                ));
                // Small rooms show who is there at once; others' puppets join as they speak.
                for p in others
                    .iter()
                    .take(20)
                    .filter(|p| self.users.uris.native_user(p).is_none())
                {
                    let _ = self.puppet_in(p, &room).await;
                }
                room
            }
        };
        match self.hs.invite(&room, &u.native, &self.names.bot).await {
            Ok(()) => Ok(()),
            // Already there, or already invited.
            Err(e) if e.errcode().as_deref() == Some("M_FORBIDDEN") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A bridged user was removed from a MIMI room: the bot removes them from the portal.
    async fn removed(&self, u: &Bridged, mimi: &str) -> Result<(), StepError> {
        let Some(room) = self.users.db.native_room(mimi)? else {
            return Ok(());
        };
        match self
            .hs
            .kick(
                &room,
                &u.native,
                &self.names.bot,
                "removed from the MIMI room",
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.errcode().as_deref() == Some("M_FORBIDDEN") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
