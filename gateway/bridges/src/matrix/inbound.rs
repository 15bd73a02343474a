//! Matrix → MIMI: the events of a transaction, the alias and user queries, bot commands,
//! receipts, and the portals they make.

use std::sync::Arc;

use mimi_adapters::ids::IdMap;
use mimi_adapters::{Adapter, Context, Provider};
use mimi_client::{RoomSetup, role};
use mimi_content::builder::Builder;
use mimi_content::status::{MEDIA_TYPE as STATUS, MessageStatusReport, Status};
use mimi_content::{Disposition, NestedPart, PartBody, SinglePart};
use mimi_proto::messages::SubmitOutcome;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::protocol::{Action, Command, HELP};
use super::{HsError, MatrixBridge, MatrixMedia, StepError};
use crate::db::{PortalKind, PortalRow};
use crate::users::{Bridged, UserError, Verdict};

const P: Provider = Provider::Matrix;

impl MatrixBridge {
    /// One room event of a transaction.
    pub(crate) async fn event(&self, ev: &Value) -> Result<(), StepError> {
        match super::protocol::classify(&self.names, ev) {
            Action::Ignore => Ok(()),
            Action::BotInvite { room } => {
                self.hs.join(&room, &self.names.bot).await?;
                Ok(())
            }
            Action::DirectInvite {
                user,
                room,
                peer,
                puppet,
            } => self.direct_invite(&user, &room, &peer, &puppet).await,
            Action::Joined { user, room } => self.joined(&user, &room).await,
            Action::Left { user, room } => self.left(&user, &room).await,
            Action::Kicked {
                by,
                user,
                room,
                ban,
            } => self.kicked(&by, &user, &room, ban).await,
            Action::Command {
                user,
                room,
                command,
            } => self.command(&user, &room, command).await,
            Action::Content { user, room } => self.content(&user, &room, ev).await,
        }
    }

    /// Posts a notice into `room` as `by` (the bot, or a puppet in a direct conversation).
    pub(crate) async fn notice(&self, room: &str, by: &str, text: &str) {
        let txn = format!("n{:016x}", rand::random::<u64>());
        if let Err(e) = self
            .hs
            .send(
                room,
                "m.room.message",
                &txn,
                &json!({"msgtype": "m.notice", "body": text}),
                by,
            )
            .await
        {
            tracing::info!(%room, error = %e, "bridge: could not post a notice");
        }
    }

    /// Who speaks for the bridge in `room`: the bot, or in a direct conversation the puppet.
    async fn speaker(&self, room: &str) -> String {
        if let Ok(Some(PortalRow {
            kind: PortalKind::Direct,
            peer: Some(peer),
            ..
        })) = self.users.db.portal(room)
        {
            return self.adapter.mxid_of(&self.users.uris, &peer);
        }
        self.names.bot.clone()
    }

