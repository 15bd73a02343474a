//! A strict reader and writer for the TLS presentation language as RFC 9420 uses it.
//!
//! - `<V>` vectors carry a variable-length integer prefix (RFC 9420 §2.1.2) that must use the
//!   minimal number of bytes and is at most 2^30−1.
//! - Every length is checked against the bytes actually present **before** anything is
//!   allocated, so a four-byte header can never make the decoder reserve a gigabyte.
//! - Every error names the path into the structure (`KeyMaterialResponse.clients[1].clientUri`)
//!   and the byte offset of the offending item.
//!
//! Types implement [`Wire`]; the [`crate::impl_tls_codec`] macro also gives them `tls_codec`'s
//! `Size`, `Serialize` and `DeserializeBytes`, so they embed in openmls-style structures.

mod macros;
mod values;

pub use values::*;

/// Largest vector length RFC 9420 varints can express (2^30 − 1).
pub const MAX_VECTOR_LEN: usize = (1 << 30) - 1;

/// One step of a path into a structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A structure (type) name.
    Struct(&'static str),
    /// A field name, as spelled in the draft.
    Field(&'static str),
    /// An element of a vector.
    Index(usize),
}

fn fmt_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Struct(s) if out.is_empty() => out.push_str(s),
            Seg::Struct(_) => {}
            Seg::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// What is wrong with an encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input ends inside an item.
    #[error("input ends early: {needed} more byte(s) needed")]
    Truncated {
        /// Bytes missing.
        needed: usize,
    },
    /// Bytes follow the structure.
    #[error("{count} trailing byte(s) after the structure")]
    TrailingBytes {
        /// Number of extra bytes.
        count: usize,
    },
    /// A length prefix is not in its minimal form (RFC 9420 §2.1.2).
    #[error("length {value} is not encoded in the minimum number of bytes")]
    NonMinimalLength {
        /// The length.
        value: usize,
    },
    /// A length prefix starts with the reserved bits `0b11`.
    #[error("length prefix uses the reserved 8-byte form")]
    ReservedLengthPrefix,
    /// A vector's declared length exceeds what its field allows.
    #[error("vector of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Declared length.
        len: usize,
        /// Limit for this field.
        max: usize,
    },
    /// An enum value the draft does not define.
    #[error("unknown {name} value {value}")]
    UnknownValue {
        /// The enum.
        name: &'static str,
        /// The value found.
        value: u64,
    },
    /// A value the draft reserves (never valid on the wire).
    #[error("{name} value {value} is reserved")]
    Reserved {
        /// The enum.
        name: &'static str,
        /// The value found.
        value: u64,
    },
    /// An `optional<T>` presence octet other than 0 or 1.
    #[error("optional presence octet must be 0 or 1, found {0}")]
    BadPresence(u8),
    /// A bool octet other than 0 or 1.
    #[error("bool must be 0 or 1, found {0}")]
    BadBool(u8),
    /// Text that must be UTF-8 is not.
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    /// An element of a vector consumed no bytes (would loop forever).
    #[error("vector element is empty")]
    EmptyElement,
    /// An embedded MLS message has the wrong wire format for this field.
    #[error("expected {expected}, found MLS wire format {found}")]
    WrongWireFormat {
        /// What the field requires.
        expected: &'static str,
        /// The wire format value found.
        found: u16,
    },
    /// An embedded MLS message has the wrong content type for this field.
    #[error("expected {expected}, found MLS content type {found}")]
    WrongContentType {
        /// What the field requires.
        expected: &'static str,
        /// The content type found.
        found: u8,
    },
    /// openmls rejected an embedded MLS structure.
    #[error("invalid MLS structure: {0}")]
    Mls(String),
    /// A rule of the draft that is not about encoding.
    #[error("{0}")]
    Invalid(String),
}

/// A MIMI protocol structure failed to decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} (byte {offset}): {kind}")]
pub struct DecodeError {
    /// Where: the structure and field path, e.g. `FanoutMessage.message`.
    pub path: String,
    /// Byte offset in the input at which the offending item starts.
    pub offset: usize,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// A strict reader over a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    path: Vec<Seg>,
}

