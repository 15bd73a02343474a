//! Room state carried in the MLS `app_data_dictionary` (draft-ietf-mls-extensions §4.6):
//! the participant list and room metadata of draft-ietf-mimi-protocol-06 §7, the policy
//! components of draft-ietf-mimi-room-policy-03, and the franking components.
//!
//! All component IDs are in [`ids`]; role capabilities in [`capability`].

use std::collections::{BTreeMap, BTreeSet};

use crate::codec::{Bytes, DecodeError, ErrorKind, Fixed32, Reader, Seg, Uri, Wire};
use crate::mls::Credential;
use crate::{wire_enum, wire_struct};

/// Component IDs (MLS Component Types registry). Room-policy IDs are the draft's suggested
/// values (decision D15).
pub mod ids {
    /// `app_components` (mls-extensions).
    pub const APP_COMPONENTS: u16 = 0x0001;
    /// `safe_aad` (mls-extensions).
    pub const SAFE_AAD: u16 = 0x0002;
    /// `content_media_types` (mls-extensions).
    pub const CONTENT_MEDIA_TYPES: u16 = 0x0003;
    /// `last_resort_key_package` (mls-extensions).
    pub const LAST_RESORT_KEY_PACKAGE: u16 = 0x0004;
    /// `app_ack` (mls-extensions).
    pub const APP_ACK: u16 = 0x0005;
    /// `frank_aad`: SafeAAD item with the franking tag.
    pub const FRANK_AAD: u16 = 0x0020;
    /// `franking_signature_key` / `franking_agent` (the same component, decision D16).
    pub const FRANKING_AGENT: u16 = 0x0021;
    /// `participant_list`.
    pub const PARTICIPANT_LIST: u16 = 0x0022;
    /// `room_metadata`.
    pub const ROOM_METADATA: u16 = 0x0023;
    /// `mls_operational_policy`.
    pub const MLS_OPERATIONAL_POLICY: u16 = 0x0024;
    /// `roles_list`.
    pub const ROLES_LIST: u16 = 0x0025;
    /// `preauth_list`.
    pub const PREAUTH_LIST: u16 = 0x0026;
    /// `base_room_policy`.
    pub const BASE_ROOM_POLICY: u16 = 0x0027;
    /// `status_notification_policy`.
    pub const STATUS_NOTIFICATION_POLICY: u16 = 0x0028;
    /// `join_link_policy`.
    pub const JOIN_LINK_POLICY: u16 = 0x0029;
    /// `join_links`.
    pub const JOIN_LINKS: u16 = 0x002A;
    /// `link_preview_policy`.
    pub const LINK_PREVIEW_POLICY: u16 = 0x002B;
    /// `asset_policy`.
    pub const ASSET_POLICY: u16 = 0x002C;
    /// `logging_policy`.
    pub const LOGGING_POLICY: u16 = 0x002D;
    /// `chat_history_policy`.
    pub const CHAT_HISTORY_POLICY: u16 = 0x002E;
    /// `bot_policy`.
    pub const BOT_POLICY: u16 = 0x002F;
    /// `message_expiration_policy`.
    pub const MESSAGE_EXPIRATION_POLICY: u16 = 0x0030;

    /// Name of a known component.
    pub fn name(id: u16) -> Option<&'static str> {
        Some(match id {
            APP_COMPONENTS => "app_components",
            SAFE_AAD => "safe_aad",
            CONTENT_MEDIA_TYPES => "content_media_types",
            LAST_RESORT_KEY_PACKAGE => "last_resort_key_package",
            APP_ACK => "app_ack",
            FRANK_AAD => "frank_aad",
            FRANKING_AGENT => "franking_agent",
            PARTICIPANT_LIST => "participant_list",
            ROOM_METADATA => "room_metadata",
            MLS_OPERATIONAL_POLICY => "mls_operational_policy",
            ROLES_LIST => "roles_list",
            PREAUTH_LIST => "preauth_list",
            BASE_ROOM_POLICY => "base_room_policy",
            STATUS_NOTIFICATION_POLICY => "status_notification_policy",
            JOIN_LINK_POLICY => "join_link_policy",
            JOIN_LINKS => "join_links",
            LINK_PREVIEW_POLICY => "link_preview_policy",
            ASSET_POLICY => "asset_policy",
            LOGGING_POLICY => "logging_policy",
            CHAT_HISTORY_POLICY => "chat_history_policy",
            BOT_POLICY => "bot_policy",
            MESSAGE_EXPIRATION_POLICY => "message_expiration_policy",
            _ => return None,
        })
    }
}

