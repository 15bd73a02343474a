//! Roles (room-policy §3) and preauthorization (§4).

use crate::codec::{Bytes, Uri};
use crate::wire_struct;

// Roles (room-policy §3) and preauthorization (§4)

wire_struct! {
    /// `SingleSourceRoleChangeTargets`.
    pub struct SingleSourceRoleChangeTargets as "SingleSourceRoleChangeTargets" {
        /// From this role...
        pub from_role_index: u32 as "from_role_index",
        /// ...to any of these.
        pub target_role_indexes: Vec<u32> as "target_role_indexes",
    }
}

wire_struct! {
    /// `Role`.
    pub struct Role as "Role" {
        /// Its index (0 reserved for "not in the list").
        pub role_index: u32 as "role_index",
        /// Name (`banned` for role 1 by convention).
        pub role_name: Bytes as "role_name",
        /// Description.
        pub role_description: Bytes as "role_description",
        /// Capabilities.
        pub role_capabilities: Vec<u16> as "role_capabilities",
        /// Minimum participants with this role.
        pub minimum_participants_constraint: u32 as "minimum_participants_constraint",
        /// Maximum participants with this role.
        pub maximum_participants_constraint: Option<u32> as "maximum_participants_constraint",
        /// Minimum active participants.
        pub minimum_active_participants_constraint: u32 as "minimum_active_participants_constraint",
        /// Maximum active participants (0 = may have no clients).
        pub maximum_active_participants_constraint: Option<u32> as "maximum_active_participants_constraint",
        /// Transitions holders of this role may perform.
        pub authorized_role_changes: Vec<SingleSourceRoleChangeTargets> as "authorized_role_changes",
    }
}

impl Role {
    /// Whether the role has capability `c`.
    pub fn can(&self, c: u16) -> bool {
        self.role_capabilities.contains(&c)
    }

    /// Whether holders may move a user from role `from` to role `to`.
    pub fn may_change(&self, from: u32, to: u32) -> bool {
        self.authorized_role_changes
            .iter()
            .any(|t| t.from_role_index == from && t.target_role_indexes.contains(&to))
    }

    /// The role's name as text.
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.role_name).into_owned()
    }
}

wire_struct! {
    /// `RoleData` (component 0x0025); RoleUpdate replaces it whole.
    pub struct RoleData as "RoleData" {
        /// The roles.
        pub roles: Vec<Role> as "roles",
    }
}

impl RoleData {
    /// The role with `index`.
    pub fn role(&self, index: u32) -> Option<&Role> {
        self.roles.iter().find(|r| r.role_index == index)
    }
}

wire_struct! {
    /// `ClaimId`.
    pub struct ClaimId as "ClaimId" {
        /// MLS credential type of the claim.
        pub credential_type: u16 as "credential_type",
        /// OID bytes / JWT claim name / CWT key.
        pub id: Bytes as "id",
    }
}

wire_struct! {
    /// `Claim`.
    pub struct Claim as "Claim" {
        /// Which claim.
        pub claim_id: ClaimId as "claim_id",
        /// Its required value.
        pub claim_value: Bytes as "claim_value",
    }
}

wire_struct! {
    /// `PreAuthRoleEntry`: all claims must match; the first matching entry wins.
    pub struct PreAuthRoleEntry as "PreAuthRoleEntry" {
        /// The claims.
        pub claimset: Vec<Claim> as "claimset",
        /// The role granted.
        pub target_role: Role as "target_role",
    }
}

wire_struct! {
    /// `PreAuthData` (component 0x0026).
    pub struct PreAuthData as "PreAuthData" {
        /// Entries in order.
        pub preauthorized_entries: Vec<PreAuthRoleEntry> as "preauthorized_entries",
    }
}

wire_struct! {
    /// `BaseRoomPolicy` (component 0x0027). `parent_room` is a vector of zero or one Uri.
    pub struct BaseRoomPolicy as "BaseRoomPolicy" {
        /// DMs and group DMs: the participant list is fixed at creation.
        pub fixed_membership: bool as "fixed_membership",
        /// Participants must be a subset of the parent room's.
        pub parent_dependant: bool as "parent_dependant",
        /// The parent room, when parent_dependant.
        pub parent_room: Vec<Uri> as "parent_room",
        /// Several clients per user (default true).
        pub multi_device: bool as "multi_device",
        /// Cap on MLS clients.
        pub max_clients: Option<u32> as "max_clients",
        /// Cap on non-banned participants.
        pub max_users: Option<u32> as "max_users",
        /// Pseudonymous credentials allowed.
        pub pseudonyms_allowed: bool as "pseudonyms_allowed",
        /// The room outlives its MLS group.
        pub persistent_room: bool as "persistent_room",
        /// Searchable.
        pub discoverable: bool as "discoverable",
        /// Other policy components in force.
        pub policy_component_ids: Vec<u16> as "policy_component_ids",
    }
}
