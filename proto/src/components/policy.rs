//! Other policy components the hub reads (room-policy §6).

use super::*;
use crate::codec::{Bytes, DecodeError, Reader, Seg, Wire};
use crate::{wire_enum, wire_struct};

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