/// Role capabilities (MIMI Role Capabilities registry, room-policy-03 §8).
pub mod capability {
    /// Add another user (from role 0).
    pub const CAN_ADD_PARTICIPANT: u16 = 0x0000;
    /// Remove another user (to role 0).
    pub const CAN_REMOVE_PARTICIPANT: u16 = 0x0001;
    /// Add one's own clients.
    pub const CAN_ADD_OWN_CLIENT: u16 = 0x0002;
    /// Remove one's own clients.
    pub const CAN_REMOVE_OWN_CLIENT: u16 = 0x0003;
    /// Anyone may join (only on role 0).
    pub const CAN_OPEN_JOIN: u16 = 0x0004;
    /// Join when preauthorized.
    pub const CAN_JOIN_IF_PREAUTHORIZED: u16 = 0x0005;
    /// Leave.
    pub const CAN_REMOVE_SELF: u16 = 0x0006;
    /// Join with a join code.
    pub const CAN_USE_JOIN_CODE: u16 = 0x0009;
    /// Ban (move to role 1 "banned").
    pub const CAN_BAN: u16 = 0x000a;
    /// Unban.
    pub const CAN_UNBAN: u16 = 0x000b;
    /// Remove another user's clients without touching the participant list.
    pub const CAN_KICK: u16 = 0x000c;
    /// Change another user's role.
    pub const CAN_CHANGE_USER_ROLE: u16 = 0x000f;
    /// Change one's own role (via preauthorization).
    pub const CAN_CHANGE_OWN_ROLE: u16 = 0x0010;
    /// Send messages.
    pub const CAN_SEND_MESSAGE: u16 = 0x0100;
    /// Receive messages.
    pub const CAN_RECEIVE_MESSAGE: u16 = 0x0101;
    /// Report abuse.
    pub const CAN_REPORT_ABUSE: u16 = 0x0103;
    /// React.
    pub const CAN_REACT_TO_MESSAGE: u16 = 0x0105;
    /// Edit own messages.
    pub const CAN_EDIT_OWN_MESSAGE: u16 = 0x0109;
    /// Delete own messages.
    pub const CAN_DELETE_OWN_MESSAGE: u16 = 0x010a;
    /// Delete others' messages.
    pub const CAN_DELETE_OTHER_MESSAGE: u16 = 0x010b;
    /// Change the room name.
    pub const CAN_CHANGE_ROOM_NAME: u16 = 0x0300;
    /// Change the room description.
    pub const CAN_CHANGE_ROOM_DESCRIPTION: u16 = 0x0301;
    /// Change the room avatar.
    pub const CAN_CHANGE_ROOM_AVATAR: u16 = 0x0302;
    /// Change the room subject.
    pub const CAN_CHANGE_ROOM_SUBJECT: u16 = 0x0303;
    /// Change the room mood.
    pub const CAN_CHANGE_ROOM_MOOD: u16 = 0x0304;
    /// Destroy the room.
    pub const CAN_DESTROY_ROOM: u16 = 0x0501;
    /// Change fixed membership / parent dependency.
    pub const CAN_CHANGE_ROOM_MEMBERSHIP_STYLE: u16 = 0x0502;
    /// Change the role definitions.
    pub const CAN_CHANGE_ROLE_DEFINITIONS: u16 = 0x0503;
    /// Change the preauthorized list.
    pub const CAN_CHANGE_PREAUTHORIZED_USER_LIST: u16 = 0x0504;
    /// Send an MLS ReInit proposal.
    pub const CAN_SEND_MLS_REINIT_PROPOSAL: u16 = 0x0601;
}

wire_struct! {
    /// `ComponentData`: one entry of an AppDataDictionary.
    pub struct ComponentData as "ComponentData" {
        /// `ComponentID`.
        pub component_id: u16 as "component_id",
        /// The component's encoded data.
        pub data: Bytes as "data",
    }
}

/// `AppDataDictionary`: component entries sorted by ID, each ID once.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppDataDictionary {
    /// The entries.
    pub component_data: Vec<ComponentData>,
}

impl AppDataDictionary {
    /// The data of component `id`.
    pub fn get(&self, id: u16) -> Option<&[u8]> {
        self.component_data
            .iter()
            .find(|c| c.component_id == id)
            .map(|c| c.data.0.as_slice())
    }

    /// Sets component `id`, keeping the order.
    pub fn insert(&mut self, id: u16, data: Vec<u8>) {
        match self
            .component_data
            .binary_search_by_key(&id, |c| c.component_id)
        {
            Ok(i) => self.component_data[i].data = Bytes(data),
            Err(i) => self.component_data.insert(
                i,
                ComponentData {
                    component_id: id,
                    data: Bytes(data),
                },
            ),
        }
    }
}

