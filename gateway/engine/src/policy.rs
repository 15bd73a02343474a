//! Room policy (draft-ietf-mimi-room-policy-03 §3–§8) as the hub enforces it on each accepted
//! handshake: who may add, remove, ban, kick, change roles, leave, add own clients or join
//! externally; role participant and active-participant constraints; fixed membership; and the
//! consistency of the MLS membership with the participant list.

use std::collections::{BTreeMap, BTreeSet};

use mimi_proto::codec::Wire;
use mimi_proto::components::{
    BaseRoomPolicy, OperationalParameters, ParticipantListData, RoleData, RoleTransition,
    capability, ids,
};

/// The policy state of a room at one point (committed, or with accepted proposals applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoomPolicy {
    pub(crate) participants: ParticipantListData,
    pub(crate) roles: RoleData,
    pub(crate) base: Option<BaseRoomPolicy>,
    pub(crate) ops: Option<OperationalParameters>,
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
pub(crate) fn read_policy(get: impl Fn(u16) -> Option<Vec<u8>>) -> Result<RoomPolicy, String> {
    let participants = match get(ids::PARTICIPANT_LIST) {
        Some(d) => {
            ParticipantListData::from_bytes(&d).map_err(|e| format!("participant_list: {e}"))?
        }
        None => return Err("the room has no participant_list component (0x0022)".into()),
    };
    let roles = match get(ids::ROLES_LIST) {
        Some(d) => RoleData::from_bytes(&d).map_err(|e| format!("roles_list: {e}"))?,
        None => return Err("the room has no roles_list component (0x0025)".into()),
    };
    let base = get(ids::BASE_ROOM_POLICY)
        .map(|d| BaseRoomPolicy::from_bytes(&d))
        .transpose()
        .map_err(|e| format!("base_room_policy: {e}"))?;
    let ops = get(ids::MLS_OPERATIONAL_POLICY)
        .map(|d| OperationalParameters::from_bytes(&d))
        .transpose()
        .map_err(|e| format!("mls_operational_policy: {e}"))?;
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
    pub(crate) fn role_of(&self, user: &str) -> u32 {
        self.participants.role_of(user)
    }

    pub(crate) fn can(&self, user: &str, cap: u16) -> bool {
        self.roles
            .role(self.role_of(user))
            .is_some_and(|r| r.can(cap))
    }

    pub(crate) fn is_banned(&self, user: &str) -> bool {
        is_banned_role(&self.roles, self.role_of(user))
    }

    fn fixed(&self) -> bool {
        self.base.as_ref().is_some_and(|b| b.fixed_membership)
    }
}

/// What one commit (or proposal) does, as the hub sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Change {
    /// The user whose client signed it.
    pub(crate) actor: String,
    /// An external commit (the actor's client is joining).
    pub(crate) external: bool,
    /// Participant-list transitions.
    pub(crate) transitions: Vec<RoleTransition>,
    /// Policy components replaced or removed (component IDs).
    pub(crate) policy_components: BTreeSet<u16>,
    /// Users whose clients are added by MLS Add proposals.
    pub(crate) added_clients_of: Vec<String>,
    /// Users whose clients are removed.
    pub(crate) removed_clients_of: Vec<String>,
    /// The user of every leaf after the change.
    pub(crate) members_after: Vec<String>,
    /// The user of every leaf before.
    pub(crate) members_before: Vec<String>,
}

/// Why the hub refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal(pub(crate) String);

fn refuse<T>(msg: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(msg.into()))
}

