//! The participant list (draft-ietf-mimi-protocol-06 §7.5).

use crate::codec::{DecodeError, ErrorKind, Reader, Seg, Uri, Wire};
use crate::wire_struct;
use std::collections::BTreeSet;

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
