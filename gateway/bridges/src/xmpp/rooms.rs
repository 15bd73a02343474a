//! XMPP → MIMI: presence in hosted and mirrored rooms, groupchat and direct messages.

use mimi_adapters::ids::IdMap;
use mimi_adapters::xml::Element;
use mimi_adapters::{Adapter, Context, Provider};
use mimi_client::{RoomSetup, role};
use mimi_proto::messages::SubmitOutcome;

use super::{
    Address, BOT_NICK, NS, NS_MUC_USER, NS_SID, StepError, XmppBridge, XmppMedia, address, bare,
};
use crate::db::{PortalKind, PortalRow};
use crate::users::{Bridged, UserError, Verdict};

const P: Provider = Provider::Xmpp;

/// The native-room key of a direct conversation between an XMPP user and a MIMI user.
pub(crate) fn dm_key(puppet: &str, user: &str) -> String {
    format!("{}/{}", bare(puppet), bare(user))
}

/// The room JID of a hosted MIMI room.
pub(crate) fn room_jid(component: &str, room: &str) -> String {
    format!("{}@{component}", mimi_adapters::uris::escape(room))
}

impl XmppBridge {
    pub(crate) fn nick_of(&self, uri: &str) -> String {
        crate::display(uri)
    }

    /// An occupant presence of `nick` in hosted room `room_jid`, to `to`.
    fn occupant_presence(
        room_jid: &str,
        nick: &str,
        to: &str,
        unavailable: bool,
        own: bool,
    ) -> Element {
        let mut p = Element::new("presence", NS)
            .attr("from", &format!("{room_jid}/{nick}"))
            .attr("to", to);
        if unavailable {
            p.set_attr("type", "unavailable");
        }
        let mut x = Element::new("x", NS_MUC_USER).child(
            Element::new("item", NS_MUC_USER)
                .attr("affiliation", if unavailable { "none" } else { "member" })
                .attr("role", if unavailable { "none" } else { "participant" }),
        );
        if own {
            x = x
                .child(Element::new("status", NS_MUC_USER).attr("code", "100"))
                .child(Element::new("status", NS_MUC_USER).attr("code", "110"));
        }
        p.child(x)
    }

    /// Sends `st` to every occupant of a hosted room (from `room/nick`).
    pub(crate) async fn broadcast(
        &self,
        room_jid: &str,
        nick: &str,
        st: &Element,
    ) -> Result<(), StepError> {
        let occupants: Vec<String> = self
            .hosted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(room_jid)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        for o in occupants {
            let mut copy = st.clone();
            copy.set_attr("from", &format!("{room_jid}/{nick}"));
            copy.set_attr("to", &o);
            self.link.send(&copy).await?;
        }
        Ok(())
    }

    pub(crate) async fn presence(&self, p: &Element) -> Result<(), StepError> {
        let to = p.get("to").unwrap_or("");
        let from = p.get("from").unwrap_or("");
        match address(&self.cfg.component, to) {
            Address::Room(uri) => return self.hosted_presence(p, &uri, to, from).await,
            Address::Component | Address::Puppet(_) | Address::Unknown => {}
        }
        // A mirrored MUC telling who its occupants are.
        let Some((muc, nick)) = from.split_once('/') else {
            return Ok(());
        };
        if self.users.db.portal(muc)?.is_none() {
            return Ok(());
        }
        let jid = p
            .find("x", NS_MUC_USER)
            .and_then(|x| x.find("item", NS_MUC_USER))
            .and_then(|i| i.get("jid"))
            .map(|j| bare(j).to_owned());
        let mut occ = self
            .occupants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if p.get("type") == Some("unavailable") {
            occ.remove(&(muc.to_owned(), nick.to_owned()));
        } else if let Some(j) = jid {
            occ.insert((muc.to_owned(), nick.to_owned()), j);
        }
        Ok(())
    }

