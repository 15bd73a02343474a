//! Strict deterministic CBOR (RFC 8949 §4.2.1) reading and writing, and the generic [`Value`]
//! that carries extension data.
//!
//! The reader rejects everything deterministic encoding forbids (non-shortest heads and floats,
//! indefinite lengths, unsorted or duplicate map keys) plus the draft's data-model rules
//! (integers within ±(2^53−1), only the canonical NaN, valid UTF-8). The writer always
//! produces the one deterministic encoding, so `write(read(x)) == x` for every accepted `x`.

use std::cmp::Ordering;

use crate::error::{DecodeError, Path, Rule, Segment};

mod write;

pub(crate) use write::*;

/// Largest integer magnitude the draft allows (2^53 − 1).
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// A generic CBOR data item, as found in extension values.
///
/// Maps keep their entries in deterministic (bytewise encoded-key) order; [`Value::Map`]
/// values built by hand are sorted when encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An integer within ±(2^53−1).
    Integer(i64),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A UTF-8 text string.
    Text(String),
    /// An array.
    Array(Vec<Self>),
    /// A map; keys inside extensions are integers, text or byte strings.
    Map(Vec<(Self, Self)>),
    /// A tagged item.
    Tag(u64, Box<Self>),
    /// A floating-point number (encoded in its shortest exact width).
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// `undefined`.
    Undefined,
    /// Another simple value (0..19 or 32..255).
    Simple(u8),
}

impl Value {
    /// The CBOR type name used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Integer(_) => "integer",
            Self::Bytes(_) => "byte string",
            Self::Text(_) => "text string",
            Self::Array(_) => "array",
            Self::Map(_) => "map",
            Self::Tag(..) => "tag",
            Self::Float(_) => "float",
            Self::Bool(_) => "bool",
            Self::Null => "null",
            Self::Undefined => "undefined",
            Self::Simple(_) => "simple value",
        }
    }

    /// The deterministic encoding of this value alone.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.value(self);
        w.into_bytes()
    }
}

/// Names of CBOR major types for errors.
pub(crate) fn major_name(major: u8) -> &'static str {
    match major {
        0 => "unsigned integer",
        1 => "negative integer",
        2 => "byte string",
        3 => "text string",
        4 => "array",
        5 => "map",
        6 => "tag",
        _ => "simple value or float",
    }
}

/// A decoded item head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub(crate) major: u8,
    /// The argument: integer value, length, tag number, simple value or float bits.
    pub(crate) arg: u64,
    /// Additional information (needed to tell float widths apart).
    pub(crate) info: u8,
    /// Offset of the first byte of the head.
    pub(crate) offset: usize,
}

impl Head {
    /// Human name of this item's type.
    pub(crate) fn type_name(&self) -> &'static str {
        if self.major == 7 {
            return match (self.info, self.arg) {
                (25..=27, _) => "float",
                (_, 20 | 21) => "bool",
                (_, 22) => "null",
                (_, 23) => "undefined",
                _ => "simple value",
            };
        }
        major_name(self.major)
    }
}