impl Wire for AppDataDictionary {
    fn encode(&self, out: &mut Vec<u8>) {
        self.component_data.encode(out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("AppDataDictionary"), |r| {
            let at = r.pos();
            let component_data: Vec<ComponentData> = r.field("component_data")?;
            if component_data
                .windows(2)
                .any(|w| w[0].component_id >= w[1].component_id)
            {
                return Err(r.err(
                    at,
                    ErrorKind::Invalid(
                        "component_data must be sorted by component_id without duplicates".into(),
                    ),
                ));
            }
            Ok(Self { component_data })
        })
    }
}

wire_struct! {
    /// `SafeAADItem`.
    pub struct SafeAadItem as "SafeAADItem" {
        /// The component the item belongs to.
        pub component_id: u16 as "component_id",
        /// Its data.
        pub aad_item_data: Bytes as "aad_item_data",
    }
}

wire_struct! {
    /// `SafeAAD`: what a PrivateMessage's `authenticated_data` holds under mls-extensions.
    pub struct SafeAad as "SafeAAD" {
        /// Items sorted by component ID.
        pub aad_items: Vec<SafeAadItem> as "aad_items",
    }
}

impl SafeAad {
    /// Reads the SafeAAD that prefixes a message's `authenticated_data` (when the group's
    /// app-data dictionary has a `safe_aad` component); returns it and the remaining bytes.
    ///
    /// # Errors
    /// [`DecodeError`] if the prefix is not a SafeAAD.
    pub fn from_authenticated_data(
        authenticated_data: &[u8],
    ) -> Result<(Self, &[u8]), DecodeError> {
        let mut r = Reader::new(authenticated_data);
        let aad = Self::decode(&mut r)?;
        Ok((aad, &authenticated_data[r.pos()..]))
    }

    /// The franking tag carried in a `frank_aad` item, if any.
    pub fn franking_tag(&self) -> Option<[u8; 32]> {
        let item = self
            .aad_items
            .iter()
            .find(|i| i.component_id == ids::FRANK_AAD)?;
        FrankAad::from_bytes(&item.aad_item_data)
            .ok()
            .map(|f| f.franking_tag.0)
    }
}

wire_struct! {
    /// `FrankAAD`.
    pub struct FrankAad as "FrankAAD" {
        /// HMAC_SHA256(salt, application_data).
        pub franking_tag: Fixed32 as "franking_tag",
    }
}

wire_struct! {
    /// `FrankingAgentData` (component 0x0021): the hub's franking key.
    pub struct FrankingAgentData as "FrankingAgentData" {
        /// Verifies franking_integrity_signature.
        pub franking_signature_key: Bytes as "franking_signature_key",
        /// Names the hub's domain.
        pub credential: Credential as "credential",
    }
}

// ------------------------------------------------------------------------------------------
// Participant list (protocol §7.5)

wire_struct! {
    /// `UserRolePair`.
    pub struct UserRolePair as "UserRolePair" {
        /// The user URI (UTF-8 bytes).
        pub user: Uri as "user",
        /// Its role.
        pub role_index: u32 as "role_index",
    }
}

/// `ParticipantListData` (component 0x0022): users and their single role; users are unique.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantListData {
    /// The participants.
    pub participants: Vec<UserRolePair>,
}

impl Wire for ParticipantListData {
    fn encode(&self, out: &mut Vec<u8>) {
        self.participants.encode(out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("ParticipantListData"), |r| {
            let at = r.pos();
            let participants: Vec<UserRolePair> = r.field("participants")?;
            let mut seen = BTreeSet::new();
            for p in &participants {
                if !seen.insert(&p.user) {
                    return Err(r.err(
                        at,
                        ErrorKind::Invalid(format!("user {} appears twice", p.user)),
                    ));
                }
            }
            Ok(Self { participants })
        })
    }
}

wire_struct! {
    /// `UserindexRolePair`.
    pub struct UserIndexRolePair as "UserindexRolePair" {
        /// Index into the participant list as it stood before this update.
        pub user_index: u32 as "user_index",
        /// The new role.
        pub role_index: u32 as "role_index",
    }
}

wire_struct! {
    /// `ParticipantListUpdate`: the AppDataUpdate payload for component 0x0022.
    pub struct ParticipantListUpdate as "ParticipantListUpdate" {
        /// Role changes (indices into the list before this update).
        pub changed_role_participants: Vec<UserIndexRolePair> as "changedRoleParticipants",
        /// Users to remove (indices into the list before this update).
        pub removed_indices: Vec<u32> as "removedIndices",
        /// Users appended.
        pub added_participants: Vec<UserRolePair> as "addedParticipants",
    }
}

/// One user's role transition caused by participant-list updates; role 0 means "not in the
/// list" (the room-policy convention), so an add is `0 → r` and a removal `r → 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleTransition {
    /// The user.
    pub user: Uri,
    /// Role before (0 = not a participant).
    pub from: u32,
    /// Role after (0 = removed).
    pub to: u32,
}

