//! A native MIMI client session over the client API: one [`Member`] (its MLS state), its
//! gateway's [`ApiClient`], its delivery cursor and its view of each room. The demo, the
//! end-to-end tests and the bridges drive users through it.

use std::collections::BTreeMap;

use mimi_client::{ClientError, Event, Member, RoomSetup};
use mimi_content::builder::Builder;
use mimi_content::timeline::Timeline;
use mimi_content::{Message, MessageId};
use mimi_proto::codec::Wire;
use mimi_proto::messages::{
    SubmitMessageResponse, SubmitOutcome, UpdateOutcome, UpdateRoomResponse,
};

use crate::api::{ApiClient, ApiError, ApiResponse};

/// A session operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The client API failed or refused.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The MLS client failed.
    #[error("MLS client: {0}")]
    Client(#[from] ClientError),
    /// The hub or the gateway answered with an error status.
    #[error("{what} answered {status}: {body}")]
    Status {
        /// What was attempted.
        what: String,
        /// HTTP status.
        status: u16,
        /// Explanation.
        body: String,
    },
    /// A body did not decode.
    #[error("{0}")]
    Protocol(String),
}

/// How the hub answered a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted (and merged locally).
    Accepted,
    /// Refused with this outcome (and discarded locally).
    Refused(UpdateOutcome),
}

/// One native client.
pub struct Session {
    /// The MLS member.
    pub member: Member,
    /// Its gateway.
    pub api: ApiClient,
    /// Last delivery sequence number processed.
    pub cursor: u64,
    /// What this client sees, per room.
    pub views: BTreeMap<String, Timeline>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("client", &self.member.client_uri())
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

fn status(what: &str, r: &ApiResponse) -> SessionError {
    SessionError::Status {
        what: what.to_owned(),
        status: r.status,
        body: r.text(),
    }
}

impl Session {
    /// Registers `user`'s `device` on the gateway whose client API is at `api` and publishes
    /// `key_packages` KeyPackages.
    ///
    /// # Errors
    /// [`SessionError`].
    pub async fn register(
        api: impl Into<crate::api::Addrs>,
        domain: &str,
        user: &str,
        device: &str,
        key_packages: usize,
    ) -> Result<Self, SessionError> {
        Self::register_with(api, None, domain, user, device, key_packages).await
    }

    /// As [`Session::register`], authorized by `token` (the admin token or a provider
    /// token) when registration is closed.
    ///
    /// # Errors
    /// [`SessionError`].
    pub async fn register_with(
        api: impl Into<crate::api::Addrs>,
        token: Option<&str>,
        domain: &str,
        user: &str,
        device: &str,
        key_packages: usize,
    ) -> Result<Self, SessionError> {
        let member = Member::new(domain, user, device);
        let mut client = match token {
            Some(t) => ApiClient::with_token(api, t),
            None => ApiClient::new(api),
        };
        client.register(user, device, user).await?;
        client
            .publish_with(
                &member.key_packages(key_packages)?,
                Some(member.last_resort_key_package()?),
            )
            .await?;
        Ok(Self {
            member,
            api: client,
            cursor: 0,
            views: BTreeMap::new(),
        })
    }

    /// Registers a new device of this session's user (device linking, authorized by this
    /// session's token) and publishes `key_packages` KeyPackages for it. The new device joins
    /// the user's rooms by external commit ([`Session::external_join`]).
    ///
    /// # Errors
    /// [`SessionError`].
    pub async fn link_device(
        &self,
        device: &str,
        key_packages: usize,
    ) -> Result<Self, SessionError> {
        let (client, reg) = self.api.link_device(device).await?;
        let member = Member::new(reg.client_uri.domain().as_str(), reg.user.name(), device);
        client
            .publish_with(
                &member.key_packages(key_packages)?,
                Some(member.last_resort_key_package()?),
            )
            .await?;
        Ok(Self {
            member,
            api: client,
            cursor: 0,
            views: BTreeMap::new(),
        })
    }

