//! `mimi demo`: three providers on loopback share one MLS room hosted by one of them, and a
//! short conversation is played while each provider's users report what they see.
//!
//! Every gateway is complete (its own redb file, certificates from a generated development
//! CA, HTTP/3 between gateways, the client API for its users). The script: alice (a.example,
//! the hub) creates the room and adds bob (b.example) and carol (c.example); alice says hello,
//! bob replies, carol reacts, alice edits her message, bob deletes his reply, carol's second
//! device joins by external commit and speaks, alice removes bob and says goodbye. At the end
//! each client's view of the room is compared with the expected one.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use mimi_client::{Event, RoomSetup, role};
use mimi_content::builder;
use mimi_content::render::plain_text;
use mimi_content::timeline::Entry;
use mimi_proto::messages::SubmitOutcome;
use serde_json::json;

use crate::local::LocalFederation;
use mimi_session::{Session, Verdict};

/// The room of the demo.
pub const ROOM: &str = "mimi://a.example/r/demo";
const DOMAINS: [&str; 3] = ["a.example", "b.example", "c.example"];
const WAIT_S: u64 = 15;

/// How the transcript is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// The outcome: whether every view matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Clients whose final view differs from the expected one, with the difference.
    pub mismatches: Vec<String>,
}

struct Out<'a> {
    w: &'a mut dyn Write,
    format: Format,
    step: usize,
}

impl Out<'_> {
    fn action(&mut self, actor: &str, what: &str) -> anyhow::Result<()> {
        self.step += 1;
        match self.format {
            Format::Text => writeln!(self.w, "\n== {}. {actor}: {what}", self.step)?,
            Format::Json => writeln!(
                self.w,
                "{}",
                json!({"step": self.step, "type": "action", "actor": actor, "action": what})
            )?,
        }
        Ok(())
    }

    fn saw(&mut self, who: &str, what: &serde_json::Value, line: &str) -> anyhow::Result<()> {
        match self.format {
            Format::Text => writeln!(self.w, "   {who:<28} {line}")?,
            Format::Json => {
                let mut v = json!({"step": self.step, "type": "seen", "client": who});
                if let (Some(o), Some(extra)) = (v.as_object_mut(), what.as_object()) {
                    o.extend(extra.clone());
                }
                writeln!(self.w, "{v}")?;
            }
        }
        Ok(())
    }
}

fn short(uri: &str) -> String {
    // mimi://a.example/u/alice -> alice@a.example
    uri.strip_prefix("mimi://")
        .and_then(|r| r.split_once("/u/"))
        .map_or_else(|| uri.to_owned(), |(d, u)| format!("{u}@{d}"))
}

fn label(s: &Session) -> String {
    let c = s.member.client_uri();
    // mimi://c.example/d/carol/laptop -> carol@c.example (laptop)
    c.strip_prefix("mimi://")
        .and_then(|r| r.split_once("/d/"))
        .and_then(|(d, rest)| {
            rest.split_once('/')
                .map(|(u, dev)| format!("{u}@{d} ({dev})"))
        })
        .unwrap_or_else(|| c.to_owned())
}

/// Reports what a client saw.
fn report(out: &mut Out<'_>, s: &Session, events: &[Event]) -> anyhow::Result<()> {
    let who = label(s);
    for e in events {
        let (v, line) = match e {
            Event::Joined { room } => (
                json!({"event": "joined", "room": room}),
                format!("joined {room}"),
            ),
            Event::Removed { room } => (
                json!({"event": "removed", "room": room}),
                format!("was removed from {room}"),
            ),
            Event::Committed { epoch, .. } => (
                json!({"event": "commit", "epoch": epoch}),
                format!("room changed (epoch {epoch})"),
            ),
            Event::Message {
                sender,
                message,
                frank_ok,
                ..
            } => {
                let text = plain_text(message.content());
                let franked = match frank_ok {
                    Some(true) => " [franked]",
                    Some(false) => " [BAD FRANK]",
                    None => "",
                };
                (
                    json!({"event": "message", "sender": sender, "text": text, "frank_ok": frank_ok}),
                    format!("sees {}: {text}{franked}", short(sender)),
                )
            }
            Event::Proposed { .. } | Event::Ignored { .. } => continue,
        };
        out.saw(&who, &v, &line)?;
    }
    Ok(())
}

/// Lets every listed client sync until it sees an event matching `pred`, and reports.
async fn settle(
    out: &mut Out<'_>,
    clients: &mut [&mut Session],
    pred: impl Fn(&Event) -> bool + Copy,
) -> anyhow::Result<()> {
    for s in clients.iter_mut() {
        let evs = s.sync_until(WAIT_S, pred).await?;
        report(out, s, &evs)?;
    }
    Ok(())
}

