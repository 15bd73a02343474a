//! The macros that declare wire structs and enums (exported at the crate root).

/// Declares a struct whose encoding is its fields in order, with each field's draft name used
/// in errors and JSON.
#[macro_export]
macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident as $wire_name:literal {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty as $fname:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $( $(#[$fmeta])* #[serde(rename = $fname)] pub $field: $ty, )*
        }

        impl $crate::codec::Wire for $name {
            fn encode(&self, out: &mut Vec<u8>) {
                $( $crate::codec::Wire::encode(&self.$field, out); )*
            }
            fn decode(r: &mut $crate::codec::Reader<'_>) -> Result<Self, $crate::codec::DecodeError> {
                r.at($crate::codec::Seg::Struct($wire_name), |r| {
                    Ok(Self { $( $field: r.field($fname)?, )* })
                })
            }
        }
    };
}

/// Declares a closed enum of integer code points; unknown values are decoding errors, and
/// `reserved(0)` style values listed in `reserved` are rejected as reserved.
#[macro_export]
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident : $repr:ty as $wire_name:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal as $vname:literal ),* $(,)?
        }
        $( reserved [ $($reserved:literal),* ] )?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $vname)] $variant, )*
        }

        impl $name {
            /// The wire value.
            pub fn value(self) -> $repr {
                match self { $( Self::$variant => $value, )* }
            }

            /// From the wire value.
            pub fn from_value(v: $repr) -> Option<Self> {
                match v { $( $value => Some(Self::$variant), )* _ => None }
            }

            /// The draft's name.
            pub fn name(self) -> &'static str {
                match self { $( Self::$variant => $vname, )* }
            }
        }

        impl $crate::codec::Wire for $name {
            fn encode(&self, out: &mut Vec<u8>) {
                $crate::codec::Wire::encode(&self.value(), out);
            }
            fn decode(r: &mut $crate::codec::Reader<'_>) -> Result<Self, $crate::codec::DecodeError> {
                let at = r.pos();
                let v = <$repr as $crate::codec::Wire>::decode(r)?;
                $( if [$($reserved),*].contains(&v) {
                    return Err(r.err(at, $crate::codec::ErrorKind::Reserved { name: $wire_name, value: u64::from(v) }));
                } )?
                Self::from_value(v).ok_or_else(|| r.err(at, $crate::codec::ErrorKind::UnknownValue { name: $wire_name, value: u64::from(v) }))
            }
        }
    };
}

/// Implements `tls_codec::{Size, Serialize, DeserializeBytes}` on top of [`Wire`].
#[macro_export]
macro_rules! impl_tls_codec {
    ($($t:ty),* $(,)?) => {$(
        impl tls_codec::Size for $t {
            fn tls_serialized_len(&self) -> usize {
                $crate::codec::Wire::to_bytes(self).len()
            }
        }
        impl tls_codec::Serialize for $t {
            fn tls_serialize<W: std::io::Write>(&self, writer: &mut W) -> Result<usize, tls_codec::Error> {
                let bytes = $crate::codec::Wire::to_bytes(self);
                writer.write_all(&bytes)?;
                Ok(bytes.len())
            }
        }
        impl tls_codec::DeserializeBytes for $t {
            fn tls_deserialize_bytes(bytes: &[u8]) -> Result<(Self, &[u8]), tls_codec::Error> {
                let mut r = $crate::codec::Reader::new(bytes);
                let v = <$t as $crate::codec::Wire>::decode(&mut r).map_err(|e| tls_codec::Error::DecodingError(e.to_string()))?;
                Ok((v, &bytes[r.pos()..]))
            }
        }
    )*};
}