    /// The bridged user for `user`, provisioned on first use; a refusal is told in `room`.
    async fn user_for(
        &self,
        user: &str,
        room: &str,
    ) -> Result<Option<Arc<Mutex<Bridged>>>, StepError> {
        match self.users.get(user).await {
            Ok(u) => Ok(Some(u)),
            Err(e @ (UserError::Denied(_) | UserError::Full(_))) => {
                let by = self.speaker(room).await;
                self.notice(room, &by, &format!("{user}: {e}")).await;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Makes the bridged user a participant of the portal's MIMI room when it may join.
    async fn ensure_member(
        &self,
        g: &mut Bridged,
        portal: &PortalRow,
        room: &str,
    ) -> Result<bool, StepError> {
        if g.member.rooms().contains(&portal.mimi) {
            return Ok(true);
        }
        let by = self.speaker(room).await;
        if matches!(portal.kind, PortalKind::Direct | PortalKind::Invited) {
            self.notice(
                room,
                &by,
                &format!("{}: you are not a participant of {}", g.native, portal.mimi),
            )
            .await;
            return Ok(false);
        }
        match g.open_join(&portal.mimi, role::MEMBER).await {
            Ok(Verdict::Accepted) => Ok(true),
            Ok(Verdict::Refused(o)) => {
                self.notice(
                    room,
                    &by,
                    &format!("{}: {} did not let you join: {o:?}", g.native, portal.mimi),
                )
                .await;
                Ok(false)
            }
            Err(e) if !super::transient(&e) => {
                self.notice(
                    room,
                    &by,
                    &format!("{}: cannot join {}: {e}", g.native, portal.mimi),
                )
                .await;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn content(&self, user: &str, room: &str, ev: &Value) -> Result<(), StepError> {
        let db = &self.users.db;
        let Some(portal) = db.portal(room)? else {
            return Ok(());
        };
        let event_id = ev["event_id"].as_str().unwrap_or("");
        let seen = IdMap::over(db.id_rows(), crate::now_s());
        if !event_id.is_empty() && seen.mimi_of(P, room, event_id).is_some() {
            // Bridged already (a retried transaction); finish a submission left pending.
            if let Some(u) = self.users.existing(user)? {
                u.lock().await.resubmit().await?;
            }
            return Ok(());
        }
        let Some(u) = self.user_for(user, room).await? else {
            return Ok(());
        };
        let mut g = u.lock().await;
        let r = self.content_as(&mut g, &portal, room, ev).await;
        if r.is_err() {
            drop(g);
            self.users.forget(user);
        }
        r
    }

    async fn content_as(
        &self,
        g: &mut Bridged,
        portal: &PortalRow,
        room: &str,
        ev: &Value,
    ) -> Result<(), StepError> {
        if !self.ensure_member(g, portal, room).await? {
            return Ok(());
        }
        let me = g.uri().to_owned();
        let mut ids = IdMap::over(self.users.db.id_rows(), crate::now_s());
        let mut salt = mimi_adapters::random_salt;
        let mut media = MatrixMedia {
            hs: &self.hs,
            assets: &*self.host.assets,
        };
        let translated = {
            let mut ctx = Context {
                room: &portal.mimi,
                native_room: room,
                ids: &mut ids,
                uris: &self.users.uris,
                salt: &mut salt,
                media: Some(&mut media),
            };
            self.adapter.to_mimi(&mut ctx, &me, ev)
        };
        if let Some(e) = ids.take_failure() {
            return Err(e.into());
        }
        let translated = translated?;
        for l in &translated.lost {
            tracing::info!(user = %g.native, lost = %l, "not carried into MIMI");
        }
        let mut extra = self.users.db.id_changes(ids.take_changes());
        for m in &translated.items {
            let mut outcome = g.send(&portal.mimi, m, std::mem::take(&mut extra)).await?;
            if matches!(outcome, SubmitOutcome::EpochTooOld { .. }) {
                // A commit is waiting in the user's deliveries: take it, then send again.
                crate::deliveries::catch_up(self, g, self.users.policy().key_packages).await?;
                outcome = g.send(&portal.mimi, m, Vec::new()).await?;
            }
            tracing::debug!(user = %g.native, ?outcome, "bridged into MIMI");
        }
        if !extra.is_empty() {
            g.commit(extra)?;
        }
        Ok(())
    }

    async fn joined(&self, user: &str, room: &str) -> Result<(), StepError> {
        let Some(portal) = self.users.db.portal(room)? else {
            return Ok(());
        };
        let Some(u) = self.user_for(user, room).await? else {
            return Ok(());
        };
        let mut g = u.lock().await;
        self.ensure_member(&mut g, &portal, room).await.map(|_| ())
    }

    async fn left(&self, user: &str, room: &str) -> Result<(), StepError> {
        let Some(portal) = self.users.db.portal(room)? else {
            return Ok(());
        };
        let Some(u) = self.users.existing(user)? else {
            return Ok(());
        };
        let mut g = u.lock().await;
        if !g.member.rooms().contains(&portal.mimi) {
            return Ok(());
        }
        match g.leave(&portal.mimi).await {
            Ok(Verdict::Accepted) => Ok(()),
            Ok(Verdict::Refused(o)) => {
                let by = self.speaker(room).await;
                self.notice(
                    room,
                    &by,
                    &format!("{user} left here but stays in {}: {o:?}", portal.mimi),
                )
                .await;
                Ok(())
            }
            Err(e) if !super::transient(&e) => {
                tracing::info!(%user, error = %e, "bridge: leaving the MIMI room failed");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn kicked(&self, by: &str, user: &str, room: &str, ban: bool) -> Result<(), StepError> {
        let Some(portal) = self.users.db.portal(room)? else {
            return Ok(());
        };
        let puppet = self.names.puppet_uri(user);
        let target = match &puppet {
            Some(uri) => uri.clone(),
            None if self.users.db.user(user)?.is_some() => self.users.uri_of(user),
            None => return Ok(()),
        };
        let Some(k) = self.user_for(by, room).await? else {
            return Ok(());
        };
        let mut g = k.lock().await;
        if !g.member.rooms().contains(&portal.mimi) {
            return Ok(());
        }
        let r = if ban {
            g.set_role(&portal.mimi, &target, role::BANNED).await
        } else {
            g.remove(&portal.mimi, std::slice::from_ref(&target)).await
        };
        let why = match r {
            Ok(Verdict::Accepted) => return Ok(()),
            Ok(Verdict::Refused(o)) => format!("{o:?}"),
            Err(e) if !super::transient(&e) => e.to_string(),
            Err(e) => return Err(e.into()),
        };
        drop(g);
        let speaker = self.speaker(room).await;
        self.notice(
            room,
            &speaker,
            &format!("{by}: {} refused to remove {target}: {why}", portal.mimi),
        )
        .await;
        // The MIMI room still has them: a puppet comes back.
        if let Some(uri) = puppet
            && !ban
        {
            let mxid = self.adapter.mxid_of(&self.users.uris, &uri);
            self.forget_puppet(&mxid, room);
            let _ = self.hs.invite(room, &mxid, &self.names.bot).await;
            let _ = self.puppet_in(&uri, room).await;
        }
        Ok(())
    }

    async fn command(&self, user: &str, room: &str, c: Command) -> Result<(), StepError> {
        let by = self.names.bot.clone();
        match c {
            Command::Help | Command::Unknown(_) => {
                self.notice(room, &by, HELP).await;
                Ok(())
            }
            Command::Join(uri) => {
                if let Err(e) = self.users.access.check(user) {
                    self.notice(room, &by, &e.to_string()).await;
                    return Ok(());
                }
                let portal = self.on_demand_portal(&uri).await?;
                match self.hs.invite(&portal, user, &by).await {
                    Ok(()) => {}
                    Err(e) if e.errcode().as_deref() == Some("M_FORBIDDEN") => {}
                    Err(e) => return Err(e.into()),
                }
                let alias = format!("#{}:{}", self.names.alias_local(&uri), self.names.server);
                self.notice(
                    room,
                    &by,
                    &format!("Invited you to {alias}, the portal of {uri}."),
                )
                .await;
                Ok(())
            }
            Command::Dm(peer) => {
                let Some(u) = self.user_for(user, room).await? else {
                    return Ok(());
                };
                if let Some(existing) = self.users.db.dm(user, &peer)? {
                    let _ = self
                        .hs
                        .invite(
                            &existing,
                            user,
                            &self.adapter.mxid_of(&self.users.uris, &peer),
                        )
                        .await;
                    self.notice(
                        room,
                        &by,
                        &format!("Invited you to your conversation with {peer}."),
                    )
                    .await;
                    return Ok(());
                }
                let puppet = self.register_puppet(&peer).await?;
                let native = self
                    .hs
                    .create_room(
                        &json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [user]}),
                        &puppet,
                    )
                    .await?;
                self.open_direct(&u, user, &native, &peer, &puppet).await
            }
        }
    }

    async fn direct_invite(
        &self,
        user: &str,
        room: &str,
        peer: &str,
        puppet: &str,
    ) -> Result<(), StepError> {
        self.register_puppet(peer).await?;
        self.hs.join(room, puppet).await?;
        self.remember_puppet(puppet, room);
        if self.users.db.portal(room)?.is_some() {
            return Ok(());
        }
        let Some(u) = self.user_for(user, room).await? else {
            let _ = self.hs.leave(room, puppet).await;
            return Ok(());
        };
        self.open_direct(&u, user, room, peer, puppet).await
    }

    /// A two-person MIMI room hosted here for `user` and `peer`, behind `room`.
    async fn open_direct(
        &self,
        u: &Arc<Mutex<Bridged>>,
        user: &str,
        room: &str,
        peer: &str,
        puppet: &str,
    ) -> Result<(), StepError> {
        let mut g = u.lock().await;
        let mimi = format!(
            "mimi://{}/r/dm-{}",
            self.host.domain,
            hex::encode(rand::random::<[u8; 12]>())
        );
        let setup = RoomSetup {
            fixed_membership: true,
            initial_participants: vec![(peer.to_owned(), role::MEMBER)],
            ..RoomSetup::named(&format!("{} and {}", user, crate::display(peer)))
        };
        let made = async {
            g.create_room(&mimi, &setup).await?;
            g.add(&mimi, &[(peer.to_owned(), role::MEMBER)]).await
        }
        .await;
        match made {
            Ok(Verdict::Accepted) => {}
            Ok(Verdict::Refused(o)) => {
                self.notice(
                    room,
                    puppet,
                    &format!("could not start a conversation with {peer}: {o:?}"),
                )
                .await;
                return Ok(());
            }
            Err(e) if !super::transient(&e) => {
                self.notice(room, puppet, &format!("could not reach {peer}: {e}"))
                    .await;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        let mut rows = self.users.db.put_portal(
            room,
            &PortalRow {
                mimi: mimi.clone(),
                kind: PortalKind::Direct,
                peer: Some(peer.to_owned()),
            },
        );
        rows.push(self.users.db.put_dm(user, peer, room));
        g.commit(rows)?;
        tracing::info!(%user, %peer, %mimi, "direct conversation opened");
        Ok(())
    }

    /// Answers the homeserver's alias query: a portal for a MIMI room alias.
    pub(crate) async fn alias_query(&self, alias: &str) -> Result<bool, StepError> {
        let Some(uri) = self.names.alias_room(alias) else {
            return Ok(false);
        };
        self.on_demand_portal(&uri).await?;
        Ok(true)
    }

    /// Answers the homeserver's user query: a MIMI user's puppet exists once asked for.
    pub(crate) async fn user_query(&self, mxid: &str) -> Result<bool, StepError> {
        let Some(uri) = self.names.puppet_uri(mxid) else {
            return Ok(false);
        };
        self.register_puppet(&uri).await?;
        Ok(true)
    }

    /// The portal of `uri` reached by alias, created (public, by the bot) if missing.
    pub(crate) async fn on_demand_portal(&self, uri: &str) -> Result<String, StepError> {
        if let Some(r) = self.users.db.native_room(uri)? {
            return Ok(r);
        }
        let local = self.names.alias_local(uri);
        let alias = format!("#{local}:{}", self.names.server);
        let id = match self
            .hs
            .create_room(
                &json!({"room_alias_name": local, "preset": "public_chat", "name": format!("MIMI {}", crate::display_room(uri)), "power_level_content_override": {"redact": 0, "invite": 0}}),
                &self.names.bot,
            )
            .await
        {
            Ok(id) => id,
            Err(e) if e.errcode().as_deref() == Some("M_ROOM_IN_USE") => self
                .hs
                .resolve_alias(&alias)
                .await?
                .ok_or_else(|| HsError::Unexpected {
                    call: "alias".into(),
                    detail: format!("{alias} is taken but resolves to nothing"),
                })?,
            Err(e) => return Err(e.into()),
        };
        self.users.db.apply(&self.users.db.put_portal(
            &id,
            &PortalRow {
                mimi: uri.to_owned(),
                kind: PortalKind::OnDemand,
                peer: None,
            },
        ))?;
        tracing::info!(%uri, room = %id, "portal opened on demand");
        Ok(id)
    }

    /// A portal under a configured alias.
    pub(crate) async fn configured_portal(
        &self,
        mimi: &str,
        alias: &str,
    ) -> Result<String, StepError> {
        let full = format!("#{alias}:{}", self.names.server);
        let id = match self.hs.resolve_alias(&full).await? {
            Some(id) => {
                let _ = self.hs.join(&id, &self.names.bot).await;
                id
            }
            None => {
                self.hs
                    .create_room(
                        &json!({"room_alias_name": alias, "preset": "public_chat", "name": format!("MIMI {alias}"), "power_level_content_override": {"redact": 0}}),
                        &self.names.bot,
                    )
                    .await?
            }
        };
        self.users.db.apply(&self.users.db.put_portal(
            &id,
            &PortalRow {
                mimi: mimi.to_owned(),
                kind: PortalKind::Configured,
                peer: None,
            },
        ))?;
        Ok(id)
    }

    /// A read receipt of a bridged user: a MIMI message-status report.
    pub(crate) async fn receipt(
        &self,
        room: &str,
        event: &str,
        user: &str,
    ) -> Result<(), StepError> {
        if self.names.is_ours(user) {
            return Ok(());
        }
        let Some(portal) = self.users.db.portal(room)? else {
            return Ok(());
        };
        let ids = IdMap::over(self.users.db.id_rows(), crate::now_s());
        let Some(id) = ids.mimi_of(P, room, event) else {
            return Ok(());
        };
        let Some(u) = self.users.existing(user)? else {
            return Ok(());
        };
        let mut g = u.lock().await;
        if !g.member.rooms().contains(&portal.mimi) {
            return Ok(());
        }
        let report = MessageStatusReport {
            statuses: vec![(id, Status::Read)],
        };
        let part = NestedPart::new(
            Disposition::Unspecified,
            PartBody::Single(SinglePart {
                content_type: STATUS.into(),
                content: report.encode(),
            }),
        );
        let msg = Builder::new(g.uri(), &portal.mimi, mimi_adapters::random_salt(), part)
            .build()
            .map_err(|e| mimi_adapters::AdapterError::Mimi(e.to_string()))?;
        let mimi = portal.mimi.clone();
        g.send(&mimi, &msg, Vec::new()).await?;
        Ok(())
    }
}
