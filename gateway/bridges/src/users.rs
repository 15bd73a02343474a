//! Bridged users: provisioned on first use (subject to the bridge's access rules and user
//! cap), their MLS state loaded on demand into a bounded cache, every change committed to the
//! store before anything leaves.
//!
//! A bridged user is a MIMI client `<mx-…|xm-…>/bridge-<hex>` of this gateway. Its MLS member
//! keeps its openmls state in change-tracked rows ([`mimi_client::Member::take_changes`]):
//! [`Bridged::commit`] writes exactly what changed, with the user row (cursor) and whatever
//! the caller adds (ID map rows, portals), in one transaction. A message is encrypted,
//! committed together with a pending-submission row holding its exact bytes, then submitted;
//! the row is deleted once the hub answered. After a crash the pending rows are submitted
//! again (the same bytes: receivers' MLS state refuses a second copy).

use std::collections::HashMap;
use std::sync::Arc;

use mimi_adapters::{Provider, UriScheme};
use mimi_client::{Event, Member, RoomSetup};
use mimi_content::Message;
use mimi_proto::codec::Wire;
use mimi_proto::messages::{
    SubmitMessageResponse, SubmitOutcome, UpdateOutcome, UpdateRoomResponse,
};
use mimi_session::{ApiClient, ApiError};
use tokio::sync::Mutex;

use crate::access::{Access, Denied};
use crate::config::UserPolicy;
use crate::db::{Db, UserRow};
use crate::{Change, Host, StoreError};

/// Why a bridged user's operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// The user may not use the bridge.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The bridge serves its maximum number of users.
    #[error("this bridge serves {0} users already (bridge policy max_users)")]
    Full(usize),
    /// The store failed: nothing was sent.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The client API failed or refused.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The MLS member failed.
    #[error("MLS: {0}")]
    Client(#[from] mimi_client::ClientError),
    /// The hub answered with an error status.
    #[error("{what} answered {status}: {body}")]
    Status {
        /// What was attempted.
        what: String,
        /// The status.
        status: u16,
        /// Its explanation.
        body: String,
    },
    /// The hub refused a room change (policy).
    #[error("the room refused: {0}")]
    Refused(String),
}

/// How the hub answered a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted and merged.
    Accepted,
    /// Refused (and discarded locally), with the hub's outcome.
    Refused(UpdateOutcome),
}

/// Participants that joined or left a room during one page of deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// The MIMI room.
    pub room: String,
    /// Users added.
    pub added: Vec<String>,
    /// Users removed (or banned).
    pub removed: Vec<String>,
}

/// What one page of deliveries made of a bridged user's rooms.
#[derive(Debug, Default)]
pub struct Page {
    /// The MLS member's events.
    pub events: Vec<Event>,
    /// Participant changes per room.
    pub membership: Vec<Membership>,
    /// More deliveries are waiting.
    pub more: bool,
}

/// One bridged user, loaded.
pub struct Bridged {
    /// The native identity (`@bob:matrix.test`, `carol@xmpp.test`).
    pub native: String,
    /// Its row.
    pub row: UserRow,
    /// The MLS member acting for it.
    pub member: Member,
    /// Its client API.
    pub api: ApiClient,
    db: Db,
}

impl std::fmt::Debug for Bridged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridged")
            .field("native", &self.native)
            .field("cursor", &self.row.cursor)
            .finish_non_exhaustive()
    }
}

fn status(what: &str, r: &mimi_session::ApiResponse) -> UserError {
    UserError::Status {
        what: what.to_owned(),
        status: r.status,
        body: r.text(),
    }
}

impl Bridged {
    /// The MIMI user URI.
    pub fn uri(&self) -> &str {
        self.member.user()
    }

    /// Commits what the member changed, the user row and `extra`, in one transaction.
    ///
    /// # Errors
    /// [`UserError::Store`]: nothing was written (the caller drops this loaded state).
    pub fn commit(&mut self, extra: Vec<Change>) -> Result<(), UserError> {
        let mut changes = self
            .db
            .member_changes(&self.native, self.member.take_changes());
        changes.push(self.db.put_user(&self.native, &self.row));
        changes.extend(extra);
        self.db.apply(&changes)?;
        Ok(())
    }