/// A participant-list update cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParticipantListError {
    /// An index beyond the list.
    #[error("index {index} is outside the participant list of {len}")]
    IndexOutOfRange {
        /// The index.
        index: u32,
        /// The list length.
        len: usize,
    },
    /// The same user is changed more than once in one commit.
    #[error("user {0} is changed more than once in one commit")]
    TouchedTwice(Uri),
    /// An added user is already a participant.
    #[error("user {0} is already a participant")]
    AlreadyParticipant(Uri),
    /// Role 0 assigned as a role (removal is done with removedIndices).
    #[error("role 0 (no role) cannot be assigned to user {0}")]
    RoleZero(Uri),
}

impl ParticipantListData {
    /// The role of `user`, or 0 when not a participant.
    pub fn role_of(&self, user: &str) -> u32 {
        self.participants
            .iter()
            .find(|p| p.user.as_str() == user)
            .map_or(0, |p| p.role_index)
    }

    /// Applies the participant-list updates of one commit, in order (decision D17: every index
    /// refers to the list as it stood at the start of that update; removals are applied in
    /// descending index order, then additions are appended). Returns the new list and every
    /// role transition, for authorization.
    ///
    /// # Errors
    /// [`ParticipantListError`] if an index is out of range, a user is touched twice across
    /// the commit, or an added user is already present.
    pub fn apply(
        &self,
        updates: &[ParticipantListUpdate],
    ) -> Result<(Self, Vec<RoleTransition>), ParticipantListError> {
        let mut list = self.participants.clone();
        let mut touched: BTreeSet<Uri> = BTreeSet::new();
        let mut transitions = Vec::new();
        for update in updates {
            let len = list.len();
            let user_at = |i: u32| {
                list.get(i as usize)
                    .map(|p| p.user.clone())
                    .ok_or(ParticipantListError::IndexOutOfRange { index: i, len })
            };
            let mut touch = |u: &Uri| {
                if touched.insert(u.clone()) {
                    Ok(())
                } else {
                    Err(ParticipantListError::TouchedTwice(u.clone()))
                }
            };
            let mut role_changes = Vec::new();
            for c in &update.changed_role_participants {
                let user = user_at(c.user_index)?;
                if c.role_index == 0 {
                    return Err(ParticipantListError::RoleZero(user));
                }
                touch(&user)?;
                role_changes.push((c.user_index as usize, c.role_index));
            }
            let mut removals = Vec::new();
            for &i in &update.removed_indices {
                let user = user_at(i)?;
                touch(&user)?;
                removals.push(i as usize);
            }
            for a in &update.added_participants {
                if a.role_index == 0 {
                    return Err(ParticipantListError::RoleZero(a.user.clone()));
                }
                touch(&a.user)?;
            }
            for (i, role) in role_changes {
                transitions.push(RoleTransition {
                    user: list[i].user.clone(),
                    from: list[i].role_index,
                    to: role,
                });
                list[i].role_index = role;
            }
            removals.sort_unstable_by(|a, b| b.cmp(a));
            for i in removals {
                let p = list.remove(i);
                transitions.push(RoleTransition {
                    user: p.user,
                    from: p.role_index,
                    to: 0,
                });
            }
            for a in &update.added_participants {
                if list.iter().any(|p| p.user == a.user) {
                    return Err(ParticipantListError::AlreadyParticipant(a.user.clone()));
                }
                list.push(a.clone());
                transitions.push(RoleTransition {
                    user: a.user.clone(),
                    from: 0,
                    to: a.role_index,
                });
            }
        }
        Ok((Self { participants: list }, transitions))
    }
}

// ------------------------------------------------------------------------------------------
// Room metadata (protocol §7.6)

wire_struct! {
    /// `RichDescription`.
    pub struct RichDescription as "RichDescription" {
        /// Empty = text/plain;charset=utf-8.
        pub media_type: Bytes as "media_type",
        /// RFC 5646 tag.
        pub language_tag: Bytes as "language_tag",
        /// The description.
        pub description_content: Bytes as "description_content",
    }
}

wire_struct! {
    /// `RoomMetaData` (component 0x0023); an update replaces it whole.
    pub struct RoomMetaData as "RoomMetaData" {
        /// The room URI.
        pub room_uri: Uri as "room_uri",
        /// Display name.
        pub room_name: crate::codec::Utf8 as "room_name",
        /// Descriptions.
        pub room_descriptions: Vec<RichDescription> as "room_descriptions",
        /// An https URI of the avatar.
        pub room_avatar: Uri as "room_avatar",
        /// Subject.
        pub room_subject: crate::codec::Utf8 as "room_subject",
        /// Mood.
        pub room_mood: crate::codec::Utf8 as "room_mood",
    }
}

