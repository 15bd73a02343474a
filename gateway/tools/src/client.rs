//! `mimi client`: a native MIMI client on a gateway's client API, for operators trying a
//! federation by hand and for tests. Its state (token, delivery cursor, MLS member, messages
//! received but not yet shown) lives in one file, written atomically with mode 0600 after
//! every command.

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use mimi_client::{Event, Member, RoomSetup, role};
use mimi_content::builder;
use mimi_session::{ApiClient, Session, Verdict};
use serde::{Deserialize, Serialize};

/// Messages kept for `tail` at most (the oldest are dropped past it).
const INBOX: usize = 1000;

/// One received message, as `tail` prints it (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The room.
    pub room: String,
    /// The sender's user URI.
    pub sender: String,
    /// The text (or a short description of non-text content).
    pub text: String,
    /// The MIMI message ID (hex).
    pub id: String,
    /// The hub's timestamp (ms).
    pub timestamp: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    api: SocketAddr,
    token: String,
    cursor: u64,
    member: String,
    #[serde(default)]
    inbox: VecDeque<Line>,
}

/// A client loaded from its state file.
pub struct Client {
    path: PathBuf,
    session: Session,
    inbox: VecDeque<Line>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("path", &self.path)
            .field("user", &self.session.user())
            .finish_non_exhaustive()
    }
}

fn text_of(p: &mimi_content::NestedPart) -> Option<String> {
    match &p.body {
        mimi_content::PartBody::Single(s) if s.content_type.starts_with("text/") => {
            String::from_utf8(s.content.clone()).ok()
        }
        mimi_content::PartBody::Multi(m) => {
            mimi_content::render::best_alternative(&m.parts).and_then(text_of)
        }
        _ => None,
    }
}

fn line_of(
    room: &str,
    sender: &str,
    id: &mimi_content::MessageId,
    m: &mimi_content::Message,
    ts: u64,
) -> Line {
    let c = m.content();
    let text = match &c.nested_part.body {
        mimi_content::PartBody::External(x) => {
            format!("[attachment {} ({})]", x.filename, x.content_type)
        }
        mimi_content::PartBody::Null => "[deleted]".into(),
        _ => text_of(&c.nested_part).unwrap_or_else(|| "[no text]".into()),
    };
    Line {
        room: room.to_owned(),
        sender: sender.to_owned(),
        text,
        id: id.to_hex(),
        timestamp: ts,
    }
}

impl Client {
    /// Registers `user`'s `device` on the gateway at `api` (anonymously, or with `token`, an
    /// admin or provider token) and writes the state file.
    ///
    /// # Errors
    /// Registration or storage failures.
    pub async fn register(
        path: &Path,
        api: SocketAddr,
        user: &str,
        device: &str,
        token: Option<&str>,
    ) -> anyhow::Result<Self> {
        if path.exists() {
            bail!("{} exists: one state file per client", path.display());
        }
        let mut client = match token {
            Some(t) => ApiClient::with_token(api, t),
            None => ApiClient::new(api),
        };
        let reg = client.register(user, device, user).await?;
        let member = Member::new(reg.user.domain().as_str(), user, device);
        client
            .publish_with(
                &member.key_packages(10)?,
                Some(member.last_resort_key_package()?),
            )
            .await?;
        let c = Self {
            path: path.to_owned(),
            session: Session {
                member,
                api: client,
                cursor: 0,
                views: Default::default(),
            },
            inbox: VecDeque::new(),
        };
        c.save()?;
        Ok(c)
    }

