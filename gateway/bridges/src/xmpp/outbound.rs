//! MIMI → XMPP: a bridged user's deliveries become messages in hosted rooms, mirrored MUCs
//! and direct conversations, invitations, and occupant presence.

use mimi_adapters::ids::IdMap;
use mimi_adapters::xml::Element;
use mimi_adapters::{Adapter, Context, Provider};
use mimi_client::Event;
use mimi_content::MessageId;

use super::rooms::{dm_key, room_jid};
use super::{
    NS, NS_CONFERENCE, NS_MUC, NS_MUC_USER, NS_SID, StepError, XmppBridge, XmppMedia, bare,
};
use crate::Change;
use crate::db::{PortalKind, PortalRow};
use crate::deliveries::Handler;
use crate::users::{Bridged, Page, UserError};

const P: Provider = Provider::Xmpp;

fn user_error(e: StepError) -> UserError {
    match e {
        StepError::User(u) => u,
        other if other.transient() => UserError::Status {
            what: "XMPP link".into(),
            status: 503,
            body: other.to_string(),
        },
        other => UserError::Refused(other.to_string()),
    }
}

impl Handler for XmppBridge {
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
                } => self.relay(u, &room, &sender, &message, id).await,
                Event::Joined { room } => self.invited(u, &room, &mut extra).await,
                Event::Removed { room } => self.removed(u, &room).await,
                _ => Ok(()),
            };
            match r {
                Ok(()) => {}
                Err(e) if e.transient() => return Err(user_error(e)),
                Err(e) => {
                    tracing::warn!(user = %u.native, error = %e, "could not carry a MIMI event into XMPP")
                }
            }
        }
        for m in page.membership {
            let Ok(Some(native)) = self.users.db.native_room(&m.room) else {
                continue;
            };
            let Ok(Some(portal)) = self.users.db.portal(&native) else {
                continue;
            };
            for (users, gone) in [(&m.added, false), (&m.removed, true)] {
                for x in users
                    .iter()
                    .filter(|x| self.users.uris.native_user(x).is_none())
                {
                    let r = match portal.kind {
                        PortalKind::Configured => self.mirror_presence(x, &native, gone).await,
                        PortalKind::OnDemand | PortalKind::Invited => {
                            let mut p =
                                Element::new("presence", NS).child(Element::new("x", NS_MUC_USER));
                            if gone {
                                p.set_attr("type", "unavailable");
                            }
                            self.broadcast(&native, &self.nick_of(x), &p).await
                        }
                        PortalKind::Direct => Ok(()),
                    };
                    if let Err(e) = r {
                        tracing::info!(room = %native, error = %e, "occupant presence not sent");
                    }
                }
            }
        }
        Ok(extra)
    }
}

impl XmppBridge {
    /// A puppet's presence in a mirrored MUC (joining, or leaving).
    async fn mirror_presence(&self, uri: &str, muc: &str, leave: bool) -> Result<(), StepError> {
        let jid = self.adapter.jid_of(&self.users.uris, uri);
        let nick = self.nick_of(uri);
        {
            let mut p = self
                .puppets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let key = (jid.clone(), muc.to_owned());
            if leave {
                p.0.remove(&key);
            } else if !p.0.insert(key) {
                return Ok(());
            }
            p.1.insert((muc.to_owned(), nick.clone()));
        }
        let mut pres = Element::new("presence", NS)
            .attr("from", &format!("{jid}/gw"))
            .attr("to", &format!("{muc}/{nick}"));
        if leave {
            pres.set_attr("type", "unavailable");
        } else {
            pres = pres.child(
                Element::new("x", NS_MUC)
                    .child(Element::new("history", NS_MUC).attr("maxstanzas", "0")),
            );
        }
        self.link.send(&pres).await?;
        Ok(())
    }