impl<'a> Reader<'a> {
    /// A reader over all of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            end: buf.len(),
            path: Vec::with_capacity(8),
        }
    }

    /// Current offset from the start of the input.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left before the current limit.
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// Whether the current limit has been reached.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    /// An error at `offset` with the current path.
    pub fn err(&self, offset: usize, kind: ErrorKind) -> DecodeError {
        DecodeError {
            path: fmt_path(&self.path),
            offset,
            kind,
        }
    }

    /// Runs `f` with `seg` appended to the path.
    pub fn at<T>(
        &mut self,
        seg: Seg,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        self.path.push(seg);
        let v = f(self)?;
        self.path.pop();
        Ok(v)
    }

    /// Reads the field `name` (the draft's spelling).
    pub fn field<T: Wire>(&mut self, name: &'static str) -> Result<T, DecodeError> {
        self.at(Seg::Field(name), T::decode)
    }

    /// Takes `n` raw bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(self.err(
                self.pos,
                ErrorKind::Truncated {
                    needed: n - self.remaining(),
                },
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The unread bytes up to the current limit (without consuming them).
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..self.end]
    }

    /// The input from absolute offset `start` (at or before the current position) to the
    /// current limit.
    pub fn slice_from(&self, start: usize) -> &'a [u8] {
        &self.buf[start.min(self.pos)..self.end]
    }

    /// Marks `n` bytes as consumed (after an external parser read them from [`Self::rest`]).
    pub fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.end);
    }

    /// Reads an RFC 9420 variable-length vector length.
    pub fn length(&mut self) -> Result<usize, DecodeError> {
        let at = self.pos;
        let first = self.take(1)?[0];
        let (len, n) = match first >> 6 {
            0 => (usize::from(first & 0x3f), 1),
            1 => {
                let b = self.take(1)?;
                ((usize::from(first & 0x3f) << 8) | usize::from(b[0]), 2)
            }
            2 => {
                let b = self.take(3)?;
                let v = (usize::from(first & 0x3f) << 24)
                    | (usize::from(b[0]) << 16)
                    | (usize::from(b[1]) << 8)
                    | usize::from(b[2]);
                (v, 4)
            }
            _ => return Err(self.err(at, ErrorKind::ReservedLengthPrefix)),
        };
        let minimal = match n {
            1 => true,
            2 => len >= 64,
            _ => len >= 16384,
        };
        if !minimal {
            return Err(self.err(at, ErrorKind::NonMinimalLength { value: len }));
        }
        Ok(len)
    }

    /// Reads a length and checks it against `max` and the remaining input.
    pub fn bounded_length(&mut self, max: usize) -> Result<(usize, usize), DecodeError> {
        let at = self.pos;
        let len = self.length()?;
        if len > max {
            return Err(self.err(at, ErrorKind::TooLong { len, max }));
        }
        if len > self.remaining() {
            return Err(self.err(
                at,
                ErrorKind::Truncated {
                    needed: len - self.remaining(),
                },
            ));
        }
        Ok((len, at))
    }

    /// Runs `f` on exactly the next `len` bytes; fails if `f` does not consume all of them.
    pub fn within<T>(
        &mut self,
        len: usize,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let saved_end = self.end;
        self.end = self.pos + len;
        let v = f(self);
        let left = self.end - self.pos;
        let end = self.end;
        self.end = saved_end;
        let v = v?;
        if left != 0 {
            return Err(self.err(end - left, ErrorKind::TrailingBytes { count: left }));
        }
        Ok(v)
    }

    /// Reads `opaque x<V>` of at most `max` bytes.
    pub fn opaque(&mut self, max: usize) -> Result<&'a [u8], DecodeError> {
        let (len, _) = self.bounded_length(max)?;
        self.take(len)
    }

    /// Reads a `T x<V>` vector of at most `max_bytes`.
    pub fn vector<T: Wire>(&mut self, max_bytes: usize) -> Result<Vec<T>, DecodeError> {
        let (len, _) = self.bounded_length(max_bytes)?;
        self.within(len, |r| {
            let mut out = Vec::new();
            while !r.is_empty() {
                let start = r.pos;
                let item = r.at(Seg::Index(out.len()), T::decode)?;
                if r.pos == start {
                    return Err(r.err(start, ErrorKind::EmptyElement));
                }
                out.push(item);
            }
            Ok(out)
        })
    }

    /// Fails unless the whole input was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.pos != self.buf.len() {
            return Err(DecodeError {
                path: fmt_path(&self.path),
                offset: self.pos,
                kind: ErrorKind::TrailingBytes {
                    count: self.buf.len() - self.pos,
                },
            });
        }
        Ok(())
    }
}

/// Appends the RFC 9420 minimal varint for `len`.
///
/// # Panics
/// If `len` exceeds 2^30 − 1 (no MIMI structure gets near; the HTTP layer bounds bodies).
pub fn write_length(out: &mut Vec<u8>, len: usize) {
    assert!(
        len <= MAX_VECTOR_LEN,
        "vector of {len} bytes cannot be encoded"
    );
    if len < 64 {
        out.push(len as u8);
    } else if len < 16384 {
        out.extend_from_slice(&((len as u16) | 0x4000).to_be_bytes());
    } else {
        out.extend_from_slice(&((len as u32) | 0x8000_0000).to_be_bytes());
    }
}

