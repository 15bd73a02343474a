//! A one-provider harness for the engine's unit tests: one shard over a [`MemStore`], steps
//! committed as the shell commits them, outputs collected.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use mimi_client::Member;
use mimi_proto::directory::Endpoint;
use mimi_proto::uri::Domain;
use openmls_basic_credential::SignatureKeyPair;
use sha2::Digest;

use crate::store::{MemStore, Store, commit};
use crate::{
    Auth, Body, ClientCall, ClientReply, ConsentPolicy, Engine, EngineConfig, Input, Limits,
    Output, Registration, Reply, Response, SendError, Shared,
};

pub(crate) const NOW: u64 = 1_800_000_000_000;

pub(crate) struct Harness {
    pub(crate) engine: Engine,
    pub(crate) store: Arc<MemStore>,
    pub(crate) now: u64,
    next: u64,
    /// Sends waiting for a reply: id → (to, endpoint, target, body).
    pub(crate) sent: BTreeMap<u64, (Domain, Endpoint, String, Bytes)>,
}

pub(crate) fn config(domain: &str, limits: Limits) -> EngineConfig {
    EngineConfig {
        domain: Domain::parse(domain).unwrap(),
        hub_signer: SignatureKeyPair::new(mimi_client::CIPHERSUITE.signature_algorithm()).unwrap(),
        franking_key: vec![3; 32],
        consent: ConsentPolicy::Open,
        asset_domains: BTreeMap::new(),
        registration: Registration::OpenNewUsers,
        partial_name_search: false,
        limits,
    }
}

/// The text of a refusal.
pub(crate) fn text(r: &Response) -> String {
    match &r.body {
        Body::Refused(x) => x.to_string(),
        other => format!("{other:?}"),
    }
}

impl Harness {
    pub(crate) fn new(domain: &str) -> Self {
        Self::with(config(domain, Limits::default()))
    }

    pub(crate) fn with(cfg: EngineConfig) -> Self {
        let store = Arc::new(MemStore::default());
        let engine = Engine::new(
            Arc::new(cfg),
            openmls_rust_crypto::RustCrypto::default(),
            Arc::clone(&store) as Arc<dyn Store>,
            0,
            1,
            Arc::new(Shared::default()),
        )
        .unwrap();
        Self {
            engine,
            store,
            now: NOW,
            next: 1,
            sent: BTreeMap::new(),
        }
    }

    /// One step: handle, commit, outputs.
    pub(crate) fn step(&mut self, input: Input) -> Vec<Output> {
        self.now += 1;
        self.engine.handle(self.now, input);
        let w = self.engine.take_writes().unwrap();
        commit(self.store.as_ref(), &[&w]).unwrap();
        self.engine.committed();
        let mut out = Vec::new();
        while let Some(o) = self.engine.poll_output() {
            if let Output::Send {
                id,
                to,
                endpoint,
                target,
                body,
            } = &o
            {
                self.sent
                    .insert(*id, (to.clone(), *endpoint, target.clone(), body.clone()));
            }
            out.push(o);
        }
        out
    }

    fn answer(&mut self, input: Input, id: u64) -> Response {
        self.step(input)
            .into_iter()
            .find_map(|o| match o {
                Output::Respond { id: i, response } if i == id => Some(response),
                _ => None,
            })
            .expect("an answer")
    }

    pub(crate) fn call(&mut self, auth: Auth, call: ClientCall) -> Response {
        let id = self.next;
        self.next += 1;
        self.answer(Input::Client { id, auth, call }, id)
    }

    pub(crate) fn peer(
        &mut self,
        peer: &str,
        endpoint: Endpoint,
        target: &str,
        body: Vec<u8>,
    ) -> Response {
        let id = self.next;
        self.next += 1;
        self.answer(
            Input::Peer {
                id,
                peer: Domain::parse(peer).unwrap(),
                endpoint,
                target: target.to_owned(),
                body: body.into(),
            },
            id,
        )
    }

    /// Answers an earlier send.
    pub(crate) fn reply(&mut self, id: u64, result: Result<Reply, SendError>) -> Vec<Output> {
        self.sent.remove(&id);
        self.step(Input::Reply { id, result })
    }

    /// Registers a member's client (open registration) with `kps` KeyPackages; its auth.
    pub(crate) fn register(&mut self, m: &Member, kps: usize) -> Auth {
        let client = m
            .client_uri()
            .parse::<mimi_proto::uri::ClientUri>()
            .unwrap();
        let token: [u8; 32] = sha2::Sha256::digest(m.client_uri()).into();
        let r = self.call(
            Auth::Anonymous,
            ClientCall::Register {
                user: client.user_name().into(),
                device: client.device().into(),
                display_name: String::new(),
                new_token_hash: token,
            },
        );
        assert_eq!(r.status, 201, "{}", text(&r));
        let auth = self.auth(&token);
        if kps > 0 {
            let r = self.call(
                auth.clone(),
                ClientCall::PublishKeyPackages {
                    key_packages: m.key_packages(kps).unwrap(),
                    last_resort: None,
                },
            );
            assert_eq!(r.status, 200, "{}", text(&r));
        }
        auth
    }