// ------------------------------------------------------------------------------------------
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

// ------------------------------------------------------------------------------------------
// MLS operational policy (room-policy §7)

wire_struct! {
    /// `Parameter` of a MediaType (mls-extensions).
    pub struct MediaTypeParameter as "Parameter" {
        /// Name.
        pub parameter_name: Bytes as "parameter_name",
        /// Value (without quotes).
        pub parameter_value: Bytes as "parameter_value",
    }
}

wire_struct! {
    /// `MediaType` (mls-extensions §6.2).
    pub struct MediaType as "MediaType" {
        /// `type/subtype`.
        pub media_type: Bytes as "media_type",
        /// Parameters.
        pub parameters: Vec<MediaTypeParameter> as "parameters",
    }
}

wire_struct! {
    /// `ExtendedCapabilities`.
    pub struct ExtendedCapabilities as "ExtendedCapabilities" {
        /// Protocol versions.
        pub versions: Vec<u16> as "versions",
        /// Cipher suites.
        pub cipher_suites: Vec<u16> as "cipher_suites",
        /// Extension types.
        pub extensions: Vec<u16> as "extensions",
        /// Proposal types.
        pub proposals: Vec<u16> as "proposals",
        /// Credential types.
        pub credentials: Vec<u16> as "credentials",
        /// Wire formats.
        pub wire_formats: Vec<u16> as "wire_formats",
        /// Component IDs.
        pub component_ids: Vec<u16> as "component_ids",
        /// SafeAAD component IDs.
        pub safe_aad_types: Vec<u16> as "safe_aad_types",
        /// Media types.
        pub media_types: Vec<MediaType> as "media_types",
        /// MLS content types.
        pub content_types: Vec<u8> as "content_types",
    }
}

/// `PendingProposalPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "pending_proposal_strategy", rename_all = "snake_case")]
pub enum PendingProposalPolicy {
    /// 0
    Unspecified,
    /// 1
    ImmediateCommit,
    /// 2
    RandomDelay {
        /// Minimum delay.
        minimum_delay_ms: u64,
        /// Maximum delay.
        maximum_delay_ms: u64,
    },
}

impl Wire for PendingProposalPolicy {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Unspecified => out.push(0),
            Self::ImmediateCommit => out.push(1),
            Self::RandomDelay {
                minimum_delay_ms,
                maximum_delay_ms,
            } => {
                out.push(2);
                minimum_delay_ms.encode(out);
                maximum_delay_ms.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("PendingProposalPolicy"), |r| {
            let strategy = r.at(Seg::Field("pending_proposal_strategy"), |r| {
                let at = r.pos();
                match u8::decode(r)? {
                    v @ 0..=2 => Ok(v),
                    v => Err(r.err(
                        at,
                        ErrorKind::UnknownValue {
                            name: "PendingProposalStrategy",
                            value: u64::from(v),
                        },
                    )),
                }
            })?;
            Ok(match strategy {
                0 => Self::Unspecified,
                1 => Self::ImmediateCommit,
                _ => Self::RandomDelay {
                    minimum_delay_ms: r.field("minimum_delay_ms")?,
                    maximum_delay_ms: r.field("maximum_delay_ms")?,
                },
            })
        })
    }
}

wire_struct! {
    /// `MinDefaultMaxTime`.
    pub struct MinDefaultMaxTime as "MinDefaultMaxTime" {
        /// Minimum.
        pub minimum_time: u64 as "minimum_time",
        /// Default.
        pub default_time: u64 as "default_time",
        /// Maximum.
        pub maximum_time: u64 as "maximum_time",
    }
}

wire_struct! {
    /// `AppMessagePolicy`.
    pub struct AppMessagePolicy as "AppMessagePolicy" {
        /// How many old epochs application messages may use.
        pub epoch_tolerance: u8 as "epoch_tolerance",
        /// Padding target.
        pub pad_to_size: u16 as "pad_to_size",
        /// Ratchet skip-ahead limit.
        pub max_generations_skipahead: u32 as "max_generations_skipahead",
    }
}