    /// Sends `msg` to `room`'s hub: encrypted, committed with `extra` and a pending row, then
    /// submitted.
    ///
    /// # Errors
    /// [`UserError`]; after a store failure nothing left, after a transport failure the
    /// pending row is submitted again later ([`Bridged::resubmit`]).
    pub async fn send(
        &mut self,
        room: &str,
        msg: &Message,
        extra: Vec<Change>,
    ) -> Result<SubmitOutcome, UserError> {
        let id = msg
            .id()
            .map_err(|e| mimi_client::ClientError::Invalid(e.to_string()))?;
        let body = self.member.send_message(room, msg)?;
        let pending = self.db.pending_key(&self.native, room, id.as_bytes());
        let mut extra = extra;
        extra.push((pending.clone(), Some(body.clone())));
        self.commit(extra)?;
        let r = self.api.room("submit", room, body).await?;
        self.db.apply(&[(pending, None)])?;
        if r.status != 200 {
            return Err(status("submitMessage", &r));
        }
        let resp = SubmitMessageResponse::from_bytes(&r.body)
            .map_err(|e| mimi_client::ClientError::Protocol(e.to_string()))?;
        Ok(resp.outcome)
    }

    /// Submits the messages committed but not answered before (a crash or a lost link).
    ///
    /// # Errors
    /// Storage failures; transport failures leave the rows for the next attempt.
    pub async fn resubmit(&mut self) -> Result<usize, UserError> {
        let mut n = 0;
        for (key, room, body) in self.db.pending(&self.native)? {
            match self.api.room("submit", &room, body).await {
                Ok(r) => {
                    if r.status != 200 {
                        tracing::warn!(user = %self.native, %room, status = r.status, "a pending message was refused by the hub");
                    }
                    self.db.apply(&[(key, None)])?;
                    n += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(n)
    }

    /// Sends a HandshakeBundle (the pending commit committed first); merges or discards it.
    ///
    /// # Errors
    /// [`UserError`].
    pub async fn handshake(&mut self, room: &str, bundle: Vec<u8>) -> Result<Verdict, UserError> {
        self.commit(Vec::new())?;
        let r = self.api.room("update", room, bundle).await?;
        if r.status != 200 {
            let _ = self.member.commit_refused(room);
            self.commit(Vec::new())?;
            return Err(status("update", &r));
        }
        let resp = UpdateRoomResponse::from_bytes(&r.body)
            .map_err(|e| mimi_client::ClientError::Protocol(e.to_string()))?;
        let v = match resp.outcome {
            UpdateOutcome::Success { .. } => {
                let _ = self.member.commit_accepted(room);
                Verdict::Accepted
            }
            other => {
                let _ = self.member.commit_refused(room);
                Verdict::Refused(other)
            }
        };
        self.commit(Vec::new())?;
        Ok(v)
    }

    /// Creates `room` on this gateway (this user its admin).
    ///
    /// # Errors
    /// [`UserError`].
    pub async fn create_room(&mut self, room: &str, setup: &RoomSetup) -> Result<(), UserError> {
        let es = self.api.external_sender().await?;
        let created = self.member.create_room(room, &es, setup)?;
        self.commit(Vec::new())?;
        self.api
            .create_room(room, &created.group_info, &created.ratchet_tree)
            .await?;
        Ok(())
    }

    /// Adds MIMI users (KeyPackages claimed through the room's hub).
    ///
    /// # Errors
    /// [`UserError`].
    pub async fn add(&mut self, room: &str, users: &[(String, u32)]) -> Result<Verdict, UserError> {
        let mut kps = Vec::new();
        for (u, _) in users {
            let r = self
                .api
                .key_material(u, self.member.key_material_request(u, room))
                .await?;
            if r.status != 200 {
                return Err(status(&format!("keyMaterial for {u}"), &r));
            }
            kps.extend(self.member.key_packages_from_response(&r.body)?);
        }
        let listed: Vec<(String, u32)> = users
            .iter()
            .filter(|(u, _)| !self.member.participants(room).iter().any(|(p, _)| p == u))
            .cloned()
            .collect();
        let bundle = self.member.add_participants(room, &listed, &kps)?;
        self.handshake(room, bundle).await
    }

    /// Removes users (and all their clients).
    ///
    /// # Errors
    /// [`UserError`].
    pub async fn remove(&mut self, room: &str, users: &[String]) -> Result<Verdict, UserError> {
        let bundle = self.member.remove_participants(room, users)?;
        self.handshake(room, bundle).await
    }

    /// Changes a participant's role (a ban is the banned role).
    ///
    /// # Errors
    /// [`UserError`].
    pub async fn set_role(
        &mut self,
        room: &str,
        user: &str,
        role: u32,
    ) -> Result<Verdict, UserError> {
        let bundle = self.member.change_role(room, user, role)?;
        self.handshake(room, bundle).await
    }

    /// Leaves `room` (a proposal the next commit applies).
    ///
    /// # Errors
    /// [`UserError`].
    pub async fn leave(&mut self, room: &str) -> Result<Verdict, UserError> {
        let bundle = self.member.leave(room)?;
        self.handshake(room, bundle).await
    }

    /// Joins an open room by external commit, adding itself with `role`.
    ///
    /// # Errors
    /// [`UserError`] ([`UserError::Refused`] with the hub's reason when the room is not open).
    pub async fn open_join(&mut self, room: &str, role: u32) -> Result<Verdict, UserError> {
        let (req, key) = self.member.group_info_request();
        let r = self.api.room("group-info", room, req).await?;
        if r.status != 200 {
            return Err(status("groupInfo", &r));
        }
        let bundle = self.member.open_join(room, &r.body, &key, role)?;
        let v = self.handshake(room, bundle).await?;
        if v == Verdict::Accepted {
            self.api.subscribe(room, true).await?;
        }
        Ok(v)
    }

    /// Fetches and processes up to `limit` deliveries (without waiting): the events, the
    /// membership changes they made, and whether more are waiting. The cursor advances in
    /// memory; commit it ([`Bridged::commit`]) before acknowledging.
    ///
    /// # Errors
    /// [`UserError::Api`].
    pub async fn fetch(&mut self, limit: usize) -> Result<Page, UserError> {
        let page = self.api.events(self.row.cursor, limit, 0).await?;
        let mut out = Page {
            more: page.events.len() >= limit,
            ..Page::default()
        };
        let mut before: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for d in page.events {
            if d.seq <= self.row.cursor {
                continue;
            }
            self.row.cursor = d.seq;
            if d.kind == mimi_session::api::DeliveryKind::Consent {
                continue;
            }
            if !before.contains_key(&d.room) {
                before.insert(d.room.clone(), self.participant_names(&d.room));
            }
            out.events.extend(self.member.process(&d.room, &d.body.0));
        }
        for (room, was) in before {
            let now = self.participant_names(&room);
            let added: Vec<String> = now.iter().filter(|u| !was.contains(u)).cloned().collect();
            let removed: Vec<String> = was.iter().filter(|u| !now.contains(u)).cloned().collect();
            if !added.is_empty() || !removed.is_empty() {
                out.membership.push(Membership {
                    room,
                    added,
                    removed,
                });
            }
        }
        Ok(out)
    }

    fn participant_names(&self, room: &str) -> Vec<String> {
        self.member
            .participants(room)
            .into_iter()
            .filter(|(_, role)| *role != mimi_client::role::BANNED)
            .map(|(u, _)| u)
            .collect()
    }

    /// Keeps `target` one-time KeyPackages published (tops up below half).
    ///
    /// # Errors
    /// [`UserError`].
    pub async fn top_up(&mut self, target: usize) -> Result<usize, UserError> {
        let left = self.api.key_packages_left().await?;
        if left * 2 >= target {
            return Ok(0);
        }
        let kps = self.member.key_packages(target - left)?;
        self.commit(Vec::new())?;
        self.api.publish(&kps).await?;
        Ok(kps.len())
    }
}

/// The users of one bridge.
pub struct Users {
    provider: Provider,
    /// Rows.
    pub db: Db,
    /// Access rules.
    pub access: Access,
    policy: UserPolicy,
    /// URIs of bridged identities.
    pub uris: UriScheme,
    domain: String,
    base: ApiClient,
    admin: Option<String>,
    loaded: std::sync::Mutex<Loaded>,
    provisioning: Mutex<()>,
}

#[derive(Default)]
struct Loaded {
    users: HashMap<String, (Arc<Mutex<Bridged>>, u64)>,
    tick: u64,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// The device name of bridged clients starts with this (the gateway announces their
/// deliveries to the bridges).
pub const DEVICE_PREFIX: &str = "bridge";

impl Users {
    /// The users of the `provider` bridge of `host`, with `access` rules.
    pub fn new(host: &Host, provider: Provider, access: Access, policy: UserPolicy) -> Self {
        Self {
            provider,
            db: Db::new(Arc::clone(&host.store), provider.name()),
            access,
            policy,
            uris: UriScheme::new(&host.domain),
            domain: host.domain.clone(),
            base: ApiClient::new(host.api),
            admin: host.admin_token.clone(),
            loaded: std::sync::Mutex::new(Loaded::default()),
            provisioning: Mutex::new(()),
        }
    }

    /// The bridge's provider.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Its bounds.
    pub fn policy(&self) -> &UserPolicy {
        &self.policy
    }

    /// The MIMI user URI of a native user.
    pub fn uri_of(&self, native: &str) -> String {
        self.uris.user(self.provider, native)
    }

    fn cached(&self, native: &str) -> Option<Arc<Mutex<Bridged>>> {
        let mut l = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        l.tick += 1;
        let tick = l.tick;
        l.users.get_mut(native).map(|(u, t)| {
            *t = tick;
            Arc::clone(u)
        })
    }

    fn cache(&self, native: &str, u: Arc<Mutex<Bridged>>) -> Arc<Mutex<Bridged>> {
        let mut l = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        l.tick += 1;
        let tick = l.tick;
        let u = Arc::clone(&l.users.entry(native.to_owned()).or_insert((u, tick)).0);
        // Past the bound, the least recently used idle users are dropped (their state is in
        // the store).
        while l.users.len() > self.policy.loaded_users.max(1) {
            let victim = l
                .users
                .iter()
                .filter(|(_, (u, _))| Arc::strong_count(u) == 1)
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone());
            match victim {
                Some(k) => {
                    l.users.remove(&k);
                }
                None => break,
            }
        }
        u
    }

    /// Drops a loaded user (after a failed commit its memory is ahead of the store).
    pub fn forget(&self, native: &str) {
        self.loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .users
            .remove(native);
    }

    /// A bridged user that exists (loaded from the store if needed), without provisioning.
    ///
    /// # Errors
    /// Storage failures or unreadable state.
    pub fn existing(&self, native: &str) -> Result<Option<Arc<Mutex<Bridged>>>, UserError> {
        if let Some(u) = self.cached(native) {
            return Ok(Some(u));
        }
        let Some(row) = self.db.user(native)? else {
            return Ok(None);
        };
        let Some((meta, rows)) = self.db.member(native)? else {
            return Err(StoreError(format!("the MLS state of {native} is missing")).into());
        };
        let member = Member::from_parts(&meta, rows)?;
        let b = Bridged {
            native: native.to_owned(),
            api: self.base.for_token(&row.token),
            row,
            member,
            db: self.db.clone(),
        };
        Ok(Some(self.cache(native, Arc::new(Mutex::new(b)))))
    }

    /// The bridged user for `native`, provisioned on first use: access rules, user cap,
    /// registration on the client API, KeyPackages (and a last-resort one) published.
    ///
    /// # Errors
    /// [`UserError::Denied`], [`UserError::Full`], or a failure to register.
    pub async fn get(&self, native: &str) -> Result<Arc<Mutex<Bridged>>, UserError> {
        self.access.check(native)?;
        if let Some(u) = self.existing(native)? {
            return Ok(u);
        }
        let _one = self.provisioning.lock().await;
        if let Some(u) = self.existing(native)? {
            return Ok(u);
        }
        let count = self.db.user_count()?;
        if count >= self.policy.max_users as u64 {
            return Err(UserError::Full(self.policy.max_users));
        }
        let name = self.uris.user_name(self.provider, native);
        let device = format!("{DEVICE_PREFIX}-{:08x}", rand::random::<u32>());
        let mut api = match &self.admin {
            Some(t) => self.base.for_token(t),
            None => ApiClient::new(self.base_addr()),
        };
        let reg = api.register(&name, &device, native).await?;
        let token = reg.token.unwrap_or_default();
        let api = self.base.for_token(&token);
        let mut member = Member::new(&self.domain, &name, &device);
        let kps = member.key_packages(self.policy.key_packages)?;
        let last = member.last_resort_key_package()?;
        let row = UserRow {
            name,
            token,
            cursor: 0,
        };
        let mut changes = self.db.member_changes(native, member.take_changes());
        changes.push(self.db.put_user(native, &row));
        changes.push(self.db.put_client(&reg.client_id, native));
        changes.push(self.db.put_user_count(count + 1));
        self.db.apply(&changes)?;
        api.publish_with(&kps, Some(last)).await?;
        tracing::info!(user = %native, mimi = %member.user(), "bridged user provisioned");
        let b = Bridged {
            native: native.to_owned(),
            row,
            member,
            api,
            db: self.db.clone(),
        };
        Ok(self.cache(native, Arc::new(Mutex::new(b))))
    }

    fn base_addr(&self) -> std::net::SocketAddr {
        self.base.addr()
    }
}

/// Runs a step on a loaded user; when it fails, the loaded state is dropped so the next use
/// reloads what the store holds (memory may be ahead of it).
///
/// # Errors
/// The step's.
pub async fn with_user<T, F>(users: &Users, native: &str, f: F) -> Result<T, UserError>
where
    F: AsyncFnOnce(&mut Bridged) -> Result<T, UserError>,
{
    let u = users.get(native).await?;
    let mut g = u.lock().await;
    let r = f(&mut g).await;
    if r.is_err() {
        drop(g);
        users.forget(native);
    }
    r
}