    pub(crate) fn auth(&self, token: &[u8; 32]) -> Auth {
        crate::authenticate(self.store.as_ref(), self.engine.domain(), token)
            .unwrap()
            .map_or(Auth::Anonymous, Auth::Client)
    }

    /// The hub's external-sender entry.
    pub(crate) fn hub_sender(&mut self) -> Vec<u8> {
        match self.call(Auth::Anonymous, ClientCall::HubInfo).body {
            Body::Client(ClientReply::HubInfo(h)) => h.external_sender.0,
            _ => panic!("no hub info"),
        }
    }

    /// `creator` creates `room` here.
    pub(crate) fn create_room(&mut self, creator: &mut Member, auth: &Auth, room: &str) {
        let es = self.hub_sender();
        let c = creator
            .create_room(room, &es, &mimi_client::RoomSetup::named("t"))
            .unwrap();
        let r = self.call(
            auth.clone(),
            ClientCall::CreateRoom {
                room: room.into(),
                group_info: c.group_info,
                ratchet_tree: c.ratchet_tree,
            },
        );
        assert_eq!(r.status, 201, "{}", text(&r));
    }
}

/// A room `mimi://a.example/r/t` hosted here with alice (admin, local) and bob of b.example,
/// whose KeyPackage this hub proxied; the outbox to b.example is empty again afterwards.
pub(crate) fn room_with_remote_member() -> (Harness, Member, Auth, Member) {
    room_with_remote_member_limited(Limits::default())
}

/// [`room_with_remote_member`] with these limits.
pub(crate) fn room_with_remote_member_limited(limits: Limits) -> (Harness, Member, Auth, Member) {
    use mimi_proto::codec::{Uri, Wire};
    use mimi_proto::messages::{
        ClientKeyMaterial, KeyMaterialResponse, KeyMaterialUserCode, Protocol,
    };
    let mut h = Harness::with(config("a.example", limits));
    let mut alice = Member::new("a.example", "alice", "phone");
    let auth = h.register(&alice, 1);
    let room = "mimi://a.example/r/t";
    h.create_room(&mut alice, &auth, room);
    let bob = Member::new("b.example", "bob", "laptop");
    let req = alice.key_material_request(bob.user(), room);
    let out = h.step(Input::Client {
        id: 900,
        auth: auth.clone(),
        call: ClientCall::Room {
            endpoint: Endpoint::KeyMaterial,
            target: bob.user().into(),
            body: req.into(),
        },
    });
    let send = out
        .iter()
        .find_map(|o| match o {
            Output::Send { id, to, .. } if to.as_str() == "b.example" => Some(*id),
            _ => None,
        })
        .expect("the hub asks b.example");
    let kp = bob.key_packages(1).unwrap().remove(0);
    let resp = KeyMaterialResponse {
        protocol: Protocol::Mls10,
        user_status: KeyMaterialUserCode::Success,
        user_uri: Uri::from(bob.user()),
        clients: vec![ClientKeyMaterial::Success {
            client_uri: Uri::from(bob.client_uri()),
            key_package: mimi_proto::mls::KeyPackage::from_bytes(&kp).unwrap(),
        }],
    };
    let out = h.reply(
        send,
        Ok(Reply {
            status: 200,
            body: resp.to_bytes().into(),
            retry_after_ms: None,
        }),
    );
    let km = out
        .iter()
        .find_map(|o| match o {
            Output::Respond { id: 900, response } => Some(response.clone()),
            _ => None,
        })
        .unwrap();
    let kps = alice
        .key_packages_from_response(match &km.body {
            Body::Mimi(b) => b,
            _ => panic!("{}", text(&km)),
        })
        .unwrap();
    let bundle = alice
        .add_participants(
            room,
            &[(bob.user().into(), mimi_client::role::MEMBER)],
            &kps,
        )
        .unwrap();
    let r = h.call(
        auth.clone(),
        ClientCall::Room {
            endpoint: Endpoint::Update,
            target: room.into(),
            body: bundle.into(),
        },
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    alice.commit_accepted(room).unwrap();
    // Deliver the commit and the Welcome to b.example.
    h.drain_notifies(201);
    (h, alice, auth, bob)
}

impl Harness {
    /// Answers every `/notify` sent so far with `status` until none is pending.
    pub(crate) fn drain_notifies(&mut self, status: u16) -> usize {
        let mut n = 0;
        loop {
            let pending: Vec<u64> = self
                .sent
                .iter()
                .filter(|(_, (_, e, _, _))| *e == Endpoint::Notify)
                .map(|(id, _)| *id)
                .collect();
            if pending.is_empty() {
                return n;
            }
            for id in pending {
                n += 1;
                self.reply(
                    id,
                    Ok(Reply {
                        status,
                        body: Bytes::new(),
                        retry_after_ms: None,
                    }),
                );
            }
        }
    }

    /// `m` sends `text` in `room` through this hub; the response.
    pub(crate) fn say(&mut self, m: &mut Member, auth: &Auth, room: &str, text: &str) -> Response {
        let (body, _) = m
            .send(room, |s, r, salt| {
                mimi_content::builder::text(s, r, salt, text)
            })
            .unwrap();
        self.call(
            auth.clone(),
            ClientCall::Room {
                endpoint: Endpoint::SubmitMessage,
                target: room.into(),
                body: body.into(),
            },
        )
    }
}