wire_struct! {
    /// `OperationalParameters` (component 0x0024).
    pub struct OperationalParameters as "OperationalParameters" {
        /// Must be supported.
        pub mandatory_capabilities: ExtendedCapabilities as "mandatory_capabilities",
        /// Default.
        pub default_capabilities: ExtendedCapabilities as "default_capabilities",
        /// Must not be used.
        pub forbidden_capabilities: ExtendedCapabilities as "forbidden_capabilities",
        /// Allowed handshake wire formats.
        pub handshake_formats: Vec<u16> as "handshake_formats",
        /// External proposals allowed.
        pub external_proposal_allowed: bool as "external_proposal_allowed",
        /// External commits (joins) allowed.
        pub external_commit_allowed: bool as "external_commit_allowed",
        /// When to commit pending proposals.
        pub pending_proposal_policy: PendingProposalPolicy as "pending_proposal_policy",
        /// LeafNode update interval.
        pub leaf_node_update_time: MinDefaultMaxTime as "LeafNode_update_time",
        /// Application message handling.
        pub app_message_policy: AppMessagePolicy as "app_message_policy",
        /// Longest KeyPackage lifetime (the draft's `unit64` is a typo for uint64).
        pub max_kp_lifetime: u64 as "max_kp_lifetime",
        /// Longest credential lifetime.
        pub max_credential_lifetime: u64 as "max_credential_lifetime",
        /// Resumption PSK lifetime.
        pub resumption_psk_lifetime: u64 as "resumption_psk_lifetime",
        /// Sender nonce/key pair lifetime.
        pub sender_nonce_keypair_lifetime: MinDefaultMaxTime as "sender_nonce_keypair_lifetime",
        /// Maximum unused key pairs.
        pub max_keypairs: u32 as "max_keypairs",
        /// How long to buffer out-of-order messages.
        pub buffer_incoming_message_time: MinDefaultMaxTime as "buffer_incoming_message_time",
        /// How many to buffer.
        pub max_buffered_messages: u32 as "max_buffered_messages",
    }
}

// ------------------------------------------------------------------------------------------
// Other policy components the hub reads (room-policy §6)

wire_enum! {
    /// `Optionality`.
    pub enum Optionality: u8 as "Optionality" {
        /// Up to the client.
        Optional = 0 as "optional",
        /// Must.
        Required = 1 as "required",
        /// Must not.
        Forbidden = 2 as "forbidden",
    }
}

wire_struct! {
    /// `StatusNotificationPolicy` (component 0x0028).
    pub struct StatusNotificationPolicy as "StatusNotificationPolicy" {
        /// Delivery notifications.
        pub delivery_notifications: Optionality as "delivery_notifications",
        /// Read receipts.
        pub read_receipts: Optionality as "read_receipts",
    }
}

wire_enum! {
    /// `AssetUploadLocation`.
    pub enum AssetUploadLocation: u8 as "AssetUploadLocation" {
        /// Anywhere.
        Unspecified = 0 as "unspecified",
        /// The uploader's provider (recommended).
        LocalProvider = 1 as "localProvider",
        /// The hub.
        Hub = 2 as "hub",
    }
}

wire_struct! {
    /// `ProviderAssetUploadDomains`: where one provider's users upload.
    pub struct ProviderAssetUploadDomains as "ProviderAssetUploadDomains" {
        /// The provider's domain.
        pub provider: Bytes as "provider",
        /// Its asset hosts.
        pub asset_upload_destinations: Vec<Bytes> as "asset_upload_destinations",
    }
}

wire_enum! {
    /// `DownloadPrivacyType`.
    pub enum DownloadPrivacyType: u8 as "DownloadPrivacyType" {
        /// From the asset host.
        Direct = 0 as "direct",
        /// Through the hub's proxyDownload.
        HubProxy = 1 as "hubProxy",
        /// Through OHTTP.
        Ohttp = 2 as "ohttp",
    }
}

wire_struct! {
    /// `DownloadPrivacy`.
    pub struct DownloadPrivacy as "DownloadPrivacy" {
        /// Allowed mechanisms.
        pub allowed_download_types: Vec<DownloadPrivacyType> as "allowed_download_types",
        /// Forbidden mechanisms.
        pub forbidden_download_types: Vec<DownloadPrivacyType> as "forbidden_download_types",
        /// Default.
        pub default_download_type: DownloadPrivacyType as "default_download_type",
    }
}

wire_struct! {
    /// `AssetPolicy` (component 0x002C). `optional<MediaType> permitted_media_types<V>` is read
    /// as an optional vector of MediaType (decision D18).
    pub struct AssetPolicy as "AssetPolicy" {
        /// Where to upload.
        pub asset_upload_location: AssetUploadLocation as "asset_upload_location",
        /// Asset hosts per provider (what the hub's proxyDownload allows).
        pub upload_domains: Vec<ProviderAssetUploadDomains> as "upload_domains",
        /// Download mechanisms.
        pub download_privacy: DownloadPrivacy as "download_privacy",
        /// Bytes.
        pub max_image: u64 as "max_image",
        /// Bytes.
        pub max_audio: u64 as "max_audio",
        /// Bytes.
        pub max_video: u64 as "max_video",
        /// Bytes.
        pub max_attachment: u64 as "max_attachment",
        /// Never allowed.
        pub forbidden_media_types: Vec<MediaType> as "forbidden_media_types",
        /// If present, the only ones allowed.
        pub permitted_media_types: Option<Vec<MediaType>> as "permitted_media_types",
    }
}

