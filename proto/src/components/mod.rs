//! Room state carried in the MLS `app_data_dictionary` (draft-ietf-mls-extensions §4.6):
//! the participant list and room metadata of draft-ietf-mimi-protocol-06 §7, the policy
//! components of draft-ietf-mimi-room-policy-03, and the franking components.
//!
//! All component IDs are in [`ids`]; role capabilities in [`capability`].

use std::collections::{BTreeMap, BTreeSet};

use crate::codec::{Bytes, DecodeError, ErrorKind, Fixed32, Reader, Seg, Wire};
use crate::mls::Credential;
use crate::wire_struct;

mod metadata;
mod mls_policy;
mod participants;
mod policy;
mod roles;

pub use metadata::*;
pub use mls_policy::*;
pub use participants::*;
pub use policy::*;
pub use roles::*;

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
    use crate::codec::Uri;

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