/// Appends `opaque x<V>`.
pub fn write_opaque(out: &mut Vec<u8>, bytes: &[u8]) {
    write_length(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Appends a `T x<V>` vector.
pub fn write_vector<T: Wire>(out: &mut Vec<u8>, items: &[T]) {
    let mut body = Vec::new();
    for item in items {
        item.encode(&mut body);
    }
    write_opaque(out, &body);
}

/// A type with a TLS presentation-language encoding.
pub trait Wire: Sized {
    /// Appends the encoding.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads one value.
    ///
    /// # Errors
    /// [`DecodeError`] naming the path and offset.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// The encoding as a new vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes exactly the whole of `bytes`.
    ///
    /// # Errors
    /// [`DecodeError`], including trailing bytes.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::decode(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

macro_rules! int_wire {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                let b = r.take(std::mem::size_of::<$t>())?;
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(b);
                Ok(<$t>::from_be_bytes(a))
            }
        }
    )*};
}
int_wire!(u8, u16, u32, u64);

impl Wire for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.pos();
        match r.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(r.err(at, ErrorKind::BadBool(b))),
        }
    }
}

impl<const N: usize> Wire for [u8; N] {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(r.take(N)?);
        Ok(a)
    }
}

/// `optional<T>`: a presence octet, then the value when it is 1.
impl<T: Wire> Wire for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => {
                out.push(1);
                v.encode(out);
            }
            None => out.push(0),
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.pos();
        match r.take(1)?[0] {
            0 => Ok(None),
            1 => Ok(Some(T::decode(r)?)),
            b => Err(r.err(at, ErrorKind::BadPresence(b))),
        }
    }
}

/// `T items<V>`, bounded only by the input (fields with tighter limits use [`Reader::vector`]).
impl<T: Wire> Wire for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        write_vector(out, self);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.vector(MAX_VECTOR_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths_are_minimal() {
        for (len, bytes) in [
            (0usize, vec![0x00]),
            (63, vec![0x3f]),
            (64, vec![0x40, 0x40]),
            (16383, vec![0x7f, 0xff]),
            (16384, vec![0x80, 0x00, 0x40, 0x00]),
        ] {
            let mut out = Vec::new();
            write_length(&mut out, len);
            assert_eq!(out, bytes);
            assert_eq!(Reader::new(&bytes).length().unwrap(), len);
        }
        assert_eq!(
            Reader::new(&[0x40, 0x01]).length().unwrap_err().kind,
            ErrorKind::NonMinimalLength { value: 1 }
        );
        assert_eq!(
            Reader::new(&[0x80, 0, 0, 0x01]).length().unwrap_err().kind,
            ErrorKind::NonMinimalLength { value: 1 }
        );
        assert_eq!(
            Reader::new(&[0xc0, 0, 0, 0, 0, 0, 0, 1])
                .length()
                .unwrap_err()
                .kind,
            ErrorKind::ReservedLengthPrefix
        );
    }

    #[test]
    fn lengths_are_bounded_before_allocation() {
        // A 1 GiB - 1 vector announced with 4 bytes of input.
        let e = Bytes::from_bytes(&[0xbf, 0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::Truncated {
                needed: MAX_VECTOR_LEN
            }
        );
        let e = Uri::from_bytes(&[0x50, 0x01]).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::TooLong {
                len: 4097,
                max: MAX_URI_LEN
            }
        );
    }

    #[test]
    fn options_bools_and_vectors() {
        assert_eq!(Option::<u8>::from_bytes(&[1, 7]).unwrap(), Some(7));
        assert_eq!(
            Option::<u8>::from_bytes(&[2, 7]).unwrap_err().kind,
            ErrorKind::BadPresence(2)
        );
        assert_eq!(
            bool::from_bytes(&[2]).unwrap_err().kind,
            ErrorKind::BadBool(2)
        );
        assert_eq!(
            Vec::<u16>::from_bytes(&[4, 0, 1, 0, 2]).unwrap(),
            vec![1, 2]
        );
        // A vector whose declared length splits an element.
        let e = Vec::<u16>::from_bytes(&[3, 0, 1, 0]).unwrap_err();
        assert_eq!(e.path, "[1]");
        assert!(matches!(e.kind, ErrorKind::Truncated { .. }));
        assert_eq!(
            Vec::<u8>::from_bytes(&[1, 5, 9]).unwrap_err().kind,
            ErrorKind::TrailingBytes { count: 1 }
        );
    }

    #[test]
    fn uri_domain() {
        assert_eq!(
            Uri::from("mimi://a.example/u/alice").domain(),
            Some("a.example")
        );
        assert_eq!(
            Uri::from("https://x.example:8443/p").domain(),
            Some("x.example")
        );
        assert_eq!(Uri::from("alice").domain(), None);
    }
}
