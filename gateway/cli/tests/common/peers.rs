//! Real Matrix and XMPP clients for the bridge tests (tests/peers/driver.py, matrix-nio and
//! slixmpp in the venv of `scripts/peers.sh`), and helpers to read what they see.

#![allow(dead_code)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use mimi_adapters::xml::Element;
use mimi_client::Event;
use mimi_content::MessageId;
use mimi_session::Session;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// How long a side waits for what another side did.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn env(k: &str, d: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| d.to_owned())
}

/// The Python clients (tests/peers/driver.py).
pub struct Driver {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Driver {
    pub fn start() -> Self {
        let py = env(
            "MIMI_PEERS_PYTHON",
            &format!(
                "{}/../../target/peers/venv-tools/bin/python",
                env!("CARGO_MANIFEST_DIR")
            ),
        );
        let mut child = tokio::process::Command::new(py)
            .arg(format!(
                "{}/tests/peers/driver.py",
                env!("CARGO_MANIFEST_DIR")
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the tools venv of scripts/peers.sh (run scripts/peers.sh start)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            stdout,
        }
    }

    pub async fn call(&mut self, req: Value) -> Value {
        let v = self.try_call(req.clone()).await;
        assert_eq!(v["ok"], true, "{req} -> {v}");
        v
    }

    /// A call that may fail (its answer says so).
    pub async fn try_call(&mut self, req: Value) -> Value {
        self.stdin
            .write_all(format!("{req}\n").as_bytes())
            .await
            .unwrap();
        let line = tokio::time::timeout(Duration::from_secs(60), self.stdout.next_line())
            .await
            .expect("driver answer")
            .unwrap()
            .expect("driver alive");
        serde_json::from_str(&line).unwrap()
    }

    /// Matrix: waits for a timeline event matching `pred`.
    pub async fn mx_wait(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let r = self
                .call(json!({"op": "mx_poll", "timeout_ms": 1000}))
                .await;
            if let Some(e) = r["events"].as_array().unwrap().iter().find(|e| pred(e)) {
                return e.clone();
            }
        }
        panic!("Matrix never saw {what}");
    }

    /// XMPP: waits for a stanza matching `pred`.
    pub async fn xm_wait(&mut self, what: &str, pred: impl Fn(&Element) -> bool) -> Element {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let r = self
                .call(json!({"op": "xm_poll", "timeout_ms": 1000}))
                .await;
            for s in r["stanzas"].as_array().unwrap() {
                let e = Element::parse(s.as_str().unwrap(), "jabber:client").unwrap();
                if pred(&e) {
                    return e;
                }
            }
        }
        panic!("XMPP never saw {what}");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

pub fn body(e: &Element) -> String {
    e.find("body", &e.ns).map(Element::text).unwrap_or_default()
}

pub fn child_attr(e: &Element, name: &str, ns: &str, attr: &str) -> Option<String> {
    e.find(name, ns)
        .and_then(|c| c.get(attr))
        .map(str::to_owned)
}

pub fn stanza_id(e: &Element) -> String {
    child_attr(e, "stanza-id", "urn:xmpp:sid:0", "id").unwrap()
}

pub fn origin_id(e: &Element) -> String {
    child_attr(e, "origin-id", "urn:xmpp:sid:0", "id")
        .unwrap_or_else(|| e.get("id").unwrap_or("").to_owned())
}

pub fn from_nick(e: &Element) -> String {
    e.get("from")
        .and_then(|f| f.split_once('/'))
        .map(|(_, n)| n.to_owned())
        .unwrap_or_default()
}

/// Alice (native) waits for a message matching `pred`.
pub async fn native_wait(
    s: &mut Session,
    what: &str,
    pred: impl Fn(&str, &mimi_content::Message) -> bool,
) -> (MessageId, mimi_content::Message) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        for e in s.sync(2).await.unwrap() {
            if let Event::Message {
                sender,
                message,
                id,
                ..
            } = e
                && pred(&sender, &message)
            {
                return (id, message);
            }
        }
    }
    panic!("the native client never saw {what}");
}

pub fn b64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

pub fn text(m: &mimi_content::Message) -> String {
    mimi_adapters::text::text_of(&m.content().nested_part)
        .map(|t| t.plain)
        .unwrap_or_default()
}