    /// The user URI.
    pub fn user(&self) -> &str {
        self.member.user()
    }

    /// Creates `room` hosted by this client's own gateway.
    ///
    /// # Errors
    /// [`SessionError`].
    pub async fn create_room(&mut self, room: &str, setup: &RoomSetup) -> Result<(), SessionError> {
        let es = self.api.external_sender().await?;
        let created = self.member.create_room(room, &es, setup)?;
        self.api
            .create_room(room, &created.group_info, &created.ratchet_tree)
            .await?;
        self.views.entry(room.to_owned()).or_default();
        Ok(())
    }

    /// KeyPackages of `user` for `room`, through the room's hub.
    ///
    /// # Errors
    /// [`SessionError`].
    pub async fn key_packages_of(
        &self,
        room: &str,
        user: &str,
    ) -> Result<Vec<Vec<u8>>, SessionError> {
        let r = self
            .api
            .key_material(user, self.member.key_material_request(user, room))
            .await?;
        if r.status != 200 {
            return Err(status(&format!("keyMaterial for {user}"), &r));
        }
        Ok(self.member.key_packages_from_response(&r.body)?)
    }

    /// Sends a HandshakeBundle to the room's hub; merges or discards the pending commit.
    ///
    /// # Errors
    /// Transport failures and non-200 answers (the pending commit is then discarded).
    pub async fn handshake(
        &mut self,
        room: &str,
        bundle: Vec<u8>,
    ) -> Result<Verdict, SessionError> {
        let r = self.api.room("update", room, bundle).await?;
        if r.status != 200 {
            let _ = self.member.commit_refused(room);
            return Err(status("update", &r));
        }
        let resp = UpdateRoomResponse::from_bytes(&r.body)
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        match resp.outcome {
            UpdateOutcome::Success { .. } => {
                // Proposals have no pending commit to merge.
                let _ = self.member.commit_accepted(room);
                Ok(Verdict::Accepted)
            }
            other => {
                let _ = self.member.commit_refused(room);
                Ok(Verdict::Refused(other))
            }
        }
    }

    /// Adds users (with their roles) in one commit.
    ///
    /// # Errors
    /// [`SessionError`].
    pub async fn add(
        &mut self,
        room: &str,
        users: &[(String, u32)],
    ) -> Result<Verdict, SessionError> {
        let mut kps = Vec::new();
        for (u, _) in users {
            kps.extend(self.key_packages_of(room, u).await?);
        }
        let bundle = self.member.add_participants(room, users, &kps)?;
        self.handshake(room, bundle).await
    }

    /// Removes users in one commit.
    ///
    /// # Errors
    /// [`SessionError`].
    pub async fn remove(&mut self, room: &str, users: &[String]) -> Result<Verdict, SessionError> {
        let bundle = self.member.remove_participants(room, users)?;
        self.handshake(room, bundle).await
    }

    /// Submits an application message; returns its ID and the hub's verdict.
    ///
    /// # Errors
    /// [`SessionError`].
    pub async fn send(
        &mut self,
        room: &str,
        build: impl FnOnce(&str, &str, [u8; 16]) -> Builder,
    ) -> Result<(MessageId, SubmitOutcome), SessionError> {
        let salt: [u8; 16] = rand::random();
        let msg = build(self.member.user(), room, salt)
            .build()
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        let id = msg
            .id()
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        Ok((id, self.send_message(room, &msg).await?))
    }

    fn view(&mut self, room: &str, sender: String, id: MessageId, msg: &Message) {
        self.views
            .entry(room.to_owned())
            .or_default()
            .apply(&sender, id, msg.content());
    }

    /// Joins `room` as a new device of an existing participant, by external commit.
    ///
    /// # Errors
    /// [`SessionError`].
    pub async fn external_join(&mut self, room: &str) -> Result<Verdict, SessionError> {
        let (req, key) = self.member.group_info_request();
        let r = self.api.room("group-info", room, req).await?;
        if r.status != 200 {
            return Err(status("groupInfo", &r));
        }
        let bundle = self.member.external_join(room, &r.body, &key)?;
        let v = self.handshake(room, bundle).await?;
        if v == Verdict::Accepted {
            self.api.subscribe(room, true).await?;
            self.views.entry(room.to_owned()).or_default();
        }
        Ok(v)
    }