/// `MessageExpiration` (component 0x0030).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageExpiration {
    /// Whether expiring messages are required, optional or forbidden.
    pub expiring_messages: Optionality,
    /// Shortest duration, seconds (0 when forbidden).
    pub min_expiration_duration: u32,
    /// Longest duration, seconds (0 when forbidden).
    pub max_expiration_duration: u32,
    /// Preferred duration.
    pub default_expiration_duration: Option<u32>,
}

impl Wire for MessageExpiration {
    fn encode(&self, out: &mut Vec<u8>) {
        self.expiring_messages.encode(out);
        if self.expiring_messages != Optionality::Forbidden {
            self.min_expiration_duration.encode(out);
            self.max_expiration_duration.encode(out);
            self.default_expiration_duration.encode(out);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("MessageExpiration"), |r| {
            let expiring_messages: Optionality = r.field("expiring_messages")?;
            if expiring_messages == Optionality::Forbidden {
                return Ok(Self {
                    expiring_messages,
                    min_expiration_duration: 0,
                    max_expiration_duration: 0,
                    default_expiration_duration: None,
                });
            }
            Ok(Self {
                expiring_messages,
                min_expiration_duration: r.field("min_expiration_duration")?,
                max_expiration_duration: r.field("max_expiration_duration")?,
                default_expiration_duration: r.field("default_expiration_duration")?,
            })
        })
    }
}

/// One AppDataUpdate operation (draft-ietf-mls-extensions §4.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppDataOp {
    /// `update`: the component-specific update payload.
    Update(Vec<u8>),
    /// `remove`.
    Remove,
}

/// The effect of a commit's AppDataUpdate proposals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedAppData {
    /// New value (`None` = removed) of every changed component.
    pub changes: BTreeMap<u16, Option<Vec<u8>>>,
    /// Participant-list role transitions (for authorization).
    pub transitions: Vec<RoleTransition>,
    /// Components other than the participant list that changed.
    pub touched: BTreeSet<u16>,
}

/// Computes what a commit's AppDataUpdate proposals (in commit order) do to the dictionary:
/// participant-list updates apply in order with the semantics of
/// [`ParticipantListData::apply`]; every other known component's update replaces its value
/// (after checking it decodes); unknown components are replaced or removed as given.
///
/// # Errors
/// A message naming the component and what is wrong.
pub fn resolve_app_data(
    old: impl Fn(u16) -> Option<Vec<u8>>,
    ops: &[(u16, AppDataOp)],
) -> Result<ResolvedAppData, String> {
    let mut out = ResolvedAppData::default();
    let mut list_updates = Vec::new();
    for (id, op) in ops {
        match (*id, op) {
            (ids::PARTICIPANT_LIST, AppDataOp::Update(d)) => {
                list_updates.push(
                    ParticipantListUpdate::from_bytes(d)
                        .map_err(|e| format!("participant_list update: {e}"))?,
                );
            }
            (ids::PARTICIPANT_LIST, AppDataOp::Remove) => {
                return Err("the participant list cannot be removed".into());
            }
            (id, AppDataOp::Update(d)) => {
                let check = match id {
                    ids::ROOM_METADATA => RoomMetaData::from_bytes(d).map(drop),
                    ids::ROLES_LIST => RoleData::from_bytes(d).map(drop),
                    ids::PREAUTH_LIST => PreAuthData::from_bytes(d).map(drop),
                    ids::BASE_ROOM_POLICY => BaseRoomPolicy::from_bytes(d).map(drop),
                    ids::MLS_OPERATIONAL_POLICY => OperationalParameters::from_bytes(d).map(drop),
                    ids::FRANKING_AGENT => FrankingAgentData::from_bytes(d).map(drop),
                    ids::ASSET_POLICY => AssetPolicy::from_bytes(d).map(drop),
                    ids::STATUS_NOTIFICATION_POLICY => {
                        StatusNotificationPolicy::from_bytes(d).map(drop)
                    }
                    ids::MESSAGE_EXPIRATION_POLICY => MessageExpiration::from_bytes(d).map(drop),
                    _ => Ok(()),
                };
                check
                    .map_err(|e| format!("{} update: {e}", ids::name(id).unwrap_or("component")))?;
                out.changes.insert(id, Some(d.clone()));
                out.touched.insert(id);
            }
            (id, AppDataOp::Remove) => {
                out.changes.insert(id, None);
                out.touched.insert(id);
            }
        }
    }
    if !list_updates.is_empty() {
        let current = old(ids::PARTICIPANT_LIST)
            .map(|b| ParticipantListData::from_bytes(&b))
            .transpose()
            .map_err(|e| format!("participant_list: {e}"))?
            .unwrap_or_default();
        let (new, t) = current.apply(&list_updates).map_err(|e| e.to_string())?;
        out.transitions = t;
        out.changes
            .insert(ids::PARTICIPANT_LIST, Some(new.to_bytes()));
    }
    Ok(out)
}

