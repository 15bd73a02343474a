//! Room policy (draft-ietf-mimi-room-policy-03 §3–§8) as the hub enforces it on each accepted
//! handshake: who may add, remove, ban, kick, change roles, leave, add own clients or join
//! externally; role participant and active-participant constraints; fixed membership; and the
//! consistency of the MLS membership with the participant list.
//!
//! [`authorize`] runs one function per rule (`rules.rs`) in order; the first refusal wins and
//! names the rule it broke ([`PolicyRefusal`]).

mod rules;

use std::collections::BTreeSet;

use mimi_proto::codec::Wire;
use mimi_proto::components::{
    BaseRoomPolicy, OperationalParameters, ParticipantListData, RoleData, RoleTransition, ids,
};

/// Why the policy refuses a change. The sentence goes back to the client in the
/// UpdateRoomResponse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyRefusal {
    /// A required component is missing.
    #[error("the room has no {0} component")]
    MissingComponent(&'static str),
    /// A component does not decode.
    #[error("{name}: {detail}")]
    BadComponent {
        /// The component.
        name: &'static str,
        /// Why.
        detail: String,
    },
    /// A banned actor does more than removing its own clients.
    #[error("{0} is banned and may only remove its own clients")]
    BannedActor(String),
    /// A banned user joins or is given clients.
    #[error("{0} is banned; its clients cannot be in the group")]
    BannedUser(String),
    /// External commits are off.
    #[error("external commits are not allowed in this room (mls_operational_policy)")]
    ExternalCommitsOff,
    /// The actor is not a participant.
    #[error("{0} is not a participant of the room")]
    NotParticipant(String),
    /// An external join by a non-participant that does not add it to the list.
    #[error("{0} is not a participant; an external join must add it to the participant list")]
    JoinWithoutListEntry(String),
    /// An external join of a room that is not open.
    #[error("{0} is not a participant and the room is not open for joining")]
    NotOpen(String),
    /// The actor's role lacks a capability.
    #[error("{actor}'s role may not {action} ({capability})")]
    MissingCapability {
        /// Who.
        actor: String,
        /// What it tried.
        action: String,
        /// The capability's name in the draft.
        capability: &'static str,
    },
    /// The actor's role may not move a user between these roles.
    #[error("{actor}'s role may not change {user} from role {from} to {to}")]
    RoleChange {
        /// Who.
        actor: String,
        /// Whose role.
        user: String,
        /// From.
        from: u32,
        /// To.
        to: u32,
    },
    /// Someone adds itself by a normal commit.
    #[error("{0} cannot add itself except by external commit")]
    SelfAdd(String),
    /// A fixed-membership room.
    #[error("fixed-membership room: {0}")]
    FixedMembership(String),
    /// Components that must not change together.
    #[error("{0}")]
    ComponentMix(&'static str),
    /// Clients of a user who is not a participant.
    #[error("{0} is not in the participant list; add it there before or with its clients")]
    ClientsWithoutParticipant(String),
    /// A role that may not have clients.
    #[error("{user}'s role {role} may not have clients in the group")]
    RoleWithoutClients {
        /// The user.
        user: String,
        /// Its role.
        role: u32,
    },
    /// A user leaves the list but keeps clients.
    #[error(
        "{0} has clients in the group but is not a participant; remove its clients in the same commit"
    )]
    StrayClients(String),
    /// Banned and still has clients.
    #[error("{0} is banned; all its clients must be removed in the same commit")]
    BannedWithClients(String),
    /// One client per user.
    #[error("this room allows one client per user (multi_device is false)")]
    OneClientPerUser,
    /// Too many clients.
    #[error("the room allows at most {0} clients")]
    MaxClients(u32),
    /// Too many users.
    #[error("the room allows at most {0} users")]
    MaxUsers(u32),
    /// A role count constraint.
    #[error("role {role} {rule} {n} {what}")]
    RoleConstraint {
        /// The role's name.
        role: String,
        /// `needs at least` or `allows at most`.
        rule: &'static str,
        /// The bound.
        n: u32,
        /// `participants` or `active participants`.
        what: &'static str,
    },
    /// A participant-list update that does not apply.
    #[error("participant_list update: {0}")]
    ListUpdate(String),
    /// A proposal the hub does not accept.
    #[error("{0}")]
    Proposal(String),
}

/// The policy state of a room at one point (committed, or with accepted proposals applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPolicy {
    /// The participant list.
    pub participants: ParticipantListData,
    /// The roles.
    pub roles: RoleData,
    /// Base room policy.
    pub base: Option<BaseRoomPolicy>,
    /// MLS operational parameters.
    pub ops: Option<OperationalParameters>,
}

impl Default for RoomPolicy {
    fn default() -> Self {
        Self {
            participants: ParticipantListData::default(),
            roles: RoleData { roles: Vec::new() },
            base: None,
            ops: None,
        }
    }
}