fn is_message(e: &Event) -> bool {
    matches!(e, Event::Message { .. })
}

fn is_commit(e: &Event) -> bool {
    matches!(
        e,
        Event::Committed { .. } | Event::Joined { .. } | Event::Removed { .. }
    )
}

fn accepted(o: &SubmitOutcome) -> anyhow::Result<()> {
    anyhow::ensure!(
        matches!(o, SubmitOutcome::Accepted { .. }),
        "the hub refused a message: {o:?}"
    );
    Ok(())
}

fn added(v: &Verdict) -> anyhow::Result<()> {
    anyhow::ensure!(*v == Verdict::Accepted, "the hub refused a commit: {v:?}");
    Ok(())
}

/// An expected entry: sender, text, edited, deleted, reactions (emoji → users).
type Expected = (
    String,
    String,
    bool,
    bool,
    BTreeMap<String, BTreeSet<String>>,
);

fn actual(s: &Session) -> Vec<Expected> {
    s.views
        .get(ROOM)
        .map(|t| {
            t.entries()
                .iter()
                .map(|e: &Entry| {
                    (
                        e.sender.clone(),
                        e.text.clone(),
                        e.edited,
                        e.deleted,
                        e.reactions.clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the demo in `dir` (created; left for inspection), writing the transcript to `w`.
///
/// # Errors
/// Failures to start the gateways or to play a step (a refused step is an error).
pub async fn run(dir: &Path, format: Format, w: &mut dyn Write) -> anyhow::Result<Outcome> {
    let fed = LocalFederation::start(&DOMAINS, dir, |_| {}).await?;
    let result = play(&fed, format, w).await;
    fed.shutdown().await;
    result
}

async fn play(fed: &LocalFederation, format: Format, w: &mut dyn Write) -> anyhow::Result<Outcome> {
    let mut out = Out { w, format, step: 0 };
    if format == Format::Text {
        for g in &fed.gateways {
            writeln!(
                out.w,
                "{:<10} {}  client_api={}",
                g.domain, g.addrs, g.addrs.client_api
            )?;
        }
    }
    let api = |d: &str| fed.get(d).addrs.client_api;
    let mut alice = Session::register(api("a.example"), "a.example", "alice", "phone", 4).await?;
    let mut bob = Session::register(api("b.example"), "b.example", "bob", "laptop", 4).await?;
    let mut carol = Session::register(api("c.example"), "c.example", "carol", "tablet", 4).await?;
    let (a, b, c) = (
        alice.user().to_owned(),
        bob.user().to_owned(),
        carol.user().to_owned(),
    );

    out.action(
        "alice@a.example",
        &format!("creates {ROOM} (hosted by a.example)"),
    )?;
    alice
        .create_room(ROOM, &RoomSetup::named("MIMI demo"))
        .await?;

    out.action(
        "alice@a.example",
        "adds bob@b.example and carol@c.example (KeyPackages fetched through the hub)",
    )?;
    added(
        &alice
            .add(
                ROOM,
                &[(b.clone(), role::MEMBER), (c.clone(), role::MEMBER)],
            )
            .await?,
    )?;
    settle(&mut out, &mut [&mut bob, &mut carol], |e| {
        matches!(e, Event::Joined { .. })
    })
    .await?;

    out.action("alice@a.example", "says hello")?;
    let (hello, o) = alice
        .send(ROOM, |s, r, salt| {
            builder::text(s, r, salt, "Hello from a.example! 👋")
        })
        .await?;
    accepted(&o)?;
    settle(&mut out, &mut [&mut bob, &mut carol], is_message).await?;

    out.action("bob@b.example", "replies")?;
    let (reply, o) = bob
        .send(ROOM, |s, r, salt| {
            builder::reply(s, r, salt, hello, "Hi Alice, Bob on b.example here")
        })
        .await?;
    accepted(&o)?;
    settle(&mut out, &mut [&mut alice, &mut carol], is_message).await?;

    out.action("carol@c.example", "reacts 👍 to alice's message")?;
    accepted(
        &carol
            .send(ROOM, |s, r, salt| {
                builder::reaction(s, r, salt, hello, "👍")
            })
            .await?
            .1,
    )?;
    settle(&mut out, &mut [&mut alice, &mut bob], is_message).await?;

    out.action("alice@a.example", "edits her message")?;
    accepted(
        &alice
            .send(ROOM, |s, r, salt| {
                builder::edit(
                    s,
                    r,
                    salt,
                    hello,
                    builder::plain_part("Hello everyone, from a.example! 👋"),
                )
            })
            .await?
            .1,
    )?;
    settle(&mut out, &mut [&mut bob, &mut carol], is_message).await?;

    out.action("bob@b.example", "deletes his reply")?;
    accepted(
        &bob.send(ROOM, |s, r, salt| builder::delete(s, r, salt, reply))
            .await?
            .1,
    )?;
    settle(&mut out, &mut [&mut alice, &mut carol], is_message).await?;

    out.action(
        "carol@c.example",
        "joins from a second device (laptop) by external commit",
    )?;
    let mut carol2 = carol.link_device("laptop", 2).await?;
    added(&carol2.external_join(ROOM).await?)?;
    settle(&mut out, &mut [&mut alice, &mut bob, &mut carol], is_commit).await?;

    out.action("carol@c.example (laptop)", "speaks from the new device")?;
    accepted(
        &carol2
            .send(ROOM, |s, r, salt| {
                builder::text(s, r, salt, "Carol's laptop is here too")
            })
            .await?
            .1,
    )?;
    settle(
        &mut out,
        &mut [&mut alice, &mut bob, &mut carol],
        is_message,
    )
    .await?;

    out.action("alice@a.example", "removes bob@b.example")?;
    added(&alice.remove(ROOM, std::slice::from_ref(&b)).await?)?;
    settle(
        &mut out,
        &mut [&mut bob, &mut carol, &mut carol2],
        is_commit,
    )
    .await?;

    out.action("alice@a.example", "says goodbye to bob")?;
    accepted(
        &alice
            .send(ROOM, |s, r, salt| {
                builder::text(s, r, salt, "Bob has left; bye Bob!")
            })
            .await?
            .1,
    )?;
    settle(&mut out, &mut [&mut carol, &mut carol2], is_message).await?;
    // Bob must not receive it: give it time to (wrongly) arrive.
    let late = bob.sync(1).await?;
    report(&mut out, &bob, &late)?;

    // The expected views.
    let thumbs: BTreeMap<String, BTreeSet<String>> = [("👍".to_owned(), [c.clone()].into())].into();
    let e_hello = (
        a.clone(),
        "Hello everyone, from a.example! 👋".to_owned(),
        true,
        false,
        thumbs,
    );
    let e_reply = (b.clone(), String::new(), false, true, BTreeMap::new());
    let e_laptop = (
        c.clone(),
        "Carol's laptop is here too".to_owned(),
        false,
        false,
        BTreeMap::new(),
    );
    let e_bye = (
        a.clone(),
        "Bob has left; bye Bob!".to_owned(),
        false,
        false,
        BTreeMap::new(),
    );
    let full = vec![
        e_hello.clone(),
        e_reply.clone(),
        e_laptop.clone(),
        e_bye.clone(),
    ];
    let expected: Vec<(&Session, Vec<Expected>)> = vec![
        (&alice, full.clone()),
        (&bob, vec![e_hello, e_reply, e_laptop.clone()]),
        (&carol, full),
        (&carol2, vec![e_laptop, e_bye]),
    ];
    let mut mismatches = Vec::new();
    match format {
        Format::Text => writeln!(out.w, "\n== what each client sees in the end")?,
        Format::Json => {}
    }
    for (s, want) in &expected {
        let got = actual(s);
        let lines: Vec<String> = s
            .views
            .get(ROOM)
            .map(|t| t.render())
            .unwrap_or_default()
            .into_iter()
            .map(|l| {
                [&a, &b, &c]
                    .iter()
                    .fold(l, |l, u| l.replace(u.as_str(), &short(u)))
            })
            .collect();
        let ok = got == *want;
        match format {
            Format::Text => {
                writeln!(
                    out.w,
                    "   {}{}",
                    label(s),
                    if ok {
                        ""
                    } else {
                        "   <-- differs from the expected view"
                    }
                )?;
                for l in &lines {
                    writeln!(out.w, "      {l}")?;
                }
            }
            Format::Json => writeln!(
                out.w,
                "{}",
                json!({"type": "view", "client": label(s), "lines": lines, "as_expected": ok})
            )?,
        }
        if !ok {
            mismatches.push(format!("{}: expected {want:?}, saw {got:?}", label(s)));
        }
    }
    match format {
        Format::Text if mismatches.is_empty() => {
            writeln!(out.w, "\nresult: every client's view is the expected one")?
        }
        Format::Text => writeln!(out.w, "\nresult: {} view(s) differ", mismatches.len())?,
        Format::Json => writeln!(
            out.w,
            "{}",
            json!({"type": "result", "ok": mismatches.is_empty(), "mismatches": mismatches})
        )?,
    }
    Ok(Outcome { mismatches })
}