    /// Joining or leaving a room the component hosts.
    async fn hosted_presence(
        &self,
        p: &Element,
        uri: &str,
        to: &str,
        from: &str,
    ) -> Result<(), StepError> {
        let room = bare(to).to_owned();
        let Some((_, nick)) = to.split_once('/') else {
            return Ok(self
                .error_reply(
                    p,
                    "modify",
                    "jid-malformed",
                    "join with room@component/nickname",
                )
                .await?);
        };
        if p.get("type") == Some("unavailable") {
            let was = self
                .hosted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_mut(&room)
                .and_then(|o| o.remove(from));
            if let Some(nick) = was {
                self.link
                    .send(&Self::occupant_presence(&room, &nick, from, true, true))
                    .await?;
                let gone = Self::occupant_presence(&room, &nick, "", true, false);
                self.broadcast(&room, &nick, &gone).await?;
            }
            return Ok(());
        }
        if p.get("type").is_some() {
            return Ok(());
        }
        let user = bare(from).to_owned();
        let u = match self.users.get(&user).await {
            Ok(u) => u,
            Err(e @ (UserError::Denied(_) | UserError::Full(_))) => {
                return Ok(self
                    .error_reply(p, "auth", "forbidden", &e.to_string())
                    .await?);
            }
            Err(e) => return Err(e.into()),
        };
        {
            let mut g = u.lock().await;
            if !g.member.rooms().iter().any(|r| r == uri) {
                let refused = match g.open_join(uri, role::MEMBER).await {
                    Ok(Verdict::Accepted) => None,
                    Ok(Verdict::Refused(o)) => Some(format!("{uri} did not let you join: {o:?}")),
                    Err(e) if !crate::matrix::transient(&e) => {
                        Some(format!("cannot join {uri}: {e}"))
                    }
                    Err(e) => return Err(e.into()),
                };
                if let Some(why) = refused {
                    return Ok(self.error_reply(p, "auth", "not-allowed", &why).await?);
                }
            }
            if self.users.db.portal(&room)?.is_none() {
                g.commit(self.users.db.put_portal(
                    &room,
                    &PortalRow {
                        mimi: uri.to_owned(),
                        kind: PortalKind::OnDemand,
                        peer: None,
                    },
                ))?;
            }
            // Who is there: every participant, by display name.
            for (participant, _) in g.member.participants(uri) {
                if participant == g.uri() {
                    continue;
                }
                let n = self.nick_of(&participant);
                self.link
                    .send(&Self::occupant_presence(&room, &n, from, false, false))
                    .await?;
            }
        }
        let joined = Self::occupant_presence(&room, nick, "", false, false);
        self.broadcast(&room, nick, &joined).await?;
        self.hosted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(room.clone())
            .or_default()
            .insert(from.to_owned(), nick.to_owned());
        self.link
            .send(&Self::occupant_presence(&room, nick, from, false, true))
            .await?;
        Ok(())
    }

    pub(crate) async fn message(&self, m: &Element) -> Result<(), StepError> {
        let to = m.get("to").unwrap_or("");
        let from = m.get("from").unwrap_or("");
        match (address(&self.cfg.component, to), m.get("type")) {
            (Address::Room(uri), Some("groupchat")) => self.hosted_message(m, &uri, from).await,
            (Address::Puppet(peer), t) if t != Some("groupchat") && t != Some("error") => {
                self.direct_message(m, &peer, to, from).await
            }
            (Address::Component, Some("groupchat")) => self.mirror_message(m).await,
            (Address::Component, t) if t != Some("error") => self.bot_message(m, from).await,
            _ => Ok(()),
        }
    }

    /// Translates `st` (sent by `user`) and sends it to `mimi` as that user.
    async fn carry(
        &self,
        g: &mut Bridged,
        mimi: &str,
        native_room: &str,
        st: &Element,
    ) -> Result<Vec<mimi_content::MessageId>, StepError> {
        let me = g.uri().to_owned();
        let mut ids = IdMap::over(self.users.db.id_rows(), crate::now_s());
        let mut salt = mimi_adapters::random_salt;
        let mut media = XmppMedia {
            uploads: self.uploads.as_deref(),
            assets: &*self.host.assets,
        };
        let translated = {
            let mut ctx = Context {
                room: mimi,
                native_room,
                ids: &mut ids,
                uris: &self.users.uris,
                salt: &mut salt,
                media: Some(&mut media),
            };
            self.adapter.to_mimi(&mut ctx, &me, st)
        };
        if let Some(e) = ids.take_failure() {
            return Err(e.into());
        }
        let translated = translated?;
        for l in &translated.lost {
            tracing::info!(user = %g.native, lost = %l, "not carried into MIMI");
        }
        let mut extra = self.users.db.id_changes(ids.take_changes());
        let mut sent = Vec::new();
        for msg in &translated.items {
            let mut outcome = g.send(mimi, msg, std::mem::take(&mut extra)).await?;
            if matches!(outcome, SubmitOutcome::EpochTooOld { .. }) {
                crate::deliveries::catch_up(self, g, self.users.policy().key_packages).await?;
                outcome = g.send(mimi, msg, Vec::new()).await?;
            }
            tracing::debug!(user = %g.native, ?outcome, "bridged into MIMI");
            if let Ok(id) = msg.id() {
                sent.push(id);
            }
        }
        Ok(sent)
    }