/// Reads the policy components out of an app-data dictionary (`get` returns a component's data).
///
/// # Errors
/// A missing or undecodable component.
pub fn read_policy(get: impl Fn(u16) -> Option<Vec<u8>>) -> Result<RoomPolicy, PolicyRefusal> {
    let bad = |name: &'static str| {
        move |e: mimi_proto::DecodeError| PolicyRefusal::BadComponent {
            name,
            detail: e.to_string(),
        }
    };
    let participants = get(ids::PARTICIPANT_LIST)
        .ok_or(PolicyRefusal::MissingComponent("participant_list (0x0022)"))
        .and_then(|d| ParticipantListData::from_bytes(&d).map_err(bad("participant_list")))?;
    let roles = get(ids::ROLES_LIST)
        .ok_or(PolicyRefusal::MissingComponent("roles_list (0x0025)"))
        .and_then(|d| RoleData::from_bytes(&d).map_err(bad("roles_list")))?;
    let base = get(ids::BASE_ROOM_POLICY)
        .map(|d| BaseRoomPolicy::from_bytes(&d))
        .transpose()
        .map_err(bad("base_room_policy"))?;
    let ops = get(ids::MLS_OPERATIONAL_POLICY)
        .map(|d| OperationalParameters::from_bytes(&d))
        .transpose()
        .map_err(bad("mls_operational_policy"))?;
    Ok(RoomPolicy {
        participants,
        roles,
        base,
        ops,
    })
}

/// Role 1 named "banned" is the banned role.
pub(crate) fn is_banned_role(roles: &RoleData, r: u32) -> bool {
    r == 1 && roles.role(1).is_some_and(|role| role.name() == "banned")
}

impl RoomPolicy {
    /// A user's role index (0: not a participant).
    pub fn role_of(&self, user: &str) -> u32 {
        self.participants.role_of(user)
    }

    /// Whether `user`'s role has `cap`.
    pub fn can(&self, user: &str, cap: u16) -> bool {
        self.roles
            .role(self.role_of(user))
            .is_some_and(|r| r.can(cap))
    }

    /// Whether `user` is banned.
    pub fn is_banned(&self, user: &str) -> bool {
        is_banned_role(&self.roles, self.role_of(user))
    }

    pub(crate) fn fixed(&self) -> bool {
        self.base.as_ref().is_some_and(|b| b.fixed_membership)
    }
}

/// What one commit (or proposal) does, as the hub sees it.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// The user whose client signed it.
    pub actor: String,
    /// An external commit (the actor's client is joining).
    pub external: bool,
    /// Participant-list transitions.
    pub transitions: Vec<RoleTransition>,
    /// Policy components replaced or removed (component IDs).
    pub policy_components: BTreeSet<u16>,
    /// Users whose clients are added by MLS Add proposals.
    pub added_clients_of: Vec<String>,
    /// Users whose clients are removed.
    pub removed_clients_of: Vec<String>,
    /// The user of every leaf after the change.
    pub members_after: Vec<String>,
    /// The user of every leaf before.
    pub members_before: Vec<String>,
}

/// Authorizes `change` given the policy before and after it: every rule in order.
///
/// # Errors
/// The first rule broken.
pub fn authorize(before: &RoomPolicy, after: &RoomPolicy, c: &Change) -> Result<(), PolicyRefusal> {
    rules::banned_actor(before, c)?;
    rules::external_commit(before, c)?;
    rules::policy_components(before, c)?;
    rules::component_mix(c)?;
    rules::transitions(before, c)?;
    rules::adds(before, after, c)?;
    rules::removes(before, c)?;
    rules::membership_consistency(after, c)?;
    rules::room_limits(before, after, c)?;
    rules::role_constraints(before, after, c)
}

/// Authorizes a standalone proposal by `actor`: only transitions and client changes are
/// meaningful before the commit; the commit is checked again in full.
///
/// # Errors
/// The first rule broken.
pub fn authorize_proposal(
    before: &RoomPolicy,
    after: &RoomPolicy,
    actor: &str,
    transitions: &[RoleTransition],
    removes_clients_of: &[String],
    adds_clients_of: &[String],
) -> Result<(), PolicyRefusal> {
    if before.role_of(actor) == 0 {
        return Err(PolicyRefusal::NotParticipant(actor.to_owned()));
    }
    let change = Change {
        actor: actor.to_owned(),
        external: false,
        transitions: transitions.to_vec(),
        policy_components: BTreeSet::new(),
        added_clients_of: adds_clients_of.to_vec(),
        removed_clients_of: removes_clients_of.to_vec(),
        members_after: Vec::new(),
        members_before: Vec::new(),
    };
    // Role minimums may be restored later in the same commit, and membership consistency is a
    // property of the commit: only capabilities are checked here.
    // (The "before" policy keeps its base policy: fixed membership applies to proposals too.)
    let relax = |p: &RoomPolicy, drop_base: bool| {
        let mut p = p.clone();
        if drop_base {
            p.base = None;
        }
        for r in &mut p.roles.roles {
            r.minimum_participants_constraint = 0;
            r.minimum_active_participants_constraint = 0;
        }
        p
    };
    authorize(&relax(before, false), &relax(after, true), &change)
}

#[cfg(test)]
mod tests;
