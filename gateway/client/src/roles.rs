//! Room setups and the default roles of a moderated room.

use mimi_proto::codec::Bytes;
use mimi_proto::components::{Role, RoleData, SingleSourceRoleChangeTargets, capability};

use crate::role;

pub(crate) fn role_def(
    index: u32,
    name: &str,
    caps: &[u16],
    changes: &[(u32, &[u32])],
    min: u32,
    max_active: Option<u32>,
) -> Role {
    Role {
        role_index: index,
        role_name: Bytes(name.as_bytes().to_vec()),
        role_description: Bytes::default(),
        role_capabilities: caps.to_vec(),
        minimum_participants_constraint: min,
        maximum_participants_constraint: None,
        minimum_active_participants_constraint: 0,
        maximum_active_participants_constraint: max_active,
        authorized_role_changes: changes
            .iter()
            .map(|(f, t)| SingleSourceRoleChangeTargets {
                from_role_index: *f,
                target_role_indexes: t.to_vec(),
            })
            .collect(),
    }
}

/// Roles for a moderated room: banned (1), member (2: may talk, manage its own clients, leave,
/// and invite members), admin (3: everything, at least one).
pub fn default_roles() -> RoleData {
    use capability::*;
    let member = [
        CAN_SEND_MESSAGE,
        CAN_RECEIVE_MESSAGE,
        CAN_REACT_TO_MESSAGE,
        CAN_EDIT_OWN_MESSAGE,
        CAN_DELETE_OWN_MESSAGE,
        CAN_ADD_OWN_CLIENT,
        CAN_REMOVE_OWN_CLIENT,
        CAN_REMOVE_SELF,
        CAN_REPORT_ABUSE,
        CAN_ADD_PARTICIPANT,
    ];
    let mut admin = member.to_vec();
    admin.extend([
        CAN_REMOVE_PARTICIPANT,
        CAN_BAN,
        CAN_UNBAN,
        CAN_KICK,
        CAN_CHANGE_USER_ROLE,
        CAN_DELETE_OTHER_MESSAGE,
        CAN_CHANGE_ROOM_NAME,
        CAN_CHANGE_ROOM_DESCRIPTION,
        CAN_CHANGE_ROLE_DEFINITIONS,
        CAN_CHANGE_ROOM_MEMBERSHIP_STYLE,
    ]);
    RoleData {
        roles: vec![
            role_def(role::BANNED, "banned", &[], &[], 0, Some(0)),
            role_def(
                role::MEMBER,
                "member",
                &member,
                &[(0, &[role::MEMBER])],
                0,
                None,
            ),
            role_def(
                role::ADMIN,
                "admin",
                &admin,
                &[
                    (0, &[role::MEMBER, role::ADMIN]),
                    (role::MEMBER, &[0, role::BANNED, role::ADMIN]),
                    (role::BANNED, &[0, role::MEMBER]),
                    (role::ADMIN, &[role::MEMBER, 0]),
                ],
                1,
                None,
            ),
        ],
    }
}

/// How a new room is set up.
#[derive(Debug, Clone)]
pub struct RoomSetup {
    /// Display name.
    pub name: String,
    /// DM-style fixed membership.
    pub fixed_membership: bool,
    /// Anyone may join by external commit (role 0 gets canOpenJoin into `member`).
    pub open_join: bool,
    /// The hub franks messages (franking_agent and safe_aad components).
    pub franking: bool,
    /// Roles.
    pub roles: RoleData,
    /// The creator's role.
    pub creator_role: u32,
    /// Users (and roles) in the participant list from the start (fixed-membership rooms).
    pub initial_participants: Vec<(String, u32)>,
}

impl RoomSetup {
    /// A moderated room named `name`, creator admin, franked.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            fixed_membership: false,
            open_join: false,
            franking: true,
            roles: default_roles(),
            creator_role: role::ADMIN,
            initial_participants: vec![],
        }
    }
}

/// The room creation bodies for the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedRoom {
    /// Raw RFC 9420 GroupInfo (no ratchet_tree extension).
    pub group_info: Vec<u8>,
    /// The `ratchet_tree` vector.
    pub ratchet_tree: Vec<u8>,
}
