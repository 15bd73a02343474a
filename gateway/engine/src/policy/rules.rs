//! One function per rule of draft-ietf-mimi-room-policy, in the order [`super::authorize`]
//! applies them.

use std::collections::{BTreeMap, BTreeSet};

use mimi_proto::components::{RoleTransition, capability, ids};

use super::{Change, PolicyRefusal, RoomPolicy, is_banned_role};

type R = Result<(), PolicyRefusal>;

fn missing(actor: &str, action: impl Into<String>, capability: &'static str) -> PolicyRefusal {
    PolicyRefusal::MissingCapability {
        actor: actor.to_owned(),
        action: action.into(),
        capability,
    }
}

fn has(p: &RoomPolicy, actor: &str, cap: u16) -> bool {
    p.roles.role(p.role_of(actor)).is_some_and(|r| r.can(cap))
}

fn may(p: &RoomPolicy, actor: &str, from: u32, to: u32) -> bool {
    p.roles
        .role(p.role_of(actor))
        .is_some_and(|r| r.may_change(from, to))
}

/// A banned user's only possible action is removing its own clients.
pub(super) fn banned_actor(before: &RoomPolicy, c: &Change) -> R {
    let actor = c.actor.as_str();
    if before.is_banned(actor) {
        let only_own_removals = c.transitions.is_empty()
            && c.added_clients_of.is_empty()
            && c.policy_components.is_empty()
            && c.removed_clients_of.iter().all(|u| u == actor);
        if !only_own_removals || c.external {
            return Err(PolicyRefusal::BannedActor(actor.to_owned()));
        }
    }
    Ok(())
}

/// External commits: allowed by the operational policy; a participant adds its own client
/// (canAddOwnClient); a non-participant joins only an open room, adding itself to the list.
/// A normal commit needs a participant.
pub(super) fn external_commit(before: &RoomPolicy, c: &Change) -> R {
    let actor = c.actor.as_str();
    let actor_role = before.role_of(actor);
    if !c.external {
        return if actor_role == 0 {
            Err(PolicyRefusal::NotParticipant(actor.to_owned()))
        } else {
            Ok(())
        };
    }
    if before
        .ops
        .as_ref()
        .is_some_and(|o| !o.external_commit_allowed)
    {
        return Err(PolicyRefusal::ExternalCommitsOff);
    }
    if actor_role != 0 {
        return if has(before, actor, capability::CAN_ADD_OWN_CLIENT) {
            Ok(())
        } else {
            Err(missing(actor, "add its own clients", "canAddOwnClient"))
        };
    }
    let self_add = c
        .transitions
        .iter()
        .find(|t| t.user.as_str() == actor && t.from == 0);
    let open = before
        .roles
        .role(0)
        .filter(|r0| r0.can(capability::CAN_OPEN_JOIN));
    match (self_add, open) {
        (Some(t), Some(r0)) if r0.may_change(0, t.to) => Ok(()),
        (None, _) => Err(PolicyRefusal::JoinWithoutListEntry(actor.to_owned())),
        _ => Err(PolicyRefusal::NotOpen(actor.to_owned())),
    }
}

/// Changing a policy component needs the capability that governs it.
pub(super) fn policy_components(before: &RoomPolicy, c: &Change) -> R {
    for id in &c.policy_components {
        let (cap, cap_name, name) = match *id {
            ids::ROLES_LIST => (
                capability::CAN_CHANGE_ROLE_DEFINITIONS,
                "canChangeRoleDefinitions",
                "roles_list",
            ),
            ids::PREAUTH_LIST => (
                capability::CAN_CHANGE_PREAUTHORIZED_USER_LIST,
                "canChangePreauthorizedUserList",
                "preauth_list",
            ),
            ids::BASE_ROOM_POLICY | ids::MLS_OPERATIONAL_POLICY => (
                capability::CAN_CHANGE_ROOM_MEMBERSHIP_STYLE,
                "canChangeRoomMembershipStyle",
                "membership style",
            ),
            ids::ROOM_METADATA => (
                capability::CAN_CHANGE_ROOM_NAME,
                "canChangeRoomName",
                "room_metadata",
            ),
            other => (
                capability::CAN_CHANGE_ROLE_DEFINITIONS,
                "canChangeRoleDefinitions",
                ids::name(other).unwrap_or("policy component"),
            ),
        };
        if !has(before, &c.actor, cap) {
            return Err(missing(&c.actor, format!("change {name}"), cap_name));
        }
    }
    Ok(())
}

