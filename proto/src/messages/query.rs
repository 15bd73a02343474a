//! §5.8 Identifier query.

use crate::codec::{Bytes, DecodeError, Reader, Seg, Uri, Utf8, Wire};
use crate::components::AppDataDictionary;
use crate::{wire_enum, wire_struct};

wire_enum! {
    /// `SearchIdentifierType`.
    pub enum SearchIdentifierType: u8 as "SearchIdentifierType" {
        /// The whole handle URI.
        Handle = 1 as "handle",
        /// The handle's user part.
        Nick = 2 as "nick",
        /// RFC 5322 addr-spec.
        Email = 3 as "email",
        /// "+E.164".
        Phone = 4 as "phone",
        /// Case-insensitive substring of name fields.
        PartialName = 5 as "partialName",
        /// Substring of any searchable field.
        WholeProfile = 6 as "wholeProfile",
        /// An OIDC standard claim (named).
        OidcStdClaim = 7 as "oidcStdClaim",
        /// A vCard property (named).
        VcardField = 8 as "vcardField",
    }
    reserved [0]
}

/// `QueryElement`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryElement {
    /// What to match.
    #[serde(rename = "searchType")]
    pub search_type: SearchIdentifierType,
    /// `claimName` (oidcStdClaim) or `propertyName` (vcardField); ignored otherwise.
    #[serde(rename = "fieldName", default, skip_serializing_if = "Option::is_none")]
    pub field_name: Option<Utf8>,
    /// The value to match (UTF-8).
    #[serde(rename = "searchValue")]
    pub search_value: Utf8,
}

impl Wire for QueryElement {
    fn encode(&self, out: &mut Vec<u8>) {
        self.search_type.encode(out);
        if matches!(
            self.search_type,
            SearchIdentifierType::OidcStdClaim | SearchIdentifierType::VcardField
        ) {
            self.field_name.clone().unwrap_or_default().encode(out);
        }
        self.search_value.encode(out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("QueryElement"), |r| {
            let search_type: SearchIdentifierType = r.field("searchType")?;
            let field_name = match search_type {
                SearchIdentifierType::OidcStdClaim => Some(r.field("claimName")?),
                SearchIdentifierType::VcardField => Some(r.field("propertyName")?),
                _ => None,
            };
            Ok(Self {
                search_type,
                field_name,
                search_value: r.field("searchValue")?,
            })
        })
    }
}

wire_struct! {
    /// `IdentifierRequest` (POST /identifierQuery/{domain}); all elements must match.
    pub struct IdentifierRequest as "IdentifierRequest" {
        /// The query.
        pub query_elements: Vec<QueryElement> as "query_elements",
        /// Extension point.
        pub id_request_extensions: AppDataDictionary as "id_request_extensions",
    }
}

wire_enum! {
    /// `IdentifierQueryCode`.
    pub enum IdentifierQueryCode: u8 as "IdentifierQueryCode" {
        /// At least one match.
        Success = 0 as "success",
        /// No match.
        NotFound = 1 as "notFound",
        /// Query not specific enough.
        Ambiguous = 2 as "ambiguous",
        /// Not allowed.
        Forbidden = 3 as "forbidden",
        /// A field is not supported.
        UnsupportedField = 4 as "unsupportedField",
    }
}

wire_enum! {
    /// `FieldSource`.
    pub enum FieldSource: u8 as "FieldSource" {
        /// An OIDC standard claim.
        OidcStdClaim = 7 as "oidcStdClaim",
        /// A vCard property.
        VcardField = 8 as "vcardField",
    }
    reserved [0]
}

wire_struct! {
    /// `ProfileField`.
    pub struct ProfileField as "ProfileField" {
        /// Where the field name comes from.
        pub field_source: FieldSource as "fieldSource",
        /// The field's name (`string`, decision D8).
        pub field_name: Utf8 as "fieldName",
        /// Its value.
        pub field_value: Bytes as "fieldValue",
    }
}

wire_struct! {
    /// `UserProfile`.
    pub struct UserProfile as "UserProfile" {
        /// The user's stable URI.
        pub stable_uri: Uri as "stableUri",
        /// Disclosed fields.
        pub fields: Vec<ProfileField> as "fields",
    }
}

wire_struct! {
    /// `IdentifierResponse`.
    pub struct IdentifierResponse as "IdentifierResponse" {
        /// The result.
        pub response_code: IdentifierQueryCode as "responseCode",
        /// Matching URIs.
        pub uri: Vec<Uri> as "uri",
        /// Matching profiles.
        pub found_profiles: Vec<UserProfile> as "foundProfiles",
        /// Extension point.
        pub id_response_extensions: AppDataDictionary as "id_response_extensions",
    }
}