    /// Joins an open room as a new participant (role `role`), by external commit.
    ///
    /// # Errors
    /// [`SessionError`].
    pub async fn open_join(&mut self, room: &str, role: u32) -> Result<Verdict, SessionError> {
        let (req, key) = self.member.group_info_request();
        let r = self.api.room("group-info", room, req).await?;
        if r.status != 200 {
            return Err(status("groupInfo", &r));
        }
        let bundle = self.member.open_join(room, &r.body, &key, role)?;
        let v = self.handshake(room, bundle).await?;
        if v == Verdict::Accepted {
            self.api.subscribe(room, true).await?;
            self.views.entry(room.to_owned()).or_default();
        }
        Ok(v)
    }

    /// Fetches, processes and acknowledges deliveries (waiting up to `wait_s` seconds for the
    /// first); returns the events.
    ///
    /// # Errors
    /// [`SessionError`].
    pub async fn sync(&mut self, wait_s: u64) -> Result<Vec<Event>, SessionError> {
        let page = self.api.events(self.cursor, 1000, wait_s).await?;
        let out = self.apply(page);
        if self.cursor > 0 {
            self.api.ack(self.cursor).await?;
        }
        Ok(out)
    }

    /// Processes a page of deliveries fetched elsewhere (a poller that does not hold the
    /// session); advances the cursor (the caller acknowledges).
    pub fn apply(&mut self, page: crate::api::Events) -> Vec<Event> {
        let mut out = Vec::new();
        for d in page.events {
            if d.seq <= self.cursor {
                continue;
            }
            self.cursor = d.seq;
            if d.kind == crate::api::DeliveryKind::Consent {
                continue;
            }
            for ev in self.member.process(&d.room, &d.body.0) {
                match &ev {
                    Event::Message {
                        room,
                        sender,
                        message,
                        id,
                        ..
                    } => {
                        let (room, sender, id, message) =
                            (room.clone(), sender.clone(), *id, message.clone());
                        self.view(&room, sender, id, &message);
                    }
                    Event::Joined { room } => {
                        self.views.entry(room.clone()).or_default();
                    }
                    _ => {}
                }
                out.push(ev);
            }
        }
        out
    }

    /// Submits an already built message (a bridge's translation).
    ///
    /// # Errors
    /// [`SessionError`].
    pub async fn send_message(
        &mut self,
        room: &str,
        msg: &Message,
    ) -> Result<SubmitOutcome, SessionError> {
        let id = msg
            .id()
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        let body = self.member.send_message(room, msg)?;
        let r = self.api.room("submit", room, body).await?;
        if r.status != 200 {
            return Err(status("submitMessage", &r));
        }
        let resp = SubmitMessageResponse::from_bytes(&r.body)
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        if matches!(resp.outcome, SubmitOutcome::Accepted { .. }) {
            self.view(room, self.member.user().to_owned(), id, msg);
        }
        Ok(resp.outcome)
    }

    /// Syncs until an event matching `pred` arrives or `timeout_s` passes; returns every event.
    ///
    /// # Errors
    /// [`SessionError`].
    pub async fn sync_until(
        &mut self,
        timeout_s: u64,
        pred: impl Fn(&Event) -> bool,
    ) -> Result<Vec<Event>, SessionError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout_s);
        let mut all = Vec::new();
        loop {
            let left = deadline
                .saturating_duration_since(std::time::Instant::now())
                .as_secs();
            let evs = self.sync(left.clamp(1, 5)).await?;
            let hit = evs.iter().any(&pred);
            all.extend(evs);
            if hit || std::time::Instant::now() >= deadline {
                return Ok(all);
            }
        }
    }
}