crate::impl_tls_codec!(
    ComponentData,
    AppDataDictionary,
    SafeAad,
    FrankAad,
    FrankingAgentData,
    ParticipantListData,
    ParticipantListUpdate,
    RoomMetaData,
    RoleData,
    PreAuthData,
    BaseRoomPolicy,
    OperationalParameters,
    StatusNotificationPolicy,
    AssetPolicy,
    MessageExpiration,
);

#[cfg(test)]
mod tests {
    use super::*;

    fn list(users: &[(&str, u32)]) -> ParticipantListData {
        ParticipantListData {
            participants: users
                .iter()
                .map(|(u, r)| UserRolePair {
                    user: Uri::from(*u),
                    role_index: *r,
                })
                .collect(),
        }
    }

    fn update(
        changes: &[(u32, u32)],
        removed: &[u32],
        added: &[(&str, u32)],
    ) -> ParticipantListUpdate {
        ParticipantListUpdate {
            changed_role_participants: changes
                .iter()
                .map(|(u, r)| UserIndexRolePair {
                    user_index: *u,
                    role_index: *r,
                })
                .collect(),
            removed_indices: removed.to_vec(),
            added_participants: added
                .iter()
                .map(|(u, r)| UserRolePair {
                    user: Uri::from(*u),
                    role_index: *r,
                })
                .collect(),
        }
    }

    #[test]
    fn ordering_rules() {
        let l = list(&[("a", 3), ("b", 2), ("c", 2), ("d", 2)]);
        // Role change on index 3 and removals of 1 and 2 all refer to the list before the update.
        let (new, t) = l.apply(&[update(&[(3, 1)], &[2, 1], &[("e", 2)])]).unwrap();
        assert_eq!(new, list(&[("a", 3), ("d", 1), ("e", 2)]));
        assert_eq!(t.len(), 4);
        assert!(t.contains(&RoleTransition {
            user: Uri::from("b"),
            from: 2,
            to: 0
        }));
        assert!(t.contains(&RoleTransition {
            user: Uri::from("e"),
            from: 0,
            to: 2
        }));
        // A second update in the same commit sees the result of the first.
        let (new, _) = l
            .apply(&[update(&[], &[0], &[]), update(&[(0, 3)], &[], &[])])
            .unwrap();
        assert_eq!(new, list(&[("b", 3), ("c", 2), ("d", 2)]));
    }

    #[test]
    fn invalid_updates() {
        let l = list(&[("a", 3), ("b", 2)]);
        assert_eq!(
            l.apply(&[update(&[], &[2], &[])]).unwrap_err(),
            ParticipantListError::IndexOutOfRange { index: 2, len: 2 }
        );
        assert_eq!(
            l.apply(&[update(&[(1, 3)], &[1], &[])]).unwrap_err(),
            ParticipantListError::TouchedTwice(Uri::from("b"))
        );
        assert_eq!(
            l.apply(&[update(&[], &[0], &[]), update(&[], &[], &[("a", 2)])])
                .unwrap_err(),
            ParticipantListError::TouchedTwice(Uri::from("a"))
        );
        assert_eq!(
            l.apply(&[update(&[], &[], &[("b", 2)])]).unwrap_err(),
            ParticipantListError::AlreadyParticipant(Uri::from("b"))
        );
        assert_eq!(
            l.apply(&[update(&[(0, 0)], &[], &[])]).unwrap_err(),
            ParticipantListError::RoleZero(Uri::from("a"))
        );
    }

    #[test]
    fn dictionary_is_sorted_and_unique() {
        let mut d = AppDataDictionary::default();
        d.insert(0x23, vec![1]);
        d.insert(0x22, vec![2]);
        assert_eq!(d.component_data[0].component_id, 0x22);
        assert_eq!(AppDataDictionary::from_bytes(&d.to_bytes()).unwrap(), d);
        // 0x23 then 0x22: unsorted.
        let bad = [0x08, 0x00, 0x23, 0x01, 0x01, 0x00, 0x22, 0x01, 0x02];
        assert!(matches!(
            AppDataDictionary::from_bytes(&bad).unwrap_err().kind,
            ErrorKind::Invalid(_)
        ));
    }

    #[test]
    fn duplicate_participants_are_rejected() {
        let l = list(&[("a", 3), ("a", 2)]);
        assert!(ParticipantListData::from_bytes(&l.to_bytes()).is_err());
    }
}