/// Authorizes `change` given the policy before and after it.
pub(crate) fn authorize(
    before: &RoomPolicy,
    after: &RoomPolicy,
    c: &Change,
) -> Result<(), Refusal> {
    let actor = c.actor.as_str();
    let actor_role = before.role_of(actor);
    let actor_r = before.roles.role(actor_role);
    let can = |cap: u16| actor_r.is_some_and(|r| r.can(cap));
    let may = |from: u32, to: u32| actor_r.is_some_and(|r| r.may_change(from, to));

    if before.is_banned(actor) {
        // A banned user's only possible action is leaving, i.e. removing its own clients.
        let only_own_removals = c.transitions.is_empty()
            && c.added_clients_of.is_empty()
            && c.policy_components.is_empty()
            && c.removed_clients_of.iter().all(|u| u == actor);
        if !only_own_removals {
            return refuse(format!(
                "{actor} is banned and may only remove its own clients"
            ));
        }
    }

    if c.external {
        let ext_allowed = before
            .ops
            .as_ref()
            .is_none_or(|o| o.external_commit_allowed);
        if !ext_allowed {
            return refuse(
                "external commits are not allowed in this room (mls_operational_policy)",
            );
        }
        if actor_role == 0 {
            // Open join: role 0 must have canOpenJoin and allow 0 -> target role.
            let self_add = c
                .transitions
                .iter()
                .find(|t| t.user.as_str() == actor && t.from == 0);
            let open = before
                .roles
                .role(0)
                .filter(|r0| r0.can(capability::CAN_OPEN_JOIN));
            match (self_add, open) {
                (Some(t), Some(r0)) if r0.may_change(0, t.to) => {}
                (None, _) => {
                    return refuse(format!(
                        "{actor} is not a participant; an external join must add it to the participant list"
                    ));
                }
                _ => {
                    return refuse(format!(
                        "{actor} is not a participant and the room is not open for joining"
                    ));
                }
            }
        } else if !before.is_banned(actor) && !can(capability::CAN_ADD_OWN_CLIENT) {
            return refuse(format!(
                "{actor}'s role may not add its own clients (canAddOwnClient)"
            ));
        }
        if before.is_banned(actor) {
            return refuse(format!("{actor} is banned"));
        }
    } else if actor_role == 0 {
        return refuse(format!("{actor} is not a participant of the room"));
    }

    // Policy definition changes.
    for id in &c.policy_components {
        let (cap, name) = match *id {
            ids::ROLES_LIST => (capability::CAN_CHANGE_ROLE_DEFINITIONS, "roles_list"),
            ids::PREAUTH_LIST => (
                capability::CAN_CHANGE_PREAUTHORIZED_USER_LIST,
                "preauth_list",
            ),
            ids::BASE_ROOM_POLICY | ids::MLS_OPERATIONAL_POLICY => (
                capability::CAN_CHANGE_ROOM_MEMBERSHIP_STYLE,
                "membership style",
            ),
            ids::ROOM_METADATA => (capability::CAN_CHANGE_ROOM_NAME, "room_metadata"),
            other => (
                capability::CAN_CHANGE_ROLE_DEFINITIONS,
                ids::name(other).unwrap_or("policy component"),
            ),
        };
        if !can(cap) {
            return refuse(format!("{actor}'s role may not change {name}"));
        }
    }
    if c.policy_components.contains(&ids::ROLES_LIST) && !c.transitions.is_empty() {
        return refuse("a roles_list update cannot share a commit with participant-list changes");
    }
    if c.policy_components.contains(&ids::PREAUTH_LIST) && c.transitions.iter().any(|t| t.to != 0) {
        return refuse(
            "a preauth_list update cannot share a commit with participant-list changes other than removals",
        );
    }

    // Participant-list transitions.
    let fixed = before.fixed();
    for t in &c.transitions {
        let user = t.user.as_str();
        let (from, to) = (t.from, t.to);
        if user == actor {
            if to == 0 {
                if fixed {
                    return refuse(
                        "fixed-membership room: users cannot leave (remove your clients instead)",
                    );
                }
                if !can(capability::CAN_REMOVE_SELF) {
                    return refuse(format!(
                        "{actor}'s role may not leave the room (canRemoveSelf)"
                    ));
                }
            } else if from == 0 {
                if !c.external {
                    return refuse(format!(
                        "{actor} cannot add itself except by external commit"
                    ));
                }
            } else if !can(capability::CAN_CHANGE_OWN_ROLE) || !may(from, to) {
                return refuse(format!(
                    "{actor} may not change its own role from {from} to {to}"
                ));
            }
            continue;
        }
        if from == 0 {
            if fixed {
                return refuse(format!("fixed-membership room: {user} cannot be added"));
            }
            if !can(capability::CAN_ADD_PARTICIPANT) {
                return refuse(format!(
                    "{actor}'s role may not add participants (canAddParticipant)"
                ));
            }
            if !may(0, to) {
                return refuse(format!("{actor}'s role may not add users with role {to}"));
            }
        } else if to == 0 {
            if fixed {
                return refuse(format!("fixed-membership room: {user} cannot be removed"));
            }
            if !can(capability::CAN_REMOVE_PARTICIPANT) || !may(from, 0) {
                return refuse(format!(
                    "{actor}'s role may not remove {user} (role {from})"
                ));
            }
        } else if to == 1 && is_banned_role(&before.roles, 1) {
            if !can(capability::CAN_BAN) || !may(from, 1) {
                return refuse(format!("{actor}'s role may not ban {user}"));
            }
        } else if from == 1 && is_banned_role(&before.roles, 1) {
            if !can(capability::CAN_UNBAN) || !may(1, to) {
                return refuse(format!("{actor}'s role may not unban {user}"));
            }
        } else if !can(capability::CAN_CHANGE_USER_ROLE) || !may(from, to) {
            return refuse(format!(
                "{actor}'s role may not change {user} from role {from} to {to}"
            ));
        }
    }

    let touched: BTreeMap<&str, &RoleTransition> =
        c.transitions.iter().map(|t| (t.user.as_str(), t)).collect();

    // MLS Adds.
    for u in &c.added_clients_of {
        let r = after.role_of(u);
        if r == 0 {
            return refuse(format!(
                "{u} is not in the participant list; add it there before or with its clients"
            ));
        }
        if after.is_banned(u) {
            return refuse(format!("{u} is banned; its clients cannot be added"));
        }
        if after
            .roles
            .role(r)
            .is_some_and(|role| role.maximum_active_participants_constraint == Some(0))
        {
            return refuse(format!("{u}'s role {r} may not have clients in the group"));
        }
        if u == actor {
            if !c.external && !can(capability::CAN_ADD_OWN_CLIENT) {
                return refuse(format!(
                    "{actor}'s role may not add its own clients (canAddOwnClient)"
                ));
            }
        } else if touched.get(u.as_str()).is_none_or(|t| t.from != 0)
            && !can(capability::CAN_ADD_PARTICIPANT)
        {
            return refuse(format!("{actor}'s role may not add clients of {u}"));
        }
    }

    // MLS Removes.
    for u in &c.removed_clients_of {
        if u == actor {
            if !can(capability::CAN_REMOVE_OWN_CLIENT)
                && touched.get(u.as_str()).is_none_or(|t| t.to != 0)
                && !before.is_banned(actor)
            {
                return refuse(format!(
                    "{actor}'s role may not remove its own clients (canRemoveOwnClient)"
                ));
            }
        } else if !touched
            .get(u.as_str())
            .is_some_and(|t| t.to == 0 || is_banned_role(&before.roles, t.to))
            && !can(capability::CAN_KICK)
        {
            return refuse(format!(
                "{actor}'s role may not remove clients of {u} (canKick)"
            ));
        }
    }

    // Membership consistency after the change.
    let mut leaves: BTreeMap<&str, u32> = BTreeMap::new();
    for u in &c.members_after {
        *leaves.entry(u.as_str()).or_default() += 1;
    }
    for u in leaves.keys() {
        let r = after.role_of(u);
        if r == 0 {
            return refuse(format!(
                "{u} has clients in the group but is not a participant; remove its clients in the same commit"
            ));
        }
        if after.is_banned(u) {
            return refuse(format!(
                "{u} is banned; all its clients must be removed in the same commit"
            ));
        }
    }
    if after.base.as_ref().is_some_and(|b| !b.multi_device) && leaves.values().any(|n| *n > 1) {
        return refuse("this room allows one client per user (multi_device is false)");
    }
    if let Some(max) = after.base.as_ref().and_then(|b| b.max_clients)
        && c.members_after.len() > max as usize
        && c.members_after.len() > c.members_before.len()
    {
        return refuse(format!("the room allows at most {max} clients"));
    }
    if let Some(max) = after.base.as_ref().and_then(|b| b.max_users) {
        let users = after
            .participants
            .participants
            .iter()
            .filter(|p| !is_banned_role(&after.roles, p.role_index))
            .count();
        let before_users = before
            .participants
            .participants
            .iter()
            .filter(|p| !is_banned_role(&before.roles, p.role_index))
            .count();
        if users > max as usize && users > before_users {
            return refuse(format!("the room allows at most {max} users"));
        }
    }

    // Role constraints, for roles whose counts this change moved.
    let count = |p: &RoomPolicy, r: u32| {
        p.participants
            .participants
            .iter()
            .filter(|x| x.role_index == r)
            .count()
    };
    let active = |p: &RoomPolicy, members: &[String], r: u32| {
        let users: BTreeSet<&str> = members.iter().map(String::as_str).collect();
        p.participants
            .participants
            .iter()
            .filter(|x| x.role_index == r && users.contains(x.user.as_str()))
            .count()
    };
    for role in &after.roles.roles {
        let r = role.role_index;
        let (n0, n1) = (count(before, r), count(after, r));
        let (a0, a1) = (
            active(before, &c.members_before, r),
            active(after, &c.members_after, r),
        );
        if n1 < n0 && n1 < role.minimum_participants_constraint as usize {
            return refuse(format!(
                "role {} needs at least {} participants",
                role.name(),
                role.minimum_participants_constraint
            ));
        }
        if n1 > n0
            && role
                .maximum_participants_constraint
                .is_some_and(|m| n1 > m as usize)
        {
            return refuse(format!(
                "role {} allows at most {} participants",
                role.name(),
                role.maximum_participants_constraint.unwrap_or(0)
            ));
        }
        if a1 < a0 && a1 < role.minimum_active_participants_constraint as usize {
            return refuse(format!(
                "role {} needs at least {} active participants",
                role.name(),
                role.minimum_active_participants_constraint
            ));
        }
        if a1 > a0
            && role
                .maximum_active_participants_constraint
                .is_some_and(|m| a1 > m as usize)
        {
            return refuse(format!(
                "role {} allows at most {} active participants",
                role.name(),
                role.maximum_active_participants_constraint.unwrap_or(0)
            ));
        }
    }
    Ok(())
}