/// Role definitions and the preauthorized list do not change together with the participant
/// list (each changes the meaning of the other).
pub(super) fn component_mix(c: &Change) -> R {
    if c.policy_components.contains(&ids::ROLES_LIST) && !c.transitions.is_empty() {
        return Err(PolicyRefusal::ComponentMix(
            "a roles_list update cannot share a commit with participant-list changes",
        ));
    }
    if c.policy_components.contains(&ids::PREAUTH_LIST) && c.transitions.iter().any(|t| t.to != 0) {
        return Err(PolicyRefusal::ComponentMix(
            "a preauth_list update cannot share a commit with participant-list changes other than removals",
        ));
    }
    Ok(())
}

/// Each participant-list transition needs the matching capability and role change right.
pub(super) fn transitions(before: &RoomPolicy, c: &Change) -> R {
    for t in &c.transitions {
        transition(before, c, t)?;
    }
    Ok(())
}

fn transition(before: &RoomPolicy, c: &Change, t: &RoleTransition) -> R {
    let actor = c.actor.as_str();
    let (user, from, to) = (t.user.as_str(), t.from, t.to);
    let fixed = before.fixed();
    let role_change = || PolicyRefusal::RoleChange {
        actor: actor.to_owned(),
        user: user.to_owned(),
        from,
        to,
    };
    if user == actor {
        if to == 0 {
            if fixed {
                return Err(PolicyRefusal::FixedMembership(
                    "users cannot leave (remove your clients instead)".into(),
                ));
            }
            if !has(before, actor, capability::CAN_REMOVE_SELF) {
                return Err(missing(actor, "leave the room", "canRemoveSelf"));
            }
        } else if from == 0 {
            if !c.external {
                return Err(PolicyRefusal::SelfAdd(actor.to_owned()));
            }
        } else if !has(before, actor, capability::CAN_CHANGE_OWN_ROLE)
            || !may(before, actor, from, to)
        {
            return Err(role_change());
        }
        return Ok(());
    }
    if from == 0 {
        if fixed {
            return Err(PolicyRefusal::FixedMembership(format!(
                "{user} cannot be added"
            )));
        }
        if !has(before, actor, capability::CAN_ADD_PARTICIPANT) {
            return Err(missing(actor, "add participants", "canAddParticipant"));
        }
        if !may(before, actor, 0, to) {
            return Err(role_change());
        }
    } else if to == 0 {
        if fixed {
            return Err(PolicyRefusal::FixedMembership(format!(
                "{user} cannot be removed"
            )));
        }
        if !has(before, actor, capability::CAN_REMOVE_PARTICIPANT) || !may(before, actor, from, 0) {
            return Err(missing(
                actor,
                format!("remove {user}"),
                "canRemoveParticipant",
            ));
        }
    } else if to == 1 && is_banned_role(&before.roles, 1) {
        if !has(before, actor, capability::CAN_BAN) || !may(before, actor, from, 1) {
            return Err(missing(actor, format!("ban {user}"), "canBan"));
        }
    } else if from == 1 && is_banned_role(&before.roles, 1) {
        if !has(before, actor, capability::CAN_UNBAN) || !may(before, actor, 1, to) {
            return Err(missing(actor, format!("unban {user}"), "canUnban"));
        }
    } else if !has(before, actor, capability::CAN_CHANGE_USER_ROLE) || !may(before, actor, from, to)
    {
        return Err(role_change());
    }
    Ok(())
}

fn touched(c: &Change) -> BTreeMap<&str, &RoleTransition> {
    c.transitions.iter().map(|t| (t.user.as_str(), t)).collect()
}

/// MLS Adds: only of participants with a role that may have clients; adding another user's
/// clients needs canAddParticipant unless that user is being added to the list now.
pub(super) fn adds(before: &RoomPolicy, after: &RoomPolicy, c: &Change) -> R {
    let actor = c.actor.as_str();
    let touched = touched(c);
    for u in &c.added_clients_of {
        let r = after.role_of(u);
        if r == 0 {
            return Err(PolicyRefusal::ClientsWithoutParticipant(u.clone()));
        }
        if after.is_banned(u) {
            return Err(PolicyRefusal::BannedUser(u.clone()));
        }
        if after
            .roles
            .role(r)
            .is_some_and(|role| role.maximum_active_participants_constraint == Some(0))
        {
            return Err(PolicyRefusal::RoleWithoutClients {
                user: u.clone(),
                role: r,
            });
        }
        if u == actor {
            if !c.external && !has(before, actor, capability::CAN_ADD_OWN_CLIENT) {
                return Err(missing(actor, "add its own clients", "canAddOwnClient"));
            }
        } else if touched.get(u.as_str()).is_none_or(|t| t.from != 0)
            && !has(before, actor, capability::CAN_ADD_PARTICIPANT)
        {
            return Err(missing(
                actor,
                format!("add clients of {u}"),
                "canAddParticipant",
            ));
        }
    }
    Ok(())
}

