//! The deterministic CBOR writer: one encoding per value.

use super::*;

/// Deterministic CBOR writer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// A head in its shortest form.
    pub(crate) fn head(&mut self, major: u8, arg: u64) {
        let m = major << 5;
        if arg < 24 {
            self.buf.push(m | arg as u8);
        } else if arg <= 0xff {
            self.buf.extend_from_slice(&[m | 24, arg as u8]);
        } else if arg <= 0xffff {
            self.buf.push(m | 25);
            self.buf.extend_from_slice(&(arg as u16).to_be_bytes());
        } else if arg <= 0xffff_ffff {
            self.buf.push(m | 26);
            self.buf.extend_from_slice(&(arg as u32).to_be_bytes());
        } else {
            self.buf.push(m | 27);
            self.buf.extend_from_slice(&arg.to_be_bytes());
        }
    }

    pub(crate) fn uint(&mut self, v: u64) {
        self.head(0, v);
    }

    pub(crate) fn int(&mut self, v: i64) {
        if v >= 0 {
            self.head(0, v as u64);
        } else {
            self.head(1, (-1 - v) as u64);
        }
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.head(2, b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    pub(crate) fn text(&mut self, s: &str) {
        self.head(3, s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn array(&mut self, n: usize) {
        self.head(4, n as u64);
    }

    pub(crate) fn null(&mut self) {
        self.buf.push(0xf6);
    }

    pub(crate) fn bool(&mut self, b: bool) {
        self.buf.push(if b { 0xf5 } else { 0xf4 });
    }

    pub(crate) fn float(&mut self, v: f64) {
        if let Some(h) = f64_to_f16_exact(v) {
            self.buf.push(0xf9);
            self.buf.extend_from_slice(&h.to_be_bytes());
        } else if f64::from(v as f32) == v {
            self.buf.push(0xfa);
            self.buf
                .extend_from_slice(&(v as f32).to_bits().to_be_bytes());
        } else {
            self.buf.push(0xfb);
            self.buf.extend_from_slice(&v.to_bits().to_be_bytes());
        }
    }

    /// Writes any value deterministically (map entries sorted by encoded key).
    pub(crate) fn value(&mut self, v: &Value) {
        match v {
            Value::Integer(i) => self.int(*i),
            Value::Bytes(b) => self.bytes(b),
            Value::Text(t) => self.text(t),
            Value::Array(items) => {
                self.array(items.len());
                for item in items {
                    self.value(item);
                }
            }
            Value::Map(entries) => self.map(entries.iter().map(|(k, v)| (k.to_cbor(), v))),
            Value::Tag(n, inner) => {
                self.head(6, *n);
                self.value(inner);
            }
            Value::Float(f) => self.float(*f),
            Value::Bool(b) => self.bool(*b),
            Value::Null => self.null(),
            Value::Undefined => self.buf.push(0xf7),
            Value::Simple(n) => {
                if *n < 24 {
                    self.buf.push(0xe0 | n);
                } else {
                    self.buf.extend_from_slice(&[0xf8, *n]);
                }
            }
        }
    }

    /// Writes a map from pre-encoded keys, sorting entries bytewise by key encoding.
    pub(crate) fn map<'v>(&mut self, entries: impl Iterator<Item = (Vec<u8>, &'v Value)>) {
        let mut sorted: Vec<(Vec<u8>, &Value)> = entries.collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        self.head(5, sorted.len() as u64);
        for (k, v) in sorted {
            self.buf.extend_from_slice(&k);
            self.value(v);
        }
    }
}

/// Walks any well-formed CBOR item (used by diagnostic notation). Not strict about
/// determinism: it renders what is there.
pub(crate) fn skip_any(buf: &[u8], pos: &mut usize, depth: usize) -> Option<()> {
    if depth > 64 {
        return None;
    }
    let first = *buf.get(*pos)?;
    *pos += 1;
    let info = first & 0x1f;
    let major = first >> 5;
    let arg = read_arg(buf, pos, info)?;
    match major {
        2 | 3 => {
            *pos = pos.checked_add(usize::try_from(arg).ok()?)?;
            (*pos <= buf.len()).then_some(())
        }
        4 => {
            for _ in 0..arg {
                skip_any(buf, pos, depth + 1)?;
            }
            Some(())
        }
        5 => {
            for _ in 0..arg.checked_mul(2)? {
                skip_any(buf, pos, depth + 1)?;
            }
            Some(())
        }
        6 => skip_any(buf, pos, depth + 1),
        _ => Some(()),
    }
}

pub(crate) fn read_arg(buf: &[u8], pos: &mut usize, info: u8) -> Option<u64> {
    let n = match info {
        0..=23 => return Some(u64::from(info)),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    let b = buf.get(*pos..*pos + n)?;
    *pos += n;
    Some(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
}
