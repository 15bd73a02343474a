//! What one node of a cluster sends another: a request for a slot the other node orders
//! (a federation request as the entry node authenticated it, or a client call with the caller
//! the entry node authenticated), and the response, relayed as the owner made it.
//!
//! MessagePack (named fields), versioned by the path (`/_cluster/v1/forward`). The receiving
//! node trusts the caller fields: only a node presenting this domain's own certificate may
//! call the path (checked in [`crate::federation`]).

use bytes::Bytes;
use mimi_engine::{
    AdminCall, Auth, Body, ClientCall, ClientRecord, ClientReply, Input, Refusal, Response,
};
use mimi_proto::client_api::{HubInfo, Published, Registered, RoomCreated, Subscribed};
use mimi_proto::directory::Endpoint;
use mimi_proto::uri::{ClientUri, Domain, RoomUri, UserUri};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The media type of forwarded requests and responses.
pub const MEDIA_TYPE: &str = "application/vnd.mimi-cluster+msgpack";

/// Why a forwarded message does not decode.
#[derive(Debug, thiserror::Error)]
#[error("malformed cluster message: {0}")]
pub struct WireError(String);

/// A request for the node that orders its slot.
#[derive(Debug, Serialize, Deserialize)]
enum Forwarded {
    Peer {
        peer: Domain,
        endpoint: String,
        target: String,
        body: ByteBuf,
    },
    Client {
        auth: WireAuth,
        call: WireCall,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum WireAuth {
    Anonymous,
    Client {
        id: String,
        user: UserUri,
        uri: ClientUri,
    },
    Admin,
    Provider {
        user: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum WireCall {
    Register {
        user: String,
        device: String,
        display_name: String,
        new_token_hash: ByteBuf,
    },
    PublishKeyPackages {
        key_packages: Vec<ByteBuf>,
        last_resort: Option<ByteBuf>,
    },
    HubInfo,
    CreateRoom {
        room: String,
        group_info: ByteBuf,
        ratchet_tree: ByteBuf,
    },
    Room {
        endpoint: String,
        target: String,
        body: ByteBuf,
    },
    Consent(ByteBuf),
    IdentifierQuery {
        domain: String,
        body: ByteBuf,
    },
    Subscribe {
        room: String,
        on: bool,
    },
    RetryDeadLetters {
        follower: Domain,
        room: RoomUri,
    },
    DropDeadLetters {
        follower: Domain,
        room: RoomUri,
    },
    Resynced {
        follower: Domain,
    },
}

/// The owner's response.
#[derive(Debug, Serialize, Deserialize)]
struct WireResponse {
    status: u16,
    retry_after_s: Option<u64>,
    body: WireBody,
}

#[derive(Debug, Serialize, Deserialize)]
enum WireBody {
    Empty,
    Mimi(ByteBuf),
    Asset(ByteBuf),
    Registered(Registered),
    HubInfo(HubInfo),
    Published(Published),
    RoomCreated(RoomCreated),
    Subscribed(Subscribed),
    Admin { affected: u64 },
    Refused { kind: String, sentence: String },
}

fn buf(b: &[u8]) -> ByteBuf {
    ByteBuf::from(b.to_vec())
}

fn endpoint(name: &str) -> Result<Endpoint, WireError> {
    Endpoint::from_name(name).ok_or_else(|| WireError(format!("unknown endpoint {name:?}")))
}

/// Encodes an input (a peer request or a client call; other inputs are never forwarded).
///
/// # Errors
/// For inputs that are not requests.
pub fn encode_input(input: &Input) -> Result<Vec<u8>, WireError> {
    let f = match input {
        Input::Peer {
            peer,
            endpoint,
            target,
            body,
            ..
        } => Forwarded::Peer {
            peer: peer.clone(),
            endpoint: endpoint.name().to_owned(),
            target: target.clone(),
            body: buf(body),
        },
        Input::Client { auth, call, .. } => Forwarded::Client {
            auth: match auth {
                Auth::Anonymous => WireAuth::Anonymous,
                Auth::Client(c) => WireAuth::Client {
                    id: c.id.clone(),
                    user: c.user.clone(),
                    uri: c.uri.clone(),
                },
                Auth::Admin => WireAuth::Admin,
                Auth::Provider { user } => WireAuth::Provider { user: user.clone() },
            },
            call: encode_call(call),
        },
        _ => return Err(WireError("only requests are forwarded".into())),
    };
    rmp_serde::to_vec_named(&f).map_err(|e| WireError(e.to_string()))
}

fn encode_call(call: &ClientCall) -> WireCall {
    match call {
        ClientCall::Register {
            user,
            device,
            display_name,
            new_token_hash,
        } => WireCall::Register {
            user: user.clone(),
            device: device.clone(),
            display_name: display_name.clone(),
            new_token_hash: buf(new_token_hash),
        },
        ClientCall::PublishKeyPackages {
            key_packages,
            last_resort,
        } => WireCall::PublishKeyPackages {
            key_packages: key_packages.iter().map(|k| buf(k)).collect(),
            last_resort: last_resort.as_deref().map(buf),
        },
        ClientCall::HubInfo => WireCall::HubInfo,
        ClientCall::CreateRoom {
            room,
            group_info,
            ratchet_tree,
        } => WireCall::CreateRoom {
            room: room.clone(),
            group_info: buf(group_info),
            ratchet_tree: buf(ratchet_tree),
        },
        ClientCall::Room {
            endpoint,
            target,
            body,
        } => WireCall::Room {
            endpoint: endpoint.name().to_owned(),
            target: target.clone(),
            body: buf(body),
        },
        ClientCall::Consent(b) => WireCall::Consent(buf(b)),
        ClientCall::IdentifierQuery { domain, body } => WireCall::IdentifierQuery {
            domain: domain.clone(),
            body: buf(body),
        },
        ClientCall::Subscribe { room, on } => WireCall::Subscribe {
            room: room.clone(),
            on: *on,
        },
        ClientCall::Admin(AdminCall::RetryDeadLetters { follower, room }) => {
            WireCall::RetryDeadLetters {
                follower: follower.clone(),
                room: room.clone(),
            }
        }
        ClientCall::Admin(AdminCall::DropDeadLetters { follower, room }) => {
            WireCall::DropDeadLetters {
                follower: follower.clone(),
                room: room.clone(),
            }
        }
        ClientCall::Admin(AdminCall::Resynced { follower }) => WireCall::Resynced {
            follower: follower.clone(),
        },
    }
}

/// Decodes a forwarded input.
///
/// # Errors
/// Anything that is not a forwarded request.
pub fn decode_input(b: &[u8]) -> Result<Input, WireError> {
    let f: Forwarded = rmp_serde::from_slice(b).map_err(|e| WireError(e.to_string()))?;
    Ok(match f {
        Forwarded::Peer {
            peer,
            endpoint: e,
            target,
            body,
        } => Input::Peer {
            id: 0,
            peer,
            endpoint: endpoint(&e)?,
            target,
            body: Bytes::from(body.into_vec()),
        },
        Forwarded::Client { auth, call } => Input::Client {
            id: 0,
            auth: match auth {
                WireAuth::Anonymous => Auth::Anonymous,
                WireAuth::Client { id, user, uri } => Auth::Client(ClientRecord { id, user, uri }),
                WireAuth::Admin => Auth::Admin,
                WireAuth::Provider { user } => Auth::Provider { user },
            },
            call: decode_call(call)?,
        },
    })
}

fn decode_call(c: WireCall) -> Result<ClientCall, WireError> {
    let bytes = |b: ByteBuf| Bytes::from(b.into_vec());
    Ok(match c {
        WireCall::Register {
            user,
            device,
            display_name,
            new_token_hash,
        } => ClientCall::Register {
            user,
            device,
            display_name,
            new_token_hash: new_token_hash
                .as_slice()
                .try_into()
                .map_err(|_| WireError("a token hash is 32 bytes".into()))?,
        },
        WireCall::PublishKeyPackages {
            key_packages,
            last_resort,
        } => ClientCall::PublishKeyPackages {
            key_packages: key_packages.into_iter().map(ByteBuf::into_vec).collect(),
            last_resort: last_resort.map(ByteBuf::into_vec),
        },
        WireCall::HubInfo => ClientCall::HubInfo,
        WireCall::CreateRoom {
            room,
            group_info,
            ratchet_tree,
        } => ClientCall::CreateRoom {
            room,
            group_info: group_info.into_vec(),
            ratchet_tree: ratchet_tree.into_vec(),
        },
        WireCall::Room {
            endpoint: e,
            target,
            body,
        } => ClientCall::Room {
            endpoint: endpoint(&e)?,
            target,
            body: bytes(body),
        },
        WireCall::Consent(b) => ClientCall::Consent(bytes(b)),
        WireCall::IdentifierQuery { domain, body } => ClientCall::IdentifierQuery {
            domain,
            body: bytes(body),
        },
        WireCall::Subscribe { room, on } => ClientCall::Subscribe { room, on },
        WireCall::RetryDeadLetters { follower, room } => {
            ClientCall::Admin(AdminCall::RetryDeadLetters { follower, room })
        }
        WireCall::DropDeadLetters { follower, room } => {
            ClientCall::Admin(AdminCall::DropDeadLetters { follower, room })
        }
        WireCall::Resynced { follower } => ClientCall::Admin(AdminCall::Resynced { follower }),
    })
}

/// Encodes the owner's response.
pub fn encode_response(r: &Response) -> Vec<u8> {
    let body = match &r.body {
        Body::Empty => WireBody::Empty,
        Body::Mimi(b) => WireBody::Mimi(buf(b)),
        Body::Asset(b) => WireBody::Asset(buf(b)),
        Body::Client(c) => match c {
            ClientReply::Registered(x) => WireBody::Registered(x.clone()),
            ClientReply::HubInfo(x) => WireBody::HubInfo(x.clone()),
            ClientReply::Published(x) => WireBody::Published(x.clone()),
            ClientReply::RoomCreated(x) => WireBody::RoomCreated(x.clone()),
            ClientReply::Subscribed(x) => WireBody::Subscribed(x.clone()),
            ClientReply::Admin { affected } => WireBody::Admin {
                affected: *affected,
            },
            _ => WireBody::Refused {
                kind: "unavailable".into(),
                sentence: "the owning node answered in a form this node cannot relay".into(),
            },
        },
        Body::Refused(x) => WireBody::Refused {
            kind: x.kind().to_owned(),
            sentence: x.to_string(),
        },
    };
    rmp_serde::to_vec_named(&WireResponse {
        status: r.status,
        retry_after_s: r.retry_after_s,
        body,
    })
    .unwrap_or_default()
}

/// Decodes the owner's response.
///
/// # Errors
/// A body that is not one.
pub fn decode_response(b: &[u8]) -> Result<Response, WireError> {
    let w: WireResponse = rmp_serde::from_slice(b).map_err(|e| WireError(e.to_string()))?;
    let body = match w.body {
        WireBody::Empty => Body::Empty,
        WireBody::Mimi(b) => Body::Mimi(Bytes::from(b.into_vec())),
        WireBody::Asset(b) => Body::Asset(Bytes::from(b.into_vec())),
        WireBody::Registered(x) => Body::Client(ClientReply::Registered(x)),
        WireBody::HubInfo(x) => Body::Client(ClientReply::HubInfo(x)),
        WireBody::Published(x) => Body::Client(ClientReply::Published(x)),
        WireBody::RoomCreated(x) => Body::Client(ClientReply::RoomCreated(x)),
        WireBody::Subscribed(x) => Body::Client(ClientReply::Subscribed(x)),
        WireBody::Admin { affected } => Body::Client(ClientReply::Admin { affected }),
        WireBody::Refused { kind, sentence } => {
            return Ok(Response::refused(Refusal::relayed(
                w.status,
                &kind,
                sentence,
                w.retry_after_s,
            )));
        }
    };
    Ok(Response {
        status: w.status,
        body,
        retry_after_s: w.retry_after_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(i: Input) {
        let back = decode_input(&encode_input(&i).unwrap()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{i:?}"));
    }

    #[test]
    fn requests_survive_the_hop() {
        roundtrip(Input::Peer {
            id: 0,
            peer: Domain::parse("b.example").unwrap(),
            endpoint: Endpoint::SubmitMessage,
            target: "mimi://a.example/r/x".into(),
            body: Bytes::from_static(&[0, 1, 200, 255]),
        });
        let user: UserUri = "mimi://a.example/u/alice".parse().unwrap();
        let auths = [
            Auth::Anonymous,
            Auth::Admin,
            Auth::Provider { user: "bob".into() },
            Auth::Client(ClientRecord {
                id: "alice/phone".into(),
                uri: "mimi://a.example/d/alice/phone".parse().unwrap(),
                user,
            }),
        ];
        let calls = [
            ClientCall::Register {
                user: "alice".into(),
                device: "phone".into(),
                display_name: "Alice".into(),
                new_token_hash: [7; 32],
            },
            ClientCall::PublishKeyPackages {
                key_packages: vec![vec![1, 2], vec![]],
                last_resort: Some(vec![9]),
            },
            ClientCall::HubInfo,
            ClientCall::CreateRoom {
                room: "mimi://a.example/r/x".into(),
                group_info: vec![1],
                ratchet_tree: vec![2],
            },
            ClientCall::Room {
                endpoint: Endpoint::Update,
                target: "mimi://a.example/r/x".into(),
                body: Bytes::from_static(b"commit"),
            },
            ClientCall::Consent(Bytes::from_static(b"c")),
            ClientCall::IdentifierQuery {
                domain: "b.example".into(),
                body: Bytes::new(),
            },
            ClientCall::Subscribe {
                room: "mimi://a.example/r/x".into(),
                on: true,
            },
            ClientCall::Admin(AdminCall::Resynced {
                follower: Domain::parse("b.example").unwrap(),
            }),
            ClientCall::Admin(AdminCall::DropDeadLetters {
                follower: Domain::parse("b.example").unwrap(),
                room: "mimi://a.example/r/x".parse().unwrap(),
            }),
        ];
        for a in &auths {
            for c in &calls {
                roundtrip(Input::Client {
                    id: 0,
                    auth: a.clone(),
                    call: c.clone(),
                });
            }
        }
    }

    #[test]
    fn responses_and_refusals_survive_the_hop() {
        for r in [
            Response::mimi(vec![1, 2, 3]),
            Response::empty(201),
            Response::client(200, ClientReply::Admin { affected: 3 }),
            Response::refused(Refusal::NotFound("no such room".into())),
            Response::refused(Refusal::Unavailable("x".into())),
        ] {
            let back = decode_response(&encode_response(&r)).unwrap();
            assert_eq!(back.status, r.status);
            assert_eq!(back.retry_after_s, r.retry_after_s);
            match (&back.body, &r.body) {
                (Body::Refused(a), Body::Refused(b)) => {
                    assert_eq!((a.kind(), a.to_string()), (b.kind(), b.to_string()));
                }
                (a, b) => assert_eq!(a, b),
            }
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert!(decode_input(b"\x00\x01garbage").is_err());
        assert!(decode_response(b"").is_err());
        assert!(encode_input(&Input::Tick).is_err());
        let bad = rmp_serde::to_vec_named(&Forwarded::Peer {
            peer: Domain::parse("b.example").unwrap(),
            endpoint: "nonsense".into(),
            target: String::new(),
            body: ByteBuf::new(),
        })
        .unwrap();
        assert!(
            decode_input(&bad)
                .unwrap_err()
                .to_string()
                .contains("unknown endpoint")
        );
    }
}