/// MLS Removes: one's own clients with canRemoveOwnClient (or when leaving, or banned);
/// others' clients when they leave the list or are banned now, or with canKick.
pub(super) fn removes(before: &RoomPolicy, c: &Change) -> R {
    let actor = c.actor.as_str();
    let touched = touched(c);
    for u in &c.removed_clients_of {
        if u == actor {
            if !has(before, actor, capability::CAN_REMOVE_OWN_CLIENT)
                && touched.get(u.as_str()).is_none_or(|t| t.to != 0)
                && !before.is_banned(actor)
            {
                return Err(missing(
                    actor,
                    "remove its own clients",
                    "canRemoveOwnClient",
                ));
            }
        } else if !touched
            .get(u.as_str())
            .is_some_and(|t| t.to == 0 || is_banned_role(&before.roles, t.to))
            && !has(before, actor, capability::CAN_KICK)
        {
            return Err(missing(actor, format!("remove clients of {u}"), "canKick"));
        }
    }
    Ok(())
}

/// After the change, every client belongs to a participant who is not banned.
pub(super) fn membership_consistency(after: &RoomPolicy, c: &Change) -> R {
    // One index of the list, not one scan of it per member.
    let roles: BTreeMap<&str, u32> = after
        .participants
        .participants
        .iter()
        .rev() // the first entry of a user wins, as in role_of
        .map(|p| (p.user.as_str(), p.role_index))
        .collect();
    let users: BTreeSet<&str> = c.members_after.iter().map(String::as_str).collect();
    for u in users {
        let role = roles.get(u).copied().unwrap_or(0);
        if role == 0 {
            return Err(PolicyRefusal::StrayClients(u.to_owned()));
        }
        if is_banned_role(&after.roles, role) {
            return Err(PolicyRefusal::BannedWithClients(u.to_owned()));
        }
    }
    Ok(())
}

/// The base policy's limits: one client per user, maximum clients and users (only a change
/// that grows past a limit is refused).
pub(super) fn room_limits(before: &RoomPolicy, after: &RoomPolicy, c: &Change) -> R {
    let Some(base) = after.base.as_ref() else {
        return Ok(());
    };
    let mut leaves: BTreeMap<&str, u32> = BTreeMap::new();
    for u in &c.members_after {
        *leaves.entry(u.as_str()).or_default() += 1;
    }
    if !base.multi_device && leaves.values().any(|n| *n > 1) {
        return Err(PolicyRefusal::OneClientPerUser);
    }
    if let Some(max) = base.max_clients
        && c.members_after.len() > max as usize
        && c.members_after.len() > c.members_before.len()
    {
        return Err(PolicyRefusal::MaxClients(max));
    }
    if let Some(max) = base.max_users {
        let users = |p: &RoomPolicy| {
            p.participants
                .participants
                .iter()
                .filter(|x| !is_banned_role(&p.roles, x.role_index))
                .count()
        };
        let (n0, n1) = (users(before), users(after));
        if n1 > max as usize && n1 > n0 {
            return Err(PolicyRefusal::MaxUsers(max));
        }
    }
    Ok(())
}

/// Role participant and active-participant constraints, for roles whose counts moved the
/// wrong way.
pub(super) fn role_constraints(before: &RoomPolicy, after: &RoomPolicy, c: &Change) -> R {
    let count = |p: &RoomPolicy, r: u32| {
        p.participants
            .participants
            .iter()
            .filter(|x| x.role_index == r)
            .count()
    };
    // Users with clients, before and after: built once, not once per role.
    let users_before: BTreeSet<&str> = c.members_before.iter().map(String::as_str).collect();
    let users_after: BTreeSet<&str> = c.members_after.iter().map(String::as_str).collect();
    let active = |p: &RoomPolicy, users: &BTreeSet<&str>, r: u32| {
        p.participants
            .participants
            .iter()
            .filter(|x| x.role_index == r && users.contains(x.user.as_str()))
            .count()
    };
    for role in &after.roles.roles {
        let r = role.role_index;
        let refuse = |rule, n: u32, what| PolicyRefusal::RoleConstraint {
            role: role.name(),
            rule,
            n,
            what,
        };
        let (n0, n1) = (count(before, r), count(after, r));
        let (a0, a1) = (
            active(before, &users_before, r),
            active(after, &users_after, r),
        );
        let min = role.minimum_participants_constraint;
        if n1 < n0 && n1 < min as usize {
            return Err(refuse("needs at least", min, "participants"));
        }
        if let Some(max) = role.maximum_participants_constraint
            && n1 > n0
            && n1 > max as usize
        {
            return Err(refuse("allows at most", max, "participants"));
        }
        let amin = role.minimum_active_participants_constraint;
        if a1 < a0 && a1 < amin as usize {
            return Err(refuse("needs at least", amin, "active participants"));
        }
        if let Some(max) = role.maximum_active_participants_constraint
            && a1 > a0
            && a1 > max as usize
        {
            return Err(refuse("allows at most", max, "active participants"));
        }
    }
    Ok(())
}