/// Authorizes a standalone proposal by `actor`: only transitions and removals are meaningful
/// before the commit; the commit is checked again in full.
pub(crate) fn authorize_proposal(
    before: &RoomPolicy,
    after: &RoomPolicy,
    actor: &str,
    transitions: &[RoleTransition],
    removes_clients_of: &[String],
    adds_clients_of: &[String],
) -> Result<(), Refusal> {
    if before.role_of(actor) == 0 {
        return refuse(format!("{actor} is not a participant of the room"));
    }
    if before.is_banned(actor)
        && (!transitions.is_empty()
            || !adds_clients_of.is_empty()
            || removes_clients_of.iter().any(|u| u != actor))
    {
        return refuse(format!(
            "{actor} is banned and may only remove its own clients"
        ));
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
    // Membership consistency is a property of the commit, not of a single proposal.
    let mut relaxed = after.clone();
    relaxed.base = None;
    authorize_transitions_only(before, &relaxed, &change)
}

fn authorize_transitions_only(
    before: &RoomPolicy,
    after: &RoomPolicy,
    c: &Change,
) -> Result<(), Refusal> {
    let mut probe = c.clone();
    probe.members_after.clear();
    probe.members_before.clear();
    // Role minimums may be restored later in the same commit; only check capabilities here.
    let mut no_constraints = after.clone();
    for r in &mut no_constraints.roles.roles {
        r.minimum_participants_constraint = 0;
        r.minimum_active_participants_constraint = 0;
    }
    let mut before2 = before.clone();
    for r in &mut before2.roles.roles {
        r.minimum_participants_constraint = 0;
        r.minimum_active_participants_constraint = 0;
    }
    authorize(&before2, &no_constraints, &probe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mimi_proto::codec::{Bytes, Uri};
    use mimi_proto::components::{Role, SingleSourceRoleChangeTargets, UserRolePair};

    fn role(i: u32, name: &str, caps: &[u16], changes: &[(u32, &[u32])]) -> Role {
        Role {
            role_index: i,
            role_name: Bytes(name.as_bytes().to_vec()),
            role_description: Bytes::default(),
            role_capabilities: caps.to_vec(),
            minimum_participants_constraint: 0,
            maximum_participants_constraint: None,
            minimum_active_participants_constraint: 0,
            maximum_active_participants_constraint: None,
            authorized_role_changes: changes
                .iter()
                .map(|(f, t)| SingleSourceRoleChangeTargets {
                    from_role_index: *f,
                    target_role_indexes: t.to_vec(),
                })
                .collect(),
        }
    }

    fn policy(users: &[(&str, u32)]) -> RoomPolicy {
        use capability::*;
        let member = [
            CAN_SEND_MESSAGE,
            CAN_ADD_OWN_CLIENT,
            CAN_REMOVE_OWN_CLIENT,
            CAN_REMOVE_SELF,
        ];
        let mut admin_caps = member.to_vec();
        admin_caps.extend([
            CAN_ADD_PARTICIPANT,
            CAN_REMOVE_PARTICIPANT,
            CAN_BAN,
            CAN_UNBAN,
            CAN_KICK,
            CAN_CHANGE_USER_ROLE,
        ]);
        RoomPolicy {
            participants: ParticipantListData {
                participants: users
                    .iter()
                    .map(|(u, r)| UserRolePair {
                        user: Uri::from(*u),
                        role_index: *r,
                    })
                    .collect(),
            },
            roles: RoleData {
                roles: vec![
                    role(1, "banned", &[], &[]),
                    role(2, "member", &member, &[]),
                    role(
                        3,
                        "admin",
                        &admin_caps,
                        &[(0, &[2, 3]), (2, &[0, 1, 3]), (1, &[0, 2]), (3, &[2])],
                    ),
                ],
            },
            base: None,
            ops: None,
        }
    }

    fn t(user: &str, from: u32, to: u32) -> RoleTransition {
        RoleTransition {
            user: Uri::from(user),
            from,
            to,
        }
    }

    #[test]
    fn admin_adds_member_does_not() {
        let before = policy(&[("alice", 3), ("bob", 2)]);
        let after = policy(&[("alice", 3), ("bob", 2), ("carol", 2)]);
        let mut c = Change {
            actor: "alice".into(),
            transitions: vec![t("carol", 0, 2)],
            added_clients_of: vec!["carol".into()],
            ..Default::default()
        };
        c.members_before = vec!["alice".into(), "bob".into()];
        c.members_after = vec!["alice".into(), "bob".into(), "carol".into()];
        assert_eq!(authorize(&before, &after, &c), Ok(()));
        c.actor = "bob".into();
        assert!(
            authorize(&before, &after, &c)
                .unwrap_err()
                .0
                .contains("canAddParticipant")
        );
    }

    #[test]
    fn adds_need_participant_list_entry() {
        let before = policy(&[("alice", 3)]);
        let c = Change {
            actor: "alice".into(),
            added_clients_of: vec!["eve".into()],
            members_after: vec!["alice".into(), "eve".into()],
            members_before: vec!["alice".into()],
            ..Default::default()
        };
        assert!(
            authorize(&before, &before, &c)
                .unwrap_err()
                .0
                .contains("not in the participant list")
        );
    }

    #[test]
    fn ban_requires_removing_clients() {
        let before = policy(&[("alice", 3), ("bob", 2)]);
        let after = policy(&[("alice", 3), ("bob", 1)]);
        let mut c = Change {
            actor: "alice".into(),
            transitions: vec![t("bob", 2, 1)],
            members_before: vec!["alice".into(), "bob".into()],
            members_after: vec!["alice".into(), "bob".into()],
            ..Default::default()
        };
        assert!(
            authorize(&before, &after, &c)
                .unwrap_err()
                .0
                .contains("banned")
        );
        c.removed_clients_of = vec!["bob".into()];
        c.members_after = vec!["alice".into()];
        assert_eq!(authorize(&before, &after, &c), Ok(()));
        // The banned user can then only leave.
        let c2 = Change {
            actor: "bob".into(),
            transitions: vec![t("carol", 0, 2)],
            ..Default::default()
        };
        assert!(
            authorize(&after, &after, &c2)
                .unwrap_err()
                .0
                .contains("banned")
        );
    }

    #[test]
    fn fixed_membership() {
        let mut before = policy(&[("alice", 3), ("bob", 2)]);
        before.base = Some(BaseRoomPolicy {
            fixed_membership: true,
            parent_dependant: false,
            parent_room: vec![],
            multi_device: true,
            max_clients: None,
            max_users: None,
            pseudonyms_allowed: false,
            persistent_room: false,
            discoverable: false,
            policy_component_ids: vec![],
        });
        let mut after = before.clone();
        after.participants.participants.push(UserRolePair {
            user: Uri::from("carol"),
            role_index: 2,
        });
        let c = Change {
            actor: "alice".into(),
            transitions: vec![t("carol", 0, 2)],
            ..Default::default()
        };
        assert!(
            authorize(&before, &after, &c)
                .unwrap_err()
                .0
                .contains("fixed-membership")
        );
    }

    #[test]
    fn external_join_of_own_new_device() {
        let before = policy(&[("alice", 3), ("bob", 2)]);
        let c = Change {
            actor: "bob".into(),
            external: true,
            added_clients_of: vec![],
            members_before: vec!["alice".into(), "bob".into()],
            members_after: vec!["alice".into(), "bob".into(), "bob".into()],
            ..Default::default()
        };
        assert_eq!(authorize(&before, &before, &c), Ok(()));
        let stranger = Change {
            actor: "mallory".into(),
            external: true,
            ..Default::default()
        };
        assert!(authorize(&before, &before, &stranger).is_err());
    }
}
