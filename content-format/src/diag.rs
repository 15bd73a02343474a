//! CBOR diagnostic notation (RFC 8949 §8, as extended by RFC 8610 Appendix G).
//!
//! Renders any well-formed CBOR item, deterministic or not, so it can show what a rejected
//! message holds. Arrays and maps that contain other containers are spread over lines.

use crate::cbor::{f16_to_f64, read_arg, skip_any};

/// The input is not well-formed CBOR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not well-formed CBOR at byte {offset}")]
pub struct DiagError {
    /// Where rendering stopped.
    pub offset: usize,
}

/// Renders one CBOR item (plus a note if bytes trail it).
///
/// # Errors
/// [`DiagError`] when the input is not well-formed CBOR.
pub fn diag(bytes: &[u8]) -> Result<String, DiagError> {
    let mut pos = 0;
    let mut out = String::new();
    item(bytes, &mut pos, 0, &mut out)?;
    if pos < bytes.len() {
        out.push_str(&format!(
            "\n/ {} trailing byte(s): h'{}' /",
            bytes.len() - pos,
            hex::encode(&bytes[pos..])
        ));
    }
    Ok(out)
}

fn is_container(bytes: &[u8], pos: usize) -> bool {
    bytes.get(pos).is_some_and(|b| matches!(b >> 5, 4..=6))
}

fn item(bytes: &[u8], pos: &mut usize, indent: usize, out: &mut String) -> Result<(), DiagError> {
    let start = *pos;
    let bad = || DiagError { offset: start };
    if indent > 64 {
        return Err(bad());
    }
    let first = *bytes.get(*pos).ok_or_else(bad)?;
    *pos += 1;
    let (major, info) = (first >> 5, first & 0x1f);
    if info == 31 {
        return Err(bad());
    }
    let arg = read_arg(bytes, pos, info).ok_or_else(bad)?;
    match major {
        0 => out.push_str(&arg.to_string()),
        1 => out.push_str(&(-1 - i128::from(arg)).to_string()),
        2 | 3 => {
            let len = usize::try_from(arg).map_err(|_| bad())?;
            let s = bytes
                .get(*pos..pos.checked_add(len).ok_or_else(bad)?)
                .ok_or_else(bad)?;
            *pos += len;
            if major == 2 {
                out.push_str(&format!("h'{}'", hex::encode(s)));
            } else {
                match std::str::from_utf8(s) {
                    Ok(t) => out.push_str(&serde_json::to_string(t).unwrap_or_default()),
                    Err(_) => out.push_str(&format!("/ invalid UTF-8 / h'{}'", hex::encode(s))),
                }
            }
        }
        4 | 5 => {
            let (open, close) = if major == 4 { ('[', ']') } else { ('{', '}') };
            let n = if major == 4 {
                arg
            } else {
                arg.checked_mul(2).ok_or_else(bad)?
            };
            // Decide the layout by scanning the children first.
            let mut scan = *pos;
            let mut nested = false;
            for _ in 0..n {
                nested |= is_container(bytes, scan);
                skip_any(bytes, &mut scan, 0).ok_or_else(bad)?;
            }
            out.push(open);
            for i in 0..n {
                let value_of_pair = major == 5 && i % 2 == 1;
                if value_of_pair {
                    out.push_str(": ");
                } else {
                    if i > 0 {
                        out.push(',');
                    }
                    if nested {
                        out.push('\n');
                        out.push_str(&"  ".repeat(indent + 1));
                    } else if i > 0 {
                        out.push(' ');
                    }
                }
                item(bytes, pos, indent + 1, out)?;
            }
            if nested && n > 0 {
                out.push('\n');
                out.push_str(&"  ".repeat(indent));
            }
            out.push(close);
        }
        6 => {
            out.push_str(&format!("{arg}("));
            item(bytes, pos, indent, out)?;
            out.push(')');
        }
        _ => match info {
            25 => out.push_str(&float(f16_to_f64(arg as u16))),
            26 => out.push_str(&float(f64::from(f32::from_bits(arg as u32)))),
            27 => out.push_str(&float(f64::from_bits(arg))),
            _ => out.push_str(&match arg {
                20 => "false".to_owned(),
                21 => "true".to_owned(),
                22 => "null".to_owned(),
                23 => "undefined".to_owned(),
                n => format!("simple({n})"),
            }),
        },
    }
    Ok(())
}

fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        format!("{v:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_items() {
        assert_eq!(
            diag(&[0x83, 0x01, 0x20, 0x41, 0xab]).unwrap(),
            "[1, -1, h'ab']"
        );
        assert_eq!(
            diag(&[0xa1, 0x01, 0x62, b'h', b'i']).unwrap(),
            "{1: \"hi\"}"
        );
        assert_eq!(diag(&[0x81, 0x81, 0x00]).unwrap(), "[\n  [0]\n]");
        assert_eq!(diag(&[0xd8, 0x20, 0x61, b'x']).unwrap(), "32(\"x\")");
        assert_eq!(diag(&[0xf9, 0x7e, 0x00]).unwrap(), "NaN");
        assert_eq!(diag(&[0xf9, 0x3e, 0x00]).unwrap(), "1.5");
        assert_eq!(
            diag(&[0xf6, 0x00]).unwrap(),
            "null\n/ 1 trailing byte(s): h'00' /"
        );
        assert!(diag(&[0x82, 0x00]).is_err());
    }
}
