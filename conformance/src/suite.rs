//! The black-box suite: the environment (our side of the federation and the target), the
//! runner, and the tests of both roles. Every test is documented in conformance/TESTS.md.

use std::future::Future;
use std::io::{IsTerminal, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mimi_client::{Event, Member, RoomSetup, role};
use mimi_content::builder;
use mimi_proto::codec::{Uri, Utf8, Wire};
use mimi_proto::components::AppDataDictionary;
use mimi_proto::directory::{Directory, Endpoint, WELL_KNOWN_PATH, encode_path_value};
use mimi_proto::messages::*;
use mimi_session::{Session, Verdict};
use mimi_tools::raw::{Got, Pem, Raw};
use mimi_tools::reference::ReferenceGateway;

use crate::report::{Outcome, Status};

type Res = Result<(), String>;
type TestFn = for<'a> fn(&'a mut Env) -> Pin<Box<dyn Future<Output = Res> + Send + 'a>>;

/// A test: ID, draft section, whether it is required, what it runs.
pub struct Test {
    /// ID.
    pub id: &'static str,
    /// Section.
    pub section: &'static str,
    /// Required.
    pub required: bool,
    /// Body.
    pub run: TestFn,
}

macro_rules! test {
    ($id:literal, $section:literal, $required:expr, $f:ident) => {
        Test {
            id: $id,
            section: $section,
            required: $required,
            run: |e| Box::pin($f(e)),
        }
    };
}

/// The options of `mimi-conformance run`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The target's federation address.
    pub target: SocketAddr,
    /// The target's provider domain.
    pub target_domain: String,
    /// Our provider domain (our certificate's SAN).
    pub our_domain: String,
    /// Our certificate, key and the CA bundle we trust for the target.
    pub cert: PathBuf,
    /// Key.
    pub key: PathBuf,
    /// CA bundle.
    pub ca: PathBuf,
    /// Where our side listens (QUIC and HTTPS): the address the target knows for our domain.
    pub listen: SocketAddr,
    /// The target's test hook (its client API).
    pub hook: SocketAddr,
    /// `h3` or `https`.
    pub transport: String,
    /// Only tests whose ID starts with this.
    pub only: Option<String>,
}

/// Everything the tests share.
pub struct Env {
    o: Options,
    raw: Raw,
    ca_pem: String,
    dir: PathBuf,
    our: Option<ReferenceGateway>,
    our_api: SocketAddr,
    run: u32,
    prefix: String,
    room: String,
    admin: Option<Session>,
    bob: Option<Session>,
    eve: Option<Session>,
    tom: Option<Session>,
}