    async fn with_user<T>(
        &self,
        user: &str,
        f: impl AsyncFnOnce(&mut Bridged) -> Result<T, StepError>,
    ) -> Result<Option<T>, StepError> {
        let u = match self.users.get(user).await {
            Ok(u) => u,
            Err(UserError::Denied(_) | UserError::Full(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut g = u.lock().await;
        let r = f(&mut g).await;
        if r.is_err() {
            drop(g);
            self.users.forget(user);
        }
        r.map(Some)
    }

    async fn hosted_message(&self, m: &Element, uri: &str, from: &str) -> Result<(), StepError> {
        let room = bare(m.get("to").unwrap_or("")).to_owned();
        let nick = self
            .hosted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&room)
            .and_then(|o| o.get(from).cloned());
        let Some(nick) = nick else {
            return Ok(self
                .error_reply(
                    m,
                    "modify",
                    "not-acceptable",
                    "join the room before writing in it",
                )
                .await?);
        };
        let user = bare(from).to_owned();
        let room_key = room.clone();
        let sent = self
            .with_user(&user, async |g| {
                if !g.member.rooms().iter().any(|r| r == uri) {
                    return Ok(Vec::new());
                }
                self.carry(g, uri, &room_key, m).await
            })
            .await?
            .unwrap_or_default();
        // As the MUC service: every occupant gets the message, with the room's stanza-id.
        let Some(id) = sent.first() else {
            return Ok(());
        };
        let sid = id.to_hex()[..32].to_owned();
        let mut reflected = m.clone();
        reflected.children.retain(
            |c| !matches!(c, mimi_adapters::xml::Node::Element(e) if e.name == "stanza-id"),
        );
        let reflected = reflected.child(
            Element::new("stanza-id", NS_SID)
                .attr("id", &sid)
                .attr("by", &room),
        );
        let mut ids = IdMap::over(self.users.db.id_rows(), crate::now_s());
        ids.link(P, &room, &sid, *id);
        self.users
            .db
            .apply(&self.users.db.id_changes(ids.take_changes()))?;
        self.broadcast(&room, &nick, &reflected).await
    }

    async fn direct_message(
        &self,
        m: &Element,
        peer: &str,
        to: &str,
        from: &str,
    ) -> Result<(), StepError> {
        let user = bare(from).to_owned();
        if let Err(e) = self.users.access.check(&user) {
            return Ok(self
                .error_reply(m, "auth", "forbidden", &e.to_string())
                .await?);
        }
        let key = dm_key(to, from);
        let portal = self.users.db.portal(&key)?;
        self.with_user(&user, async |g| {
            let mimi = match portal {
                Some(p) => p.mimi,
                None => match self.open_direct(g, &key, peer).await? {
                    Some(r) => r,
                    None => return Ok(()),
                },
            };
            self.carry(g, &mimi, &key, m).await.map(|_| ())
        })
        .await
        .map(|_| ())
    }

    /// A two-person MIMI room hosted here for the bridged user and `peer`.
    async fn open_direct(
        &self,
        g: &mut Bridged,
        key: &str,
        peer: &str,
    ) -> Result<Option<String>, StepError> {
        let mimi = format!(
            "mimi://{}/r/dm-{}",
            self.host.domain,
            hex::encode(rand::random::<[u8; 12]>())
        );
        let setup = RoomSetup {
            fixed_membership: true,
            initial_participants: vec![(peer.to_owned(), role::MEMBER)],
            ..RoomSetup::named(&format!("{} and {}", g.native, crate::display(peer)))
        };
        let made = async {
            g.create_room(&mimi, &setup).await?;
            g.add(&mimi, &[(peer.to_owned(), role::MEMBER)]).await
        }
        .await;
        let why = match made {
            Ok(Verdict::Accepted) => None,
            Ok(Verdict::Refused(o)) => Some(format!("{o:?}")),
            Err(e) if !crate::matrix::transient(&e) => Some(e.to_string()),
            Err(e) => return Err(e.into()),
        };
        let puppet = self.adapter.jid_of(&self.users.uris, peer);
        if let Some(why) = why {
            let notice = Element::new("message", NS)
                .attr("type", "chat")
                .attr("from", &puppet)
                .attr("to", &g.native)
                .child(
                    Element::new("body", NS).text_node(&format!("could not reach {peer}: {why}")),
                );
            self.link.send(&notice).await?;
            return Ok(None);
        }
        let mut rows = self.users.db.put_portal(
            key,
            &PortalRow {
                mimi: mimi.clone(),
                kind: PortalKind::Direct,
                peer: Some(peer.to_owned()),
            },
        );
        rows.push(self.users.db.put_dm(&g.native, peer, key));
        g.commit(rows)?;
        tracing::info!(user = %g.native, %peer, %mimi, "direct conversation opened");
        Ok(Some(mimi))
    }

    /// A groupchat message of a mirrored MUC (the bot's copy).
    async fn mirror_message(&self, m: &Element) -> Result<(), StepError> {
        let from = m.get("from").unwrap_or("");
        let Some((muc, nick)) = from.split_once('/') else {
            return Ok(());
        };
        let Some(portal) = self.users.db.portal(muc)? else {
            return Ok(());
        };
        let ours = nick == BOT_NICK
            || self
                .puppets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .1
                .contains(&(muc.to_owned(), nick.to_owned()));
        if ours {
            // The reflection of our own message: learn the room's stanza-id for it.
            let origin = m
                .find("origin-id", NS_SID)
                .and_then(|o| o.get("id"))
                .or_else(|| m.get("id"));
            let sid = m
                .elements()
                .find(|e| e.name == "stanza-id" && e.ns == NS_SID && e.get("by") == Some(muc))
                .and_then(|e| e.get("id"));
            if let (Some(o), Some(s)) = (origin, sid) {
                let mut ids = IdMap::over(self.users.db.id_rows(), crate::now_s());
                ids.alias(P, muc, o, s);
                self.users
                    .db
                    .apply(&self.users.db.id_changes(ids.take_changes()))?;
            }
            return Ok(());
        }
        let jid = self
            .occupants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(muc.to_owned(), nick.to_owned()))
            .cloned();
        let Some(jid) = jid else {
            tracing::info!(%muc, %nick, "message from an occupant whose JID is unknown; ignored");
            return Ok(());
        };
        self.with_user(&jid, async |g| {
            if !g.member.rooms().contains(&portal.mimi) {
                match g.open_join(&portal.mimi, role::MEMBER).await {
                    Ok(Verdict::Accepted) => {}
                    Ok(Verdict::Refused(o)) => {
                        tracing::info!(user = %jid, room = %portal.mimi, outcome = ?o, "not allowed to join");
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            self.carry(g, &portal.mimi, muc, m).await.map(|_| ())
        })
        .await
        .map(|_| ())
    }

    /// A chat to the component itself: bot commands.
    async fn bot_message(&self, m: &Element, from: &str) -> Result<(), StepError> {
        let body = m.find("body", NS).map(|b| b.text()).unwrap_or_default();
        if body.is_empty() {
            return Ok(());
        }
        let reply = |text: &str| {
            Element::new("message", NS)
                .attr("type", "chat")
                .attr("from", &format!("bot@{}", self.cfg.component))
                .attr("to", from)
                .child(Element::new("body", NS).text_node(text))
        };
        use crate::matrix::protocol::Command;
        let c = crate::matrix::protocol::command(&body).unwrap_or(Command::Help);
        let text = match c {
            Command::Join(uri) => {
                let jid = room_jid(&self.cfg.component, &uri);
                let invite = Element::new("message", NS)
                    .attr("from", &jid)
                    .attr("to", from)
                    .child(Element::new("x", super::NS_CONFERENCE).attr("jid", &jid));
                self.link.send(&invite).await?;
                format!("Join {jid} to enter {uri}.")
            }
            Command::Dm(uri) => format!(
                "Write to {} to talk with {uri}.",
                self.adapter.jid_of(&self.users.uris, &uri)
            ),
            Command::Help | Command::Unknown(_) => format!(
                "MIMI bridge: write to <escaped user URI>@{c} for a direct conversation, join <escaped room URI>@{c} for a room, or send '!mimi join <room URI>' / '!mimi dm <user URI>' here.",
                c = self.cfg.component
            ),
        };
        Ok(self.link.send(&reply(&text)).await?)
    }
}