/// A strict reader over one buffer. Errors carry the path kept in `path`.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Segments of the current path; formatted only when an error is raised.
    pub(crate) path: Vec<Segment>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            path: Vec::with_capacity(8),
        }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// An error at `offset` with the current path.
    pub(crate) fn err(&self, offset: usize, rule: Rule) -> DecodeError {
        DecodeError {
            path: Path(self.path.clone()),
            offset,
            rule,
        }
    }

    pub(crate) fn push(&mut self, seg: Segment) {
        self.path.push(seg);
    }

    pub(crate) fn pop(&mut self) {
        self.path.pop();
    }

    /// Fails unless the whole input has been consumed.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.pos != self.buf.len() {
            return Err(DecodeError {
                path: Path::root(),
                offset: self.pos,
                rule: Rule::TrailingBytes {
                    count: self.buf.len() - self.pos,
                },
            });
        }
        Ok(())
    }

    fn take(&mut self, n: usize, offset: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(self.err(
                offset,
                Rule::Truncated {
                    needed: (n - self.remaining()) as u64,
                },
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads one head and enforces well-formedness and shortest-form rules.
    pub(crate) fn head(&mut self) -> Result<Head, DecodeError> {
        let offset = self.pos;
        let first = *self.take(1, offset)?.first().unwrap_or(&0);
        let major = first >> 5;
        let info = first & 0x1f;
        let arg = match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.take(1, offset)?[0]),
            25 => {
                let b = self.take(2, offset)?;
                u64::from(u16::from_be_bytes([b[0], b[1]]))
            }
            26 => {
                let b = self.take(4, offset)?;
                u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            27 => {
                let b = self.take(8, offset)?;
                u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            }
            28..=30 => return Err(self.err(offset, Rule::ReservedAdditionalInfo(info))),
            _ => {
                return Err(self.err(
                    offset,
                    if major == 7 {
                        Rule::UnexpectedBreak
                    } else {
                        Rule::IndefiniteLength
                    },
                ));
            }
        };
        let head = Head {
            major,
            arg,
            info,
            offset,
        };
        if major == 7 {
            match info {
                24 if arg < 32 => return Err(self.err(offset, Rule::BadSimpleValue(arg as u8))),
                25..=27 => check_float(self, &head)?,
                _ => {}
            }
        } else {
            let shortest = match info {
                24 => arg >= 24,
                25 => arg > 0xff,
                26 => arg > 0xffff,
                27 => arg > 0xffff_ffff,
                _ => true,
            };
            if !shortest {
                return Err(self.err(offset, Rule::NonShortestArgument { value: arg }));
            }
        }
        Ok(head)
    }

    /// Reads a head that must be of `major` type.
    pub(crate) fn expect(
        &mut self,
        major: u8,
        expected: &'static str,
    ) -> Result<Head, DecodeError> {
        let h = self.head()?;
        if h.major != major {
            return Err(self.err(
                h.offset,
                Rule::WrongType {
                    expected,
                    found: h.type_name(),
                },
            ));
        }
        Ok(h)
    }

    /// The payload bytes of a byte or text string whose head was just read.
    pub(crate) fn payload(&mut self, h: &Head) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(h.arg).unwrap_or(usize::MAX);
        self.take(len, h.offset)
    }

    pub(crate) fn bytes(&mut self, expected: &'static str) -> Result<&'a [u8], DecodeError> {
        let h = self.expect(2, expected)?;
        self.payload(&h)
    }

    pub(crate) fn text(&mut self, expected: &'static str) -> Result<&'a str, DecodeError> {
        let h = self.expect(3, expected)?;
        let raw = self.payload(&h)?;
        std::str::from_utf8(raw).map_err(|_| self.err(h.offset, Rule::InvalidUtf8))
    }

    /// An unsigned integer within ±(2^53−1).
    pub(crate) fn uint(&mut self, expected: &'static str) -> Result<(u64, usize), DecodeError> {
        let h = self.expect(0, expected)?;
        if h.arg > MAX_SAFE_INTEGER as u64 {
            return Err(self.err(
                h.offset,
                Rule::IntegerOutOfRange {
                    value: i128::from(h.arg),
                },
            ));
        }
        Ok((h.arg, h.offset))
    }

    /// An array head; returns its element count, bounded by the remaining input.
    pub(crate) fn array(&mut self, expected: &'static str) -> Result<(u64, usize), DecodeError> {
        let h = self.expect(4, expected)?;
        // Every element takes at least one byte: refuse counts the input cannot hold before
        // anything is allocated.
        if h.arg > self.remaining() as u64 {
            return Err(self.err(
                h.offset,
                Rule::Truncated {
                    needed: h.arg - self.remaining() as u64,
                },
            ));
        }
        Ok((h.arg, h.offset))
    }

    /// Peeks at the next byte without consuming it.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Reads a generic value (inside extensions). `depth` is the nesting level of the container
    /// holding this value; containers (tags, maps, arrays) may reach `max_depth`.
    pub(crate) fn value(&mut self, depth: usize, max_depth: usize) -> Result<Value, DecodeError> {
        let h = self.head()?;
        match h.major {
            0 => {
                if h.arg > MAX_SAFE_INTEGER as u64 {
                    return Err(self.err(
                        h.offset,
                        Rule::IntegerOutOfRange {
                            value: i128::from(h.arg),
                        },
                    ));
                }
                Ok(Value::Integer(h.arg as i64))
            }
            1 => {
                if h.arg >= MAX_SAFE_INTEGER as u64 {
                    return Err(self.err(
                        h.offset,
                        Rule::IntegerOutOfRange {
                            value: -1 - i128::from(h.arg),
                        },
                    ));
                }
                Ok(Value::Integer(-1 - h.arg as i64))
            }
            2 => Ok(Value::Bytes(self.payload(&h)?.to_vec())),
            3 => {
                let raw = self.payload(&h)?;
                let s =
                    std::str::from_utf8(raw).map_err(|_| self.err(h.offset, Rule::InvalidUtf8))?;
                Ok(Value::Text(s.to_owned()))
            }
            4 => {
                self.enter(depth + 1, max_depth, h.offset)?;
                if h.arg > self.remaining() as u64 {
                    return Err(self.err(
                        h.offset,
                        Rule::Truncated {
                            needed: h.arg - self.remaining() as u64,
                        },
                    ));
                }
                let mut items = Vec::with_capacity(h.arg as usize);
                for i in 0..h.arg as usize {
                    self.push(Segment::Index(i));
                    items.push(self.value(depth + 1, max_depth)?);
                    self.pop();
                }
                Ok(Value::Array(items))
            }
            5 => {
                self.enter(depth + 1, max_depth, h.offset)?;
                Ok(Value::Map(self.map_entries(
                    h,
                    depth + 1,
                    max_depth,
                    KeyPolicy::Nested,
                )?))
            }
            6 => {
                self.enter(depth + 1, max_depth, h.offset)?;
                if h.arg == 2 || h.arg == 3 {
                    return Err(self.err(h.offset, Rule::Bignum { tag: h.arg }));
                }
                let inner = self.value(depth + 1, max_depth)?;
                Ok(Value::Tag(h.arg, Box::new(inner)))
            }
            _ => Ok(match (h.info, h.arg) {
                (25..=27, _) => Value::Float(float_value(&h)),
                (_, 20) => Value::Bool(false),
                (_, 21) => Value::Bool(true),
                (_, 22) => Value::Null,
                (_, 23) => Value::Undefined,
                (_, n) => Value::Simple(n as u8),
            }),
        }
    }

    fn enter(&self, level: usize, max_depth: usize, offset: usize) -> Result<(), DecodeError> {
        if level > max_depth {
            return Err(self.err(offset, Rule::ExtensionsTooDeep { max: max_depth }));
        }
        Ok(())
    }

    /// Reads the entries of a map whose head `h` was read, checking key types, order and
    /// uniqueness. `depth` is the level of the map itself.
    pub(crate) fn map_entries(
        &mut self,
        h: Head,
        depth: usize,
        max_depth: usize,
        policy: KeyPolicy,
    ) -> Result<Vec<(Value, Value)>, DecodeError> {
        // Each entry takes at least two bytes.
        if h.arg > (self.remaining() / 2) as u64 {
            return Err(self.err(
                h.offset,
                Rule::Truncated {
                    needed: h.arg.saturating_mul(2) - self.remaining() as u64,
                },
            ));
        }
        let mut entries = Vec::with_capacity(h.arg as usize);
        let mut prev_key: Option<&'a [u8]> = None;
        for i in 0..h.arg as usize {
            let key_start = self.pos;
            self.push(Segment::KeyOf(i));
            let key = self.value(depth, max_depth)?;
            self.pop();
            let key_bytes = &self.buf[key_start..self.pos];
            match (&key, policy) {
                (Value::Integer(_), _) => {}
                (Value::Text(t), KeyPolicy::Extensions) => {
                    if t.is_empty() || t.len() > 255 {
                        return Err(self.err(key_start, Rule::BadTextKeyLength { len: t.len() }));
                    }
                }
                (Value::Text(_) | Value::Bytes(_), KeyPolicy::Nested) => {}
                (other, p) => {
                    self.push(Segment::KeyOf(i));
                    let e = self.err(
                        key_start,
                        Rule::BadKeyType {
                            found: other.type_name(),
                            allowed: match p {
                                KeyPolicy::Extensions => "integer or text string",
                                KeyPolicy::Nested => "integer, text string or byte string",
                            },
                        },
                    );
                    return Err(e);
                }
            }
            if let Some(prev) = prev_key {
                match prev.cmp(key_bytes) {
                    Ordering::Less => {}
                    Ordering::Equal => return Err(self.err(key_start, Rule::DuplicateKey)),
                    Ordering::Greater => return Err(self.err(key_start, Rule::UnsortedKeys)),
                }
            }
            prev_key = Some(key_bytes);
            self.push(key_segment(&key));
            let value = self.value(depth, max_depth)?;
            self.pop();
            entries.push((key, value));
        }
        Ok(entries)
    }
}

/// Which map keys are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyPolicy {
    /// The extensions map: integers or 1..255-octet text strings.
    Extensions,
    /// Maps nested inside extension values: integers, text or byte strings.
    Nested,
}

/// The path segment for the value stored under `key`.
pub(crate) fn key_segment(key: &Value) -> Segment {
    match key {
        Value::Integer(i) => Segment::IntKey(*i),
        Value::Text(t) => Segment::TextKey(t.clone()),
        Value::Bytes(b) => Segment::BytesKey(b.clone()),
        _ => Segment::Field("?"),
    }
}

/// Rejects floats that are not in the shortest exact width, and non-canonical NaNs.
fn check_float(r: &Reader<'_>, h: &Head) -> Result<(), DecodeError> {
    let v = float_value(h);
    if v.is_nan() {
        if h.info == 25 && h.arg == 0x7e00 {
            return Ok(());
        }
        return Err(r.err(h.offset, Rule::NonCanonicalNan));
    }
    if shortest_float_info(v) != h.info {
        return Err(r.err(
            h.offset,
            Rule::NonShortestFloat {
                value: format!("{v:?}"),
            },
        ));
    }
    Ok(())
}

fn float_value(h: &Head) -> f64 {
    match h.info {
        25 => f16_to_f64(h.arg as u16),
        26 => f64::from(f32::from_bits(h.arg as u32)),
        _ => f64::from_bits(h.arg),
    }
}

/// Converts IEEE 754 binary16 bits to f64 (exact).
pub(crate) fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let mant = f64::from(bits & 0x3ff);
    let mag = match exp {
        0 => mant * 2f64.powi(-24),
        31 => {
            if mant == 0.0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        }
        _ => (1.0 + mant / 1024.0) * 2f64.powi(exp - 15),
    };
    sign * mag
}