    async fn relay(
        &self,
        u: &Bridged,
        mimi: &str,
        sender: &str,
        message: &mimi_content::Message,
        id: MessageId,
    ) -> Result<(), StepError> {
        if matches!(self.users.uris.native_user(sender), Some((p, _)) if p == P) {
            return Ok(());
        }
        // Direct conversations are keyed per XMPP user; rooms by their JID.
        let Some(native) = self.users.db.native_room(mimi)? else {
            return Ok(());
        };
        let Some(portal) = self.users.db.portal(&native)? else {
            return Ok(());
        };
        let _one = self.room_lock(&native).lock().await;
        let mut ids = IdMap::over(self.users.db.id_rows(), crate::now_s());
        if ids.native_of(P, &native, &id).is_some() || ids.version(&id).is_some() {
            return Ok(());
        }
        let out = {
            let mut salt = mimi_adapters::random_salt;
            let mut media = XmppMedia {
                uploads: self.uploads.as_deref(),
                assets: &*self.host.assets,
            };
            let mut ctx = Context {
                room: mimi,
                native_room: &native,
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
            tracing::info!(%mimi, lost = %l, "not carried into XMPP");
        }
        for mut st in out.items {
            match portal.kind {
                PortalKind::Configured => {
                    self.mirror_presence(sender, &native, false).await?;
                    let puppet = self.adapter.jid_of(&self.users.uris, sender);
                    st.set_attr("from", &format!("{puppet}/gw"));
                    self.link.send(&st).await?;
                }
                PortalKind::OnDemand | PortalKind::Invited => {
                    let sid = st
                        .get("id")
                        .map_or_else(|| id.to_hex()[..32].to_owned(), str::to_owned);
                    st.set_attr("type", "groupchat");
                    let st = st.child(
                        Element::new("stanza-id", NS_SID)
                            .attr("id", &sid)
                            .attr("by", &native),
                    );
                    self.broadcast(&native, &self.nick_of(sender), &st).await?;
                }
                PortalKind::Direct => {
                    let puppet = self.adapter.jid_of(&self.users.uris, sender);
                    st.set_attr("type", "chat");
                    st.set_attr("from", &puppet);
                    st.set_attr("to", &u.native);
                    self.link.send(&st).await?;
                }
            }
        }
        self.users
            .db
            .apply(&self.users.db.id_changes(ids.take_changes()))?;
        Ok(())
    }

    /// A bridged user joined a MIMI room (a MIMI user added them): a direct conversation
    /// for two, otherwise a hosted room and an invitation.
    async fn invited(
        &self,
        u: &Bridged,
        mimi: &str,
        extra: &mut Vec<Change>,
    ) -> Result<(), StepError> {
        if self.users.db.native_room(mimi)?.is_some() {
            return Ok(());
        }
        let others: Vec<String> = u
            .member
            .participants(mimi)
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| p != u.uri())
            .collect();
        if let [peer] = others.as_slice() {
            let puppet = self.adapter.jid_of(&self.users.uris, peer);
            let key = dm_key(&puppet, &u.native);
            extra.extend(self.users.db.put_portal(
                &key,
                &PortalRow {
                    mimi: mimi.to_owned(),
                    kind: PortalKind::Direct,
                    peer: Some(peer.clone()),
                },
            ));
            extra.push(self.users.db.put_dm(&u.native, peer, &key));
            return Ok(());
        }
        let jid = room_jid(&self.cfg.component, mimi);
        extra.extend(self.users.db.put_portal(
            &jid,
            &PortalRow {
                mimi: mimi.to_owned(),
                kind: PortalKind::Invited,
                peer: None,
            },
        ));
        // A mediated invitation (XEP-0045 §7.8.2) and a direct one (XEP-0249).
        let mediated = Element::new("message", NS)
            .attr("from", &jid)
            .attr("to", &u.native)
            .child(
                Element::new("x", NS_MUC_USER)
                    .child(Element::new("invite", NS_MUC_USER).attr("from", &jid)),
            )
            .child(
                Element::new("x", NS_CONFERENCE)
                    .attr("jid", &jid)
                    .attr("reason", &format!("You were added to {mimi}")),
            );
        self.link.send(&mediated).await?;
        Ok(())
    }

    /// A bridged user was removed from a MIMI room: kicked from the hosted room.
    async fn removed(&self, u: &Bridged, mimi: &str) -> Result<(), StepError> {
        let Some(native) = self.users.db.native_room(mimi)? else {
            return Ok(());
        };
        let sessions: Vec<(String, String)> = self
            .hosted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(&native)
            .map(|o| {
                let mine: Vec<(String, String)> = o
                    .iter()
                    .filter(|(full, _)| bare(full) == u.native)
                    .map(|(a, b)| (a.clone(), b.clone()))
                    .collect();
                for (full, _) in &mine {
                    o.remove(full);
                }
                mine
            })
            .unwrap_or_default();
        for (full, nick) in sessions {
            let p = Element::new("presence", NS)
                .attr("from", &format!("{native}/{nick}"))
                .attr("to", &full)
                .attr("type", "unavailable")
                .child(
                    Element::new("x", NS_MUC_USER)
                        .child(
                            Element::new("item", NS_MUC_USER)
                                .attr("affiliation", "none")
                                .attr("role", "none"),
                        )
                        .child(Element::new("status", NS_MUC_USER).attr("code", "307"))
                        .child(Element::new("status", NS_MUC_USER).attr("code", "110")),
                );
            self.link.send(&p).await?;
        }
        Ok(())
    }
}
