//! Room metadata (draft-ietf-mimi-protocol-06 §7.6).

use crate::codec::{Bytes, Uri};
use crate::wire_struct;

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
