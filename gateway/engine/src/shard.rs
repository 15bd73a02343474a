//! Sharding: which shard orders a room or serves a user, and what all shards share.

use super::*;
use mimi_proto::directory::Endpoint;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Which shard of `shards` handles `input`: rooms by room URI, users by user name, the rest
/// shard 0; replies go back to the shard whose id they carry; ticks go to every shard.
pub fn shard_of(input: &Input, shards: u16) -> u16 {
    let shards = shards.max(1);
    let key = match input {
        Input::Reply { id, .. } => return ((id >> 48) as u16) % shards,
        Input::Tick => return 0,
        Input::Peer {
            endpoint, target, ..
        } => match endpoint {
            Endpoint::Update
            | Endpoint::SubmitMessage
            | Endpoint::GroupInfo
            | Endpoint::ReportAbuse
            | Endpoint::Notify
            | Endpoint::KeyMaterial => target.as_str(),
            _ => "",
        },
        Input::Client { call, auth, .. } => match call {
            ClientCall::CreateRoom { room, .. } | ClientCall::Subscribe { room, .. } => {
                room.as_str()
            }
            ClientCall::Room { target, .. } => target.as_str(),
            ClientCall::Register { user, .. } => user.as_str(),
            ClientCall::PublishKeyPackages { .. } | ClientCall::Consent(_) => match auth {
                Auth::Client(c) => c.user.as_str(),
                _ => "",
            },
            ClientCall::HubInfo | ClientCall::IdentifierQuery { .. } => "",
            // Dead letters move into the outbox of a room: the room's shard.
            ClientCall::Admin(
                AdminCall::RetryDeadLetters { room, .. } | AdminCall::DropDeadLetters { room, .. },
            ) => room.as_str(),
            ClientCall::Admin(AdminCall::Resynced { .. }) => "",
        },
    };
    if key.is_empty() {
        return 0;
    }
    (fnv1a(key.as_bytes()) % u64::from(shards)) as u16
}

/// FNV-1a: a stable hash (the shard of a room must not change between runs).
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the shards of one gateway share: per-follower outbox byte totals (the cap is per
/// follower, whichever shard queues for it) and KeyPackage claim quotas.
#[derive(Debug, Default)]
pub struct Shared {
    pub(crate) budget: Mutex<FollowerBudget>,
    pub(crate) claims: Mutex<ClaimQuotas>,
}

impl Shared {
    /// Followers marked out of sync, with the time since when.
    pub fn out_of_sync(&self) -> BTreeMap<String, u64> {
        self.budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .out_of_sync
            .clone()
    }
}

/// The shard of `shards` that orders `room`.
pub fn room_shard(room: &mimi_proto::uri::RoomUri, shards: u16) -> u16 {
    (fnv1a(room.as_str().as_bytes()) % u64::from(shards.max(1))) as u16
}