fn s<T>(r: Result<T, impl std::fmt::Display>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn expect(cond: bool, why: impl Into<String>) -> Res {
    if cond { Ok(()) } else { Err(why.into()) }
}

fn not_5xx(g: &Got, what: &str) -> Res {
    expect(
        (400..500).contains(&g.status),
        format!("{what}: expected a 4xx, got {} {}", g.status, g.text()),
    )
}

impl Env {
    /// Starts our side (a reference gateway for `our_domain`, peered with the target).
    ///
    /// # Errors
    /// Unreadable certificates or an address in use.
    pub async fn new(o: Options) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("mimi-conformance-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let ca_pem = std::fs::read_to_string(&o.ca)?;
        let cert = Pem {
            cert: std::fs::read_to_string(&o.cert)?,
            key: std::fs::read_to_string(&o.key)?,
        };
        let raw = Raw::new(Some(cert), &ca_pem, &o.target_domain);
        let our_api = SocketAddr::from(([127, 0, 0, 1], mimi_tools::local::free_port()?));
        let mut env = Self {
            o,
            raw,
            ca_pem,
            dir,
            our: None,
            our_api,
            run: rand::random::<u32>() % 1_000_000,
            prefix: "/v1".into(),
            room: String::new(),
            admin: None,
            bob: None,
            eve: None,
            tom: None,
        };
        env.start_ours().await?;
        Ok(env)
    }

    fn our_config(&self) -> String {
        let abs = |p: &Path| {
            std::fs::canonicalize(p)
                .unwrap_or_else(|_| p.to_owned())
                .display()
                .to_string()
        };
        let transport = if self.o.transport == "https" {
            "https"
        } else {
            "h3"
        };
        format!(
            "domain = \"{d}\"\n[listen]\nquic = \"{l}\"\nhttps = \"{l}\"\nadmin = \"127.0.0.1:0\"\nclient_api = \"{api}\"\n[tls]\ncert = \"{c}\"\nkey = \"{k}\"\nca = \"{ca}\"\n[storage]\npath = \"{db}\"\n[log]\nlevel = \"error\"\n[[peers]]\ndomain = \"{t}\"\nquic = \"{ta}\"\nhttps = \"{ta}\"\ntransport = \"{transport}\"\n",
            d = self.o.our_domain,
            l = self.o.listen,
            api = self.our_api,
            c = abs(&self.o.cert),
            k = abs(&self.o.key),
            ca = abs(&self.o.ca),
            db = self.dir.join("ours.redb").display(),
            t = self.o.target_domain,
            ta = self.o.target,
        )
    }

    async fn start_ours(&mut self) -> anyhow::Result<()> {
        let path = self.dir.join("ours.toml");
        std::fs::write(&path, self.our_config())?;
        self.our = Some(ReferenceGateway::start(&path).await?);
        Ok(())
    }

    async fn stop_ours(&mut self) {
        if let Some(g) = self.our.take() {
            g.shutdown().await;
        }
    }

    /// Stops our side and removes its files.
    pub async fn close(mut self) {
        self.stop_ours().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn headers(&self) -> [(&'static str, String); 2] {
        [
            ("from", format!("mimi@{}", self.o.our_domain)),
            ("content-type", "application/octet-stream".into()),
        ]
    }

    async fn post(&self, endpoint: Endpoint, value: &str, body: Vec<u8>) -> Result<Got, String> {
        let h = self.headers();
        let hv: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.raw
            .send(
                &self.o.transport,
                self.o.target,
                "POST",
                &format!(
                    "{}/{}/{}",
                    self.prefix,
                    endpoint.name(),
                    encode_path_value(value)
                ),
                &hv,
                body,
            )
            .await
    }

    fn user(&self, domain: &str, name: &str) -> String {
        format!("mimi://{domain}/u/{name}{}", self.run)
    }

    async fn session(
        &self,
        ours: bool,
        name: &str,
        device: &str,
        kps: usize,
    ) -> Result<Session, String> {
        let (api, domain) = if ours {
            (self.our_api, self.o.our_domain.as_str())
        } else {
            (self.o.hook, self.o.target_domain.as_str())
        };
        s(Session::register(api, domain, &format!("{name}{}", self.run), device, kps).await)
    }
}

fn take<T>(o: &mut Option<T>, what: &str) -> Result<T, String> {
    o.take()
        .ok_or_else(|| format!("{what} is missing (an earlier test failed)"))
}

async fn wait_message(
    sess: &mut Session,
    what: &str,
    pred: impl Fn(&mimi_content::Message) -> bool,
) -> Result<Vec<mimi_content::MessageId>, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ids = Vec::new();
    while Instant::now() < deadline {
        for e in s(sess.sync(2).await)? {
            if let Event::Message { message, id, .. } = e {
                if pred(&message) {
                    return Ok(vec![id]);
                }
                ids.push(id);
            }
        }
    }
    Err(format!("{what} never arrived"))
}

async fn wait_event(sess: &mut Session, what: &str, pred: impl Fn(&Event) -> bool) -> Res {
    let evs = s(sess.sync_until(20, &pred).await)?;
    expect(evs.iter().any(pred), format!("{what} never arrived"))
}

fn text_of(m: &mimi_content::Message) -> String {
    mimi_content::render::part_text(&m.content().nested_part)
}

// --- generic tests (both roles) ---------------------------------------------------------------

async fn directory(e: &mut Env) -> Res {
    let g = s(e
        .raw
        .send(
            &e.o.transport,
            e.o.target,
            "GET",
            WELL_KNOWN_PATH,
            &[],
            Vec::new(),
        )
        .await)?;
    expect(
        g.status == 200,
        format!("GET {WELL_KNOWN_PATH}: {} {}", g.status, g.text()),
    )?;
    let d = s(Directory::parse(&g.body))?;
    for ep in [
        Endpoint::KeyMaterial,
        Endpoint::Update,
        Endpoint::Notify,
        Endpoint::SubmitMessage,
        Endpoint::GroupInfo,
        Endpoint::IdentifierQuery,
        Endpoint::ReportAbuse,
        Endpoint::RequestConsent,
        Endpoint::UpdateConsent,
        Endpoint::ProxyDownload,
    ] {
        expect(
            d.url(ep, "x").is_some(),
            format!("the directory has no {} endpoint", ep.name()),
        )?;
    }
    // Learn the path prefix the target uses.
    if let Some(u) = d.url(Endpoint::Update, "x").and_then(|u| {
        u.split_once("://")
            .and_then(|(_, r)| r.find('/').map(|i| r[i..].to_owned()))
    }) {
        e.prefix = u.trim_end_matches("/update/x").to_owned();
    }
    Ok(())
}

async fn mtls_no_certificate(e: &mut Env) -> Res {
    let anon = Raw::new(None, &e.ca_pem, &e.o.target_domain);
    match anon
        .send(
            &e.o.transport,
            e.o.target,
            "GET",
            WELL_KNOWN_PATH,
            &[],
            Vec::new(),
        )
        .await
    {
        Err(_) => Ok(()),
        Ok(g) => Err(format!(
            "a client without a certificate got an HTTP answer ({})",
            g.status
        )),
    }
}

async fn mtls_unknown_ca(e: &mut Env) -> Res {
    let ca = s(mimi_tools::reference::new_ca("mimi-conformance rogue CA"))?;
    let rogue = s(mimi_tools::reference::issue(&ca, &e.o.our_domain, false))?;
    let r = Raw::new(Some(rogue.into()), &e.ca_pem, &e.o.target_domain);
    match r
        .send(
            &e.o.transport,
            e.o.target,
            "GET",
            WELL_KNOWN_PATH,
            &[],
            Vec::new(),
        )
        .await
    {
        Err(_) => Ok(()),
        Ok(g) => Err(format!(
            "a certificate from an unknown CA got an HTTP answer ({})",
            g.status
        )),
    }
}

async fn from_mismatch(e: &mut Env) -> Res {
    let h = [
        ("from", "mimi@someone-else.example"),
        ("content-type", "application/octet-stream"),
    ];
    let g = s(e
        .raw
        .send(
            &e.o.transport,
            e.o.target,
            "POST",
            &format!(
                "{}/keyMaterial/{}",
                e.prefix,
                encode_path_value(&e.user(&e.o.target_domain, "nobody"))
            ),
            &h,
            vec![0],
        )
        .await)?;
    expect(
        g.status == 403 || g.status == 401,
        format!(
            "From naming another domain than the certificate: expected 401/403, got {} {}",
            g.status,
            g.text()
        ),
    )
}

async fn oversize_body(e: &mut Env) -> Res {
    let g = s(e
        .post(
            Endpoint::Update,
            &format!("mimi://{}/r/none", e.o.target_domain),
            vec![0u8; 16 << 20],
        )
        .await)?;
    expect(
        g.status == 413,
        format!("a 16 MiB body: expected 413, got {} {}", g.status, g.text()),
    )
}

async fn rate_limit_retry_after(e: &mut Env) -> Res {
    // Many cheap requests, 64 at a time, until the target says 429.
    let r = s(burst(&e.raw, e.o.target, WELL_KNOWN_PATH, 6000).await)?;
    let Some(g) = r else {
        return Err(
            "no 429 after 6000 requests (the target's rate limit is above the suite's probe)"
                .into(),
        );
    };
    let wait = g.retry_after.ok_or("429 without Retry-After")?;
    expect(wait >= 1, "Retry-After must be at least 1 second")?;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let ok = s(e
        .raw
        .send(
            &e.o.transport,
            e.o.target,
            "GET",
            WELL_KNOWN_PATH,
            &[],
            Vec::new(),
        )
        .await)?;
    expect(
        ok.status == 200,
        format!(
            "after waiting Retry-After ({wait} s) the target still answers {}",
            ok.status
        ),
    )
}

async fn burst(raw: &Raw, addr: SocketAddr, path: &str, n: usize) -> anyhow::Result<Option<Got>> {
    use futures_util::StreamExt as _;
    let c = raw.clone();
    let results = futures_util::stream::iter(0..n)
        .map(|_| {
            let c = c.clone();
            async move { c.h2(addr, "GET", path, &[], Vec::new()).await }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    Ok(results
        .into_iter()
        .filter_map(Result::ok)
        .find(|g| g.status == 429))
}

// --- hub role: the target hosts the room, we are a follower provider --------------------------

async fn hub_setup(e: &mut Env) -> Res {
    let mut admin = e.session(false, "confadmin", "d", 6).await?;
    let bob = e.session(true, "confbob", "d", 6).await?;
    let eve = e.session(true, "confeve", "d", 6).await?;
    e.room = format!("mimi://{}/r/conf{}", e.o.target_domain, e.run);
    s(admin
        .create_room(&e.room, &RoomSetup::named("conformance"))
        .await)?;
    let v = s(admin
        .add(&e.room, &[(bob.user().to_owned(), role::MEMBER)])
        .await)?;
    expect(
        v == Verdict::Accepted,
        format!("the hub refused to add our user: {v:?}"),
    )?;
    let mut bob = bob;
    wait_event(&mut bob, "the Welcome for our user", |ev| {
        matches!(ev, Event::Joined { .. })
    })
    .await?;
    e.admin = Some(admin);
    e.bob = Some(bob);
    e.eve = Some(eve);
    Ok(())
}

async fn keymaterial_happy(e: &mut Env) -> Res {
    let bob = e.bob.as_ref().ok_or("setup failed")?;
    let admin = e.admin.as_ref().ok_or("setup failed")?.user().to_owned();
    let g = s(e
        .post(
            Endpoint::KeyMaterial,
            &admin,
            bob.member.key_material_request(&admin, &e.room),
        )
        .await)?;
    expect(g.status == 200, format!("{} {}", g.status, g.text()))?;
    let r = s(KeyMaterialResponse::from_bytes(&g.body))?;
    expect(
        r.user_status == KeyMaterialUserCode::Success
            && matches!(r.clients.first(), Some(ClientKeyMaterial::Success { .. })),
        format!("{r:?}"),
    )
}

async fn commit(e: &Env, bob: &mut Session, bundle: Vec<u8>) -> Result<UpdateOutcome, String> {
    let g = s(e.post(Endpoint::Update, &e.room, bundle).await)?;
    expect(
        g.status == 200,
        format!("/update: {} {}", g.status, g.text()),
    )?;
    let r = s(UpdateRoomResponse::from_bytes(&g.body))?;
    if matches!(r.outcome, UpdateOutcome::Success { .. }) {
        s(bob.member.commit_accepted(&e.room))?;
    } else {
        let _ = bob.member.commit_refused(&e.room);
    }
    Ok(r.outcome)
}

async fn catch_up(sess: &mut Session) {
    let _ = sess
        .sync_until(3, |ev| matches!(ev, Event::Committed { .. }))
        .await;
}

async fn update_happy(e: &mut Env) -> Res {
    let mut bob = take(&mut e.bob, "our member")?;
    let r = async {
        let bundle = s(bob.member.commit_pending(&e.room))?;
        let o = commit(e, &mut bob, bundle).await?;
        expect(matches!(o, UpdateOutcome::Success { .. }), format!("{o:?}"))
    }
    .await;
    e.bob = Some(bob);
    if let Some(a) = e.admin.as_mut() {
        catch_up(a).await;
    }
    r
}

async fn submit_happy(e: &mut Env) -> Res {
    let bob = e.bob.as_mut().ok_or("setup failed")?;
    let (body, _) = s(bob.member.send(&e.room, |snd, r, salt| {
        builder::text(snd, r, salt, "conformance says hi")
    }))?;
    let g = s(e.post(Endpoint::SubmitMessage, &e.room, body).await)?;
    expect(g.status == 200, format!("{} {}", g.status, g.text()))?;
    let r = s(SubmitMessageResponse::from_bytes(&g.body))?;
    expect(
        matches!(r.outcome, SubmitOutcome::Accepted { .. }),
        format!("{r:?}"),
    )?;
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    wait_message(admin, "our message at the hub's user", |m| {
        text_of(m) == "conformance says hi"
    })
    .await
    .map(|_| ())
}

async fn groupinfo_and_external_join(e: &mut Env) -> Res {
    let mut dev2 = s(e
        .bob
        .as_ref()
        .ok_or("setup failed")?
        .link_device("d2", 1)
        .await)?;
    let (req, key) = dev2.member.group_info_request();
    let g = s(e.post(Endpoint::GroupInfo, &e.room, req).await)?;
    expect(
        g.status == 200,
        format!("/groupInfo: {} {}", g.status, g.text()),
    )?;
    // Verifies the hub's signature and decrypts the GroupInfo and tree.
    let bundle = s(dev2.member.external_join(&e.room, &g.body, &key))?;
    let o = commit(e, &mut dev2, bundle).await?;
    expect(
        matches!(o, UpdateOutcome::Success { .. }),
        format!("the external commit of our user's new device: {o:?}"),
    )?;
    for sess in [e.bob.as_mut(), e.admin.as_mut()].into_iter().flatten() {
        catch_up(sess).await;
    }
    Ok(())
}

async fn wrong_epoch(e: &mut Env) -> Res {
    let mut bob = take(&mut e.bob, "our member")?;
    let r = async {
        let stale = s(bob.member.commit_pending(&e.room))?;
        let admin = e.admin.as_mut().ok_or("setup failed")?;
        let fresh = s(admin.member.commit_pending(&e.room))?;
        expect(
            s(admin.handshake(&e.room, fresh).await)? == Verdict::Accepted,
            "the hub's own user could not commit",
        )?;
        let current = admin.member.epoch(&e.room).unwrap_or(0);
        let o = commit(e, &mut bob, stale).await?;
        expect(
            o == UpdateOutcome::WrongEpoch {
                current_epoch: current,
            },
            format!("a stale commit: expected wrongEpoch {current}, got {o:?}"),
        )
    }
    .await;
    catch_up(&mut bob).await;
    e.bob = Some(bob);
    r
}

async fn epoch_too_old(e: &mut Env) -> Res {
    let bob = e.bob.as_mut().ok_or("setup failed")?;
    let (old, _) = s(bob.member.send(&e.room, |snd, r, salt| {
        builder::text(snd, r, salt, "from two epochs ago")
    }))?;
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    for _ in 0..2 {
        let c = s(admin.member.commit_pending(&e.room))?;
        expect(
            s(admin.handshake(&e.room, c).await)? == Verdict::Accepted,
            "the hub's own user could not commit",
        )?;
    }
    let current = admin.member.epoch(&e.room).unwrap_or(0);
    let g = s(e.post(Endpoint::SubmitMessage, &e.room, old).await)?;
    let r = s(SubmitMessageResponse::from_bytes(&g.body))?;
    let bob = e.bob.as_mut().ok_or("setup failed")?;
    catch_up(bob).await;
    catch_up(bob).await;
    expect(
        r.outcome
            == SubmitOutcome::EpochTooOld {
                current_epoch: current,
            },
        format!("expected epochTooOld {current}, got {r:?}"),
    )
}

async fn report_abuse(e: &mut Env) -> Res {
    let bob = e.bob.as_mut().ok_or("setup failed")?;
    let (body, msg) = s(bob.member.send(&e.room, |snd, r, salt| {
        builder::text(snd, r, salt, "please report me")
    }))?;
    let me = bob.user().to_owned();
    let g = s(e.post(Endpoint::SubmitMessage, &e.room, body).await)?;
    let r = s(SubmitMessageResponse::from_bytes(&g.body))?;
    let SubmitOutcome::Accepted {
        accepted_timestamp,
        frank: Some(frank),
    } = r.outcome
    else {
        return Err(format!(
            "a message in a franked room should be accepted with a frank, got {r:?}"
        ));
    };
    let report = |content: Vec<u8>| AbuseReport {
        reporting_user: Uri::from(me.as_str()),
        alleged_abuser_uri: Uri::from(me.as_str()),
        reason_code: 1,
        note: Utf8("conformance".into()),
        messages: vec![AbusiveMessage {
            message_content: mimi_proto::codec::Bytes(content),
            frank: frank.clone(),
            accepted_timestamp,
        }],
        abuse_extensions: AppDataDictionary::default(),
    };
    let g = s(e
        .post(
            Endpoint::ReportAbuse,
            &e.room,
            report(msg.bytes().to_vec()).to_bytes(),
        )
        .await)?;
    expect(
        (200..300).contains(&g.status),
        format!(
            "a report with the hub's own frank: {} {}",
            g.status,
            g.text()
        ),
    )?;
    // The same frank over other content must not verify.
    let other = s(builder::text(&me, &e.room, [9; 16], "not what was franked").build())?;
    let g = s(e
        .post(
            Endpoint::ReportAbuse,
            &e.room,
            report(other.bytes().to_vec()).to_bytes(),
        )
        .await)?;
    not_5xx(&g, "a report whose frank does not match the content")?;
    if let Some(a) = e.admin.as_mut() {
        let _ = a.sync(1).await;
    }
    Ok(())
}

async fn proxy_download(e: &mut Env) -> Res {
    let bob = e.bob.as_ref().ok_or("setup failed")?;
    let blob: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    // Stored on our side; the URL names our domain, an asset domain of a peer of the target.
    let url = s(bob.api.upload(blob.clone()).await)?;
    let h = e.headers();
    let hv: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let path = format!("{}/proxyDownload/{}", e.prefix, encode_path_value(&url));
    let g = s(e
        .raw
        .send(&e.o.transport, e.o.target, "GET", &path, &hv, Vec::new())
        .await)?;
    expect(
        g.status == 200,
        format!("/proxyDownload of {url}: {} {}", g.status, g.text()),
    )?;
    expect(g.body == blob, "the proxied bytes differ from the asset")?;
    // Not an open proxy: a host that is no peer's asset domain is refused.
    let path = format!(
        "{}/proxyDownload/{}",
        e.prefix,
        encode_path_value("https://elsewhere.invalid/x")
    );
    let g = s(e
        .raw
        .send(&e.o.transport, e.o.target, "GET", &path, &hv, Vec::new())
        .await)?;
    not_5xx(
        &g,
        "/proxyDownload of a host that is no peer's asset domain",
    )
}

async fn policy_non_participant(e: &mut Env) -> Res {
    let eve = e.eve.as_ref().ok_or("setup failed")?;
    let mut forged = Member::new(&e.o.our_domain, &format!("confeve{}", e.run), "x");
    let es = s(e
        .admin
        .as_ref()
        .ok_or("setup failed")?
        .api
        .external_sender()
        .await)?;
    s(forged.create_room(&e.room, &es, &RoomSetup::named("forged")))?;
    let (body, _) = s(forged.send(&e.room, |snd, r, salt| {
        builder::text(snd, r, salt, "let me in")
    }))?;
    let _ = eve;
    let g = s(e.post(Endpoint::SubmitMessage, &e.room, body).await)?;
    expect(
        g.status == 200 || (400..500).contains(&g.status),
        format!("{} {}", g.status, g.text()),
    )?;
    if g.status == 200 {
        let r = s(SubmitMessageResponse::from_bytes(&g.body))?;
        expect(
            r.outcome == SubmitOutcome::NotAllowed,
            format!("a non-participant's message: expected notAllowed, got {r:?}"),
        )?;
    }
    Ok(())
}

async fn policy_unauthorised_add(e: &mut Env) -> Res {
    let mut bob = take(&mut e.bob, "our member")?;
    let r = async {
        let eve = e.eve.as_ref().ok_or("setup failed")?.user().to_owned();
        let kps = s(bob.key_packages_of(&e.room, &eve).await)?;
        let bundle = s(bob
            .member
            .add_participants(&e.room, &[(eve, role::ADMIN)], &kps))?;
        let o = commit(e, &mut bob, bundle).await?;
        expect(
            o == UpdateOutcome::NotAllowed,
            format!("a member adding an admin: expected notAllowed, got {o:?}"),
        )
    }
    .await;
    e.bob = Some(bob);
    r
}

async fn policy_banned_commit(e: &mut Env) -> Res {
    let eve_uri = e.eve.as_ref().ok_or("setup failed")?.user().to_owned();
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    expect(
        s(admin.add(&e.room, &[(eve_uri.clone(), role::MEMBER)]).await)? == Verdict::Accepted,
        "the hub's user could not add ours",
    )?;
    let ban = s(admin.member.change_role(&e.room, &eve_uri, role::BANNED))?;
    expect(
        s(admin.handshake(&e.room, ban).await)? == Verdict::Accepted,
        "the hub's user could not ban",
    )?;
    if let Some(b) = e.bob.as_mut() {
        catch_up(b).await;
        catch_up(b).await;
    }
    let mut dev = s(e
        .eve
        .as_ref()
        .ok_or("setup failed")?
        .link_device("d2", 1)
        .await)?;
    let (req, key) = dev.member.group_info_request();
    let g = s(e.post(Endpoint::GroupInfo, &e.room, req).await)?;
    let resp = s(GroupInfoResponse::from_bytes(&g.body));
    match resp {
        Ok(r) if r.status != GroupInfoCode::Success => Ok(()), // refused at /groupInfo already
        Ok(_) => {
            let bundle = s(dev.member.external_join(&e.room, &g.body, &key))?;
            let o = commit(e, &mut dev, bundle).await?;
            expect(
                o == UpdateOutcome::NotAllowed,
                format!("a banned user's external commit: expected notAllowed, got {o:?}"),
            )
        }
        Err(_) => expect(
            (400..500).contains(&g.status),
            format!("/groupInfo for a banned user: {} {}", g.status, g.text()),
        ),
    }
}

async fn policy_fixed_membership(e: &mut Env) -> Res {
    let bob_uri = e.bob.as_ref().ok_or("setup failed")?.user().to_owned();
    let eve_uri = e.eve.as_ref().ok_or("setup failed")?.user().to_owned();
    let room = format!("mimi://{}/r/conffixed{}", e.o.target_domain, e.run);
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    let mut setup = RoomSetup::named("fixed");
    setup.fixed_membership = true;
    setup.initial_participants = vec![(bob_uri.clone(), role::MEMBER)];
    s(admin.create_room(&room, &setup).await)?;
    let kps = s(admin.key_packages_of(&room, &bob_uri).await)?;
    let add = s(admin.member.add_clients(&room, &kps))?;
    expect(
        s(admin.handshake(&room, add).await)? == Verdict::Accepted,
        "adding the fixed participant's clients was refused",
    )?;
    let mut bob = take(&mut e.bob, "our member")?;
    let r = async {
        wait_event(
            &mut bob,
            "the Welcome to the fixed room",
            |ev| matches!(ev, Event::Joined { room: r } if *r == room),
        )
        .await?;
        let kps = s(bob.key_packages_of(&room, &eve_uri).await)?;
        let bundle =
            s(bob
                .member
                .add_participants(&room, &[(eve_uri.clone(), role::MEMBER)], &kps))?;
        let g = s(e.post(Endpoint::Update, &room, bundle).await)?;
        let _ = bob.member.commit_refused(&room);
        let o = s(UpdateRoomResponse::from_bytes(&g.body))?.outcome;
        expect(
            o == UpdateOutcome::NotAllowed,
            format!("an add to a fixed-membership room: expected notAllowed, got {o:?}"),
        )
    }
    .await;
    e.bob = Some(bob);
    r
}

async fn fanout_in_order(e: &mut Env) -> Res {
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    let mut sent = Vec::new();
    for i in 0..5 {
        let (id, o) = s(admin
            .send(&e.room, |snd, r, salt| {
                builder::text(snd, r, salt, &format!("fanout {i}"))
            })
            .await)?;
        expect(
            matches!(o, SubmitOutcome::Accepted { .. }),
            format!("{o:?}"),
        )?;
        sent.push(id);
    }
    let bob = e.bob.as_mut().ok_or("setup failed")?;
    let got = collect(bob, sent.len()).await?;
    expect(
        got == sent,
        format!(
            "our user got {} of {} messages, or out of order",
            got.len(),
            sent.len()
        ),
    )
}

async fn collect(sess: &mut Session, n: usize) -> Result<Vec<mimi_content::MessageId>, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        for ev in s(sess.sync(2).await)? {
            if let Event::Message { id, .. } = ev {
                got.push(id);
            }
        }
    }
    // Nothing more (no duplicates).
    for ev in s(sess.sync(1).await)? {
        if let Event::Message { id, .. } = ev {
            got.push(id);
        }
    }
    Ok(got)
}

async fn fanout_retry(e: &mut Env) -> Res {
    // Our side goes away; the hub must keep what it accepted and deliver it once we are back.
    e.stop_ours().await;
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    let mut sent = Vec::new();
    for i in 0..3 {
        let (id, o) = s(admin
            .send(&e.room, |snd, r, salt| {
                builder::text(snd, r, salt, &format!("while you were away {i}"))
            })
            .await)?;
        expect(
            matches!(o, SubmitOutcome::Accepted { .. }),
            format!("{o:?}"),
        )?;
        sent.push(id);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    s(e.start_ours().await)?;
    let bob = e.bob.as_mut().ok_or("setup failed")?;
    let got = collect(bob, sent.len()).await?;
    expect(
        got == sent,
        format!(
            "after our restart: got {} of {} messages, or out of order or twice",
            got.len(),
            sent.len()
        ),
    )
}

async fn hub_malformed_bodies(e: &mut Env) -> Res {
    let mut problems = Vec::new();
    for ep in [
        Endpoint::Update,
        Endpoint::SubmitMessage,
        Endpoint::GroupInfo,
        Endpoint::ReportAbuse,
    ] {
        for (what, body) in bad_bodies() {
            let g = s(e.post(ep, &e.room, body).await)?;
            if !(400..500).contains(&g.status) {
                problems.push(format!("{} with {what}: {}", ep.name(), g.status));
            }
        }
    }
    let admin = e.admin.as_ref().ok_or("setup failed")?.user().to_owned();
    for (what, body) in bad_bodies() {
        let g = s(e.post(Endpoint::KeyMaterial, &admin, body).await)?;
        if !(400..500).contains(&g.status) {
            problems.push(format!("keyMaterial with {what}: {}", g.status));
        }
    }
    expect(problems.is_empty(), problems.join("; "))
}

/// The malformed bodies every endpoint must refuse with a 4xx.
pub fn bad_bodies() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("garbage", b"\xff\xfe\xfd garbage".to_vec()),
        ("a truncated vector", vec![0x01, 0x40]),
        (
            "an oversize length prefix",
            vec![0x01, 0xbf, 0xff, 0xff, 0xff],
        ),
        ("an unknown enum value", vec![0x7f; 8]),
    ]
}

/// Tests of the hub role, in order.
pub fn hub_tests() -> Vec<Test> {
    vec![
        test!("directory", "protocol §2 (directory)", true, directory),
        test!(
            "mtls-no-certificate",
            "protocol §3 (transport security)",
            true,
            mtls_no_certificate
        ),
        test!(
            "mtls-unknown-ca",
            "protocol §3 (transport security)",
            true,
            mtls_unknown_ca
        ),
        test!(
            "from-mismatch",
            "protocol §3 (peer identity)",
            true,
            from_mismatch
        ),
        test!(
            "hub-setup",
            "protocol §5.2 (room creation via hook)",
            true,
            hub_setup
        ),
        test!(
            "keymaterial-happy",
            "protocol §5.1 (keyMaterial)",
            true,
            keymaterial_happy
        ),
        test!("update-happy", "protocol §5.2 (update)", true, update_happy),
        test!(
            "submit-happy",
            "protocol §5.4 (submitMessage)",
            true,
            submit_happy
        ),
        test!(
            "groupinfo-external-join",
            "protocol §5.6 (groupInfo)",
            true,
            groupinfo_and_external_join
        ),
        test!(
            "report-abuse",
            "protocol §5.9 (reportAbuse, frank verification)",
            true,
            report_abuse
        ),
        test!(
            "proxy-download",
            "protocol §5.10 (proxyDownload)",
            true,
            proxy_download
        ),
        test!(
            "wrong-epoch",
            "protocol §5.2 (update: wrongEpoch)",
            true,
            wrong_epoch
        ),
        test!(
            "epoch-too-old",
            "protocol §5.4 (submitMessage: epochTooOld)",
            true,
            epoch_too_old
        ),
        test!(
            "policy-non-participant",
            "room-policy §4 (send requires participation)",
            true,
            policy_non_participant
        ),
        test!(
            "policy-unauthorised-add",
            "room-policy §4 (role changes by capability)",
            true,
            policy_unauthorised_add
        ),
        test!(
            "policy-banned-commit",
            "room-policy §4 (banned users)",
            true,
            policy_banned_commit
        ),
        test!(
            "policy-fixed-membership",
            "room-policy §5 (fixed membership)",
            true,
            policy_fixed_membership
        ),
        test!(
            "fanout-in-order",
            "protocol §5.3 (fan-out)",
            true,
            fanout_in_order
        ),
        test!(
            "fanout-retry",
            "protocol §5.3 (fan-out retries)",
            true,
            fanout_retry
        ),
        test!(
            "malformed-bodies",
            "protocol §5 (errors)",
            true,
            hub_malformed_bodies
        ),
        test!("oversize-body", "protocol §5 (errors)", true, oversize_body),
        test!(
            "rate-limit-retry-after",
            "protocol §5 (overload, Retry-After)",
            false,
            rate_limit_retry_after
        ),
    ]
}

// --- follower role: we host the room, the target follows it ----------------------------------

async fn follower_setup(e: &mut Env) -> Res {
    let mut admin = e.session(true, "confhub", "d", 4).await?;
    let tom = e.session(false, "conftom", "d", 6).await?;
    e.room = format!("mimi://{}/r/conff{}", e.o.our_domain, e.run);
    let mut setup = RoomSetup::named("conformance");
    setup.franking = false;
    s(admin.create_room(&e.room, &setup).await)?;
    e.admin = Some(admin);
    e.tom = Some(tom);
    Ok(())
}

async fn keymaterial_served(e: &mut Env) -> Res {
    let admin = e.admin.as_ref().ok_or("setup failed")?;
    let tom = e.tom.as_ref().ok_or("setup failed")?.user().to_owned();
    let mut kps = Vec::new();
    for _ in 0..2 {
        let g = s(e
            .post(
                Endpoint::KeyMaterial,
                &tom,
                admin.member.key_material_request(&tom, ""),
            )
            .await)?;
        expect(g.status == 200, format!("{} {}", g.status, g.text()))?;
        let r = s(KeyMaterialResponse::from_bytes(&g.body))?;
        match r.clients.first() {
            Some(ClientKeyMaterial::Success { key_package, .. })
                if r.user_status == KeyMaterialUserCode::Success =>
            {
                kps.push(key_package.to_bytes())
            }
            _ => return Err(format!("{r:?}")),
        }
    }
    expect(kps[0] != kps[1], "the same KeyPackage was handed out twice")
}

async fn welcome_routing(e: &mut Env) -> Res {
    let tom = e.tom.as_ref().ok_or("setup failed")?.user().to_owned();
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    expect(
        s(admin.add(&e.room, &[(tom, role::MEMBER)]).await)? == Verdict::Accepted,
        "our hub could not add the target's user",
    )?;
    let tom = e.tom.as_mut().ok_or("setup failed")?;
    wait_event(tom, "the Welcome at the target's user", |ev| {
        matches!(ev, Event::Joined { .. })
    })
    .await
}

async fn notify_happy(e: &mut Env) -> Res {
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    s(admin
        .send(&e.room, |snd, r, salt| {
            builder::text(snd, r, salt, "notify happy")
        })
        .await)?;
    let tom = e.tom.as_mut().ok_or("setup failed")?;
    wait_message(tom, "the fanned-out message", |m| {
        text_of(m) == "notify happy"
    })
    .await
    .map(|_| ())
}

fn fanout_of(submit: &[u8]) -> Result<FanoutMessage, String> {
    let req = s(SubmitMessageRequest::from_bytes(submit))?;
    Ok(FanoutMessage {
        timestamp: now_ms(),
        message: req.app_message,
        extra: FanoutExtra::Application { frank: None },
    })
}

async fn notify_duplicate(e: &mut Env) -> Res {
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    let (body, msg) = s(admin.member.send(&e.room, |snd, r, salt| {
        builder::text(snd, r, salt, "sent twice")
    }))?;
    let id = s(msg.id())?;
    let fm = fanout_of(&body)?.to_bytes();
    for i in 0..2 {
        let g = s(e.post(Endpoint::Notify, &e.room, fm.clone()).await)?;
        expect(
            g.status == 201,
            format!(
                "/notify copy {}: expected 201, got {} {}",
                i + 1,
                g.status,
                g.text()
            ),
        )?;
    }
    let tom = e.tom.as_mut().ok_or("setup failed")?;
    let got = collect(tom, 1).await?;
    expect(
        got.iter().filter(|g| **g == id).count() == 1,
        format!(
            "the duplicated message was delivered {} times",
            got.iter().filter(|g| **g == id).count()
        ),
    )
}

async fn notify_batch(e: &mut Env) -> Res {
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    let mut body = Vec::new();
    let mut ids = Vec::new();
    for t in ["batch one", "batch two"] {
        let (b, m) = s(admin
            .member
            .send(&e.room, |snd, r, salt| builder::text(snd, r, salt, t)))?;
        ids.push(s(m.id())?);
        body.extend(fanout_of(&b)?.to_bytes());
    }
    let g = s(e.post(Endpoint::Notify, &e.room, body).await)?;
    expect(
        g.status == 201,
        format!(
            "a /notify body of two FanoutMessages: {} {}",
            g.status,
            g.text()
        ),
    )?;
    let tom = e.tom.as_mut().ok_or("setup failed")?;
    let got = collect(tom, 2).await?;
    expect(
        got == ids,
        format!("expected both messages in order, got {got:?}"),
    )
}

async fn notify_not_from_hub(e: &mut Env) -> Res {
    let room = format!("mimi://{}/r/not-ours{}", e.o.target_domain, e.run);
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    let (b, _) = s(admin.member.send(&e.room, |snd, r, salt| {
        builder::text(snd, r, salt, "forged")
    }))?;
    let g = s(e
        .post(Endpoint::Notify, &room, fanout_of(&b)?.to_bytes())
        .await)?;
    not_5xx(&g, "/notify for a room we do not host")
}

async fn follower_malformed_bodies(e: &mut Env) -> Res {
    let tom = e.tom.as_ref().ok_or("setup failed")?.user().to_owned();
    let mut problems = Vec::new();
    for (ep, value) in [
        (Endpoint::Notify, e.room.clone()),
        (Endpoint::KeyMaterial, tom.clone()),
        (Endpoint::RequestConsent, tom.clone()),
        (Endpoint::UpdateConsent, tom.clone()),
        (Endpoint::IdentifierQuery, e.o.target_domain.clone()),
    ] {
        for (what, body) in bad_bodies() {
            let g = s(e.post(ep, &value, body).await)?;
            if !(400..500).contains(&g.status) {
                problems.push(format!("{} with {what}: {}", ep.name(), g.status));
            }
        }
    }
    expect(problems.is_empty(), problems.join("; "))
}

async fn identifier_query(e: &mut Env) -> Res {
    let tom = e.tom.as_ref().ok_or("setup failed")?.user().to_owned();
    let req = IdentifierRequest {
        query_elements: vec![QueryElement {
            search_type: SearchIdentifierType::Handle,
            field_name: None,
            search_value: Utf8(tom.clone()),
        }],
        id_request_extensions: AppDataDictionary::default(),
    };
    let g = s(e
        .post(
            Endpoint::IdentifierQuery,
            &e.o.target_domain,
            req.to_bytes(),
        )
        .await)?;
    expect(g.status == 200, format!("{} {}", g.status, g.text()))?;
    let r = s(IdentifierResponse::from_bytes(&g.body))?;
    expect(
        r.response_code == IdentifierQueryCode::Success && r.uri.iter().any(|u| u.as_str() == tom),
        format!("{r:?}"),
    )
}

async fn request_consent(e: &mut Env) -> Res {
    let tom = e.tom.as_ref().ok_or("setup failed")?.user().to_owned();
    let admin = e.admin.as_ref().ok_or("setup failed")?.user().to_owned();
    let entry = ConsentEntry {
        consent_operation: ConsentOperation::Request,
        requester_uri: Uri::from(admin.as_str()),
        target_uri: Uri::from(tom.as_str()),
        room_id: None,
        client_key_packages: vec![],
        consent_extensions: AppDataDictionary::default(),
    };
    let g = s(e
        .post(Endpoint::RequestConsent, &tom, entry.to_bytes())
        .await)?;
    expect(
        (200..300).contains(&g.status),
        format!("{} {}", g.status, g.text()),
    )
}

async fn update_consent(e: &mut Env) -> Res {
    let tom = e.tom.as_ref().ok_or("setup failed")?.user().to_owned();
    let admin = e.admin.as_ref().ok_or("setup failed")?.user().to_owned();
    // Our user grants the target's user consent: sent to the requester's provider.
    let entry = ConsentEntry {
        consent_operation: ConsentOperation::Grant,
        requester_uri: Uri::from(tom.as_str()),
        target_uri: Uri::from(admin.as_str()),
        room_id: None,
        client_key_packages: vec![],
        consent_extensions: AppDataDictionary::default(),
    };
    let g = s(e
        .post(Endpoint::UpdateConsent, &tom, entry.to_bytes())
        .await)?;
    expect(
        (200..300).contains(&g.status),
        format!("{} {}", g.status, g.text()),
    )?;
    // A grant about a user of another provider than ours is refused.
    let forged = ConsentEntry {
        target_uri: Uri::from(tom.as_str()),
        requester_uri: Uri::from(admin.as_str()),
        ..entry
    };
    let g = s(e
        .post(Endpoint::UpdateConsent, &admin, forged.to_bytes())
        .await)?;
    not_5xx(&g, "updateConsent about a user we do not host")
}

/// Tests of the follower role, in order.
pub fn follower_tests() -> Vec<Test> {
    vec![
        test!("directory", "protocol §2 (directory)", true, directory),
        test!(
            "mtls-no-certificate",
            "protocol §3 (transport security)",
            true,
            mtls_no_certificate
        ),
        test!(
            "mtls-unknown-ca",
            "protocol §3 (transport security)",
            true,
            mtls_unknown_ca
        ),
        test!(
            "from-mismatch",
            "protocol §3 (peer identity)",
            true,
            from_mismatch
        ),
        test!(
            "follower-setup",
            "protocol §5.2 (room hosted by the suite)",
            true,
            follower_setup
        ),
        test!(
            "keymaterial-served",
            "protocol §5.1 (keyMaterial, never twice)",
            true,
            keymaterial_served
        ),
        test!(
            "welcome-routing",
            "protocol §5.3 (Welcome by KeyPackageRef)",
            true,
            welcome_routing
        ),
        test!("notify-happy", "protocol §5.3 (notify)", true, notify_happy),
        test!(
            "notify-duplicate",
            "protocol §5.3 (duplicate notify: 201, once)",
            true,
            notify_duplicate
        ),
        test!(
            "notify-batch",
            "protocol §5.3 (several FanoutMessages per body)",
            true,
            notify_batch
        ),
        test!(
            "notify-not-from-hub",
            "protocol §5.3 (notify only from the hub)",
            true,
            notify_not_from_hub
        ),
        test!(
            "identifier-query",
            "protocol §5.8 (identifierQuery)",
            true,
            identifier_query
        ),
        test!(
            "request-consent",
            "protocol §5.7 (requestConsent)",
            true,
            request_consent
        ),
        test!(
            "update-consent",
            "protocol §5.7 (updateConsent)",
            true,
            update_consent
        ),
        test!(
            "malformed-bodies",
            "protocol §5 (errors)",
            true,
            follower_malformed_bodies
        ),
        test!("oversize-body", "protocol §5 (errors)", true, oversize_body),
        test!(
            "rate-limit-retry-after",
            "protocol §5 (overload, Retry-After)",
            false,
            rate_limit_retry_after
        ),
    ]
}

/// Runs `tests` in order with a progress bar on standard error.
pub async fn run(env: &mut Env, tests: Vec<Test>) -> Vec<Outcome> {
    let tests: Vec<Test> = tests
        .into_iter()
        .filter(|t| {
            env.o
                .only
                .as_deref()
                .is_none_or(|o| t.id.starts_with(o) || t.id.ends_with("setup"))
        })
        .collect();
    let n = tests.len();
    let tty = std::io::stderr().is_terminal();
    let mut out = Vec::new();
    for (i, t) in tests.into_iter().enumerate() {
        let bar = format!(
            "[{}{}] {:>2}/{n} {}",
            "#".repeat(i * 20 / n.max(1)),
            " ".repeat(20 - i * 20 / n.max(1)),
            i + 1,
            t.id
        );
        if tty {
            eprint!("\r\x1b[2K{bar}");
        } else {
            eprintln!("{bar}");
        }
        let _ = std::io::stderr().flush();
        let start = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(120), (t.run)(env))
            .await
            .unwrap_or_else(|_| Err("timed out after 120 s".into()));
        let (status, reason) = match r {
            Ok(()) => (Status::Pass, String::new()),
            Err(e) => (Status::Fail, e),
        };
        out.push(Outcome {
            id: t.id,
            section: t.section,
            required: t.required,
            status,
            reason,
            time: start.elapsed(),
        });
    }
    if tty {
        eprintln!("\r\x1b[2K[{}] {n}/{n} done", "#".repeat(20));
    }
    out
}