/// binary16 bits for `v` if `v` is exactly representable in half precision.
pub(crate) fn f64_to_f16_exact(v: f64) -> Option<u16> {
    if v.is_nan() {
        return Some(0x7e00);
    }
    let sign: u16 = if v.is_sign_negative() { 0x8000 } else { 0 };
    let a = v.abs();
    if a == 0.0 {
        return Some(sign);
    }
    if a.is_infinite() {
        return Some(sign | 0x7c00);
    }
    // Candidate: round to the nearest half by scanning exponent ranges, then check exactness.
    if a < 2f64.powi(-14) {
        // Subnormal: value = m * 2^-24, m in 1..1023.
        let m = a * 2f64.powi(24);
        if m.fract() == 0.0 && m <= 1023.0 {
            return Some(sign | m as u16);
        }
        return None;
    }
    let e = a.log2().floor() as i32;
    // log2 can be off by one at boundaries; normalise.
    let mut e = e;
    while 2f64.powi(e) > a {
        e -= 1;
    }
    while 2f64.powi(e + 1) <= a {
        e += 1;
    }
    if !(-14..=15).contains(&e) {
        return None;
    }
    let frac = a / 2f64.powi(e) - 1.0; // in [0, 1)
    let m = frac * 1024.0;
    if m.fract() != 0.0 {
        return None;
    }
    Some(sign | (((e + 15) as u16) << 10) | m as u16)
}

/// The additional-information value (25, 26 or 27) of the shortest exact encoding of `v`.
pub(crate) fn shortest_float_info(v: f64) -> u8 {
    if f64_to_f16_exact(v).is_some() {
        25
    } else if f64::from(v as f32) == v {
        26
    } else {
        27
    }
}

#[cfg(test)]
mod tests;
