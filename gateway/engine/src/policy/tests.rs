//! Unit tests of the policy rules.

use super::*;
use mimi_proto::codec::{Bytes, Uri};
use mimi_proto::components::capability;
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
            .to_string()
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
            .to_string()
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
            .to_string()
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
            .to_string()
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
            .to_string()
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

#[test]
fn proposals_respect_fixed_membership_and_capabilities() {
    let mut before = policy(&[("alice", 3), ("bob", 2)]);
    assert!(authorize_proposal(&before, &before, "mallory", &[], &[], &[]).is_err());
    let add = [t("carol", 0, 2)];
    assert!(
        authorize_proposal(&before, &before, "bob", &add, &[], &[])
            .unwrap_err()
            .to_string()
            .contains("canAddParticipant")
    );
    assert_eq!(
        authorize_proposal(&before, &before, "alice", &add, &[], &[]),
        Ok(())
    );
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
    assert!(matches!(
        authorize_proposal(&before, &before, "alice", &add, &[], &[]),
        Err(PolicyRefusal::FixedMembership(_))
    ));
}

#[test]
fn kicks_need_can_kick_unless_the_user_leaves_the_list() {
    let before = policy(&[("alice", 3), ("bob", 2), ("carol", 2)]);
    let kick = Change {
        actor: "bob".into(),
        removed_clients_of: vec!["carol".into()],
        members_before: vec!["alice".into(), "bob".into(), "carol".into()],
        members_after: vec!["alice".into(), "bob".into()],
        ..Default::default()
    };
    assert!(
        authorize(&before, &before, &kick)
            .unwrap_err()
            .to_string()
            .contains("canKick")
    );
    let mut admin = kick;
    admin.actor = "alice".into();
    assert_eq!(authorize(&before, &before, &admin), Ok(()));
}

#[test]
fn one_client_per_user_and_role_constraints() {
    let mut p = policy(&[("alice", 3), ("bob", 2)]);
    p.base = Some(BaseRoomPolicy {
        fixed_membership: false,
        parent_dependant: false,
        parent_room: vec![],
        multi_device: false,
        max_clients: Some(3),
        max_users: None,
        pseudonyms_allowed: false,
        persistent_room: false,
        discoverable: false,
        policy_component_ids: vec![],
    });
    let second = Change {
        actor: "bob".into(),
        external: true,
        members_before: vec!["alice".into(), "bob".into()],
        members_after: vec!["alice".into(), "bob".into(), "bob".into()],
        ..Default::default()
    };
    assert_eq!(
        authorize(&p, &p, &second),
        Err(PolicyRefusal::OneClientPerUser)
    );
    // The last admin may not demote itself when admins need at least one participant.
    let mut q = policy(&[("alice", 3), ("bob", 2)]);
    q.roles.roles[2].minimum_participants_constraint = 1;
    q.roles.roles[2]
        .authorized_role_changes
        .push(SingleSourceRoleChangeTargets {
            from_role_index: 3,
            target_role_indexes: vec![2],
        });
    q.roles.roles[2]
        .role_capabilities
        .push(capability::CAN_CHANGE_OWN_ROLE);
    let after = policy(&[("alice", 2), ("bob", 2)]);
    let mut after_q = after;
    after_q.roles = q.roles.clone();
    let demote = Change {
        actor: "alice".into(),
        transitions: vec![t("alice", 3, 2)],
        members_before: vec!["alice".into(), "bob".into()],
        members_after: vec!["alice".into(), "bob".into()],
        ..Default::default()
    };
    assert!(matches!(
        authorize(&q, &after_q, &demote),
        Err(PolicyRefusal::RoleConstraint { .. })
    ));
}

#[test]
fn components_need_their_capability_and_do_not_mix() {
    let before = policy(&[("alice", 3), ("bob", 2)]);
    let rename = Change {
        actor: "bob".into(),
        policy_components: [ids::ROOM_METADATA].into(),
        ..Default::default()
    };
    assert!(
        authorize(&before, &before, &rename)
            .unwrap_err()
            .to_string()
            .contains("canChangeRoomName")
    );
    let mix = Change {
        actor: "alice".into(),
        policy_components: [ids::ROLES_LIST].into(),
        transitions: vec![t("carol", 0, 2)],
        ..Default::default()
    };
    assert!(matches!(
        authorize(&before, &before, &mix),
        Err(PolicyRefusal::MissingCapability { .. }) | Err(PolicyRefusal::ComponentMix(_))
    ));
}