    /// Loads the state file.
    ///
    /// # Errors
    /// A missing or unreadable file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let raw = std::fs::read(path).with_context(|| {
            format!(
                "no client state at {} (run `mimi client register` first)",
                path.display()
            )
        })?;
        let s: State = serde_json::from_slice(&raw).context("unreadable client state")?;
        let member = Member::import(&hex::decode(&s.member).context("client state")?)?;
        Ok(Self {
            path: path.to_owned(),
            session: Session {
                member,
                api: ApiClient::with_token(s.api, &s.token),
                cursor: s.cursor,
                views: Default::default(),
            },
            inbox: s.inbox,
        })
    }

    /// Writes the state file (atomically, 0600).
    ///
    /// # Errors
    /// IO failures.
    pub fn save(&self) -> anyhow::Result<()> {
        let s = State {
            api: self.session.api.addr(),
            token: self.session.api.token().unwrap_or_default().to_owned(),
            cursor: self.session.cursor,
            member: hex::encode(self.session.member.export()),
            inbox: self.inbox.clone(),
        };
        let tmp = self.path.with_extension("tmp");
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            o.mode(0o600);
        }
        let mut f = o.open(&tmp)?;
        f.write_all(&serde_json::to_vec(&s)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }

    /// The session (for tests).
    pub fn session(&mut self) -> &mut Session {
        &mut self.session
    }

    /// Fetches deliveries (waiting up to `wait_s`), keeps the messages for `tail`, saves.
    ///
    /// # Errors
    /// Client API failures.
    pub async fn sync(&mut self, wait_s: u64) -> anyhow::Result<()> {
        for e in self.session.sync(wait_s).await? {
            if let Event::Message {
                room,
                sender,
                message,
                id,
                timestamp,
                ..
            } = e
            {
                self.inbox
                    .push_back(line_of(&room, &sender, &id, &message, timestamp));
                while self.inbox.len() > INBOX {
                    self.inbox.pop_front();
                }
            }
        }
        self.save()
    }

    /// The rooms this client is in, with their participants.
    pub fn rooms(&self) -> Vec<(String, Vec<(String, u32)>)> {
        self.session
            .member
            .rooms()
            .into_iter()
            .map(|r| {
                let p = self.session.member.participants(&r);
                (r, p)
            })
            .collect()
    }

    /// Creates a room on this client's gateway.
    ///
    /// # Errors
    /// Refusals and transport failures.
    pub async fn create(&mut self, room: &str, name: &str, open: bool) -> anyhow::Result<()> {
        let setup = RoomSetup {
            open_join: open,
            ..RoomSetup::named(name)
        };
        self.session.create_room(room, &setup).await?;
        self.save()
    }

    /// Adds a user to a room.
    ///
    /// # Errors
    /// Refusals and transport failures.
    pub async fn invite(&mut self, room: &str, user: &str) -> anyhow::Result<()> {
        self.sync(0).await?;
        let v = self
            .session
            .add(room, &[(user.to_owned(), role::MEMBER)])
            .await?;
        self.save()?;
        match v {
            Verdict::Accepted => Ok(()),
            Verdict::Refused(o) => bail!("the room refused: {o:?}"),
        }
    }

    /// Joins an open room by external commit.
    ///
    /// # Errors
    /// Refusals and transport failures.
    pub async fn join(&mut self, room: &str) -> anyhow::Result<()> {
        let v = self.session.open_join(room, role::MEMBER).await?;
        self.save()?;
        match v {
            Verdict::Accepted => Ok(()),
            Verdict::Refused(o) => bail!("the room refused: {o:?}"),
        }
    }

    /// Sends a text message; returns its ID.
    ///
    /// # Errors
    /// Refusals and transport failures.
    pub async fn send(&mut self, room: &str, text: &str) -> anyhow::Result<String> {
        self.sync(0).await?;
        let (id, outcome) = self
            .session
            .send(room, |s, r, salt| builder::text(s, r, salt, text))
            .await?;
        self.save()?;
        match outcome {
            mimi_proto::messages::SubmitOutcome::Accepted { .. } => Ok(id.to_hex()),
            other => bail!("the hub did not accept the message: {other:?}"),
        }
    }

    /// Takes the messages kept for `room` (all rooms with `None`).
    pub fn take(&mut self, room: Option<&str>) -> Vec<Line> {
        let (take, keep): (VecDeque<Line>, VecDeque<Line>) = std::mem::take(&mut self.inbox)
            .into_iter()
            .partition(|l| room.is_none_or(|r| l.room == r));
        self.inbox = keep;
        take.into()
    }
}
