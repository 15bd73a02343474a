use super::*;

fn read(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader::new(bytes);
    let v = r.value(0, 4)?;
    r.finish()?;
    Ok(v)
}

#[test]
fn shortest_heads_are_required() {
    assert!(matches!(
        read(&[0x18, 0x05]).unwrap_err().rule,
        Rule::NonShortestArgument { value: 5 }
    ));
    assert!(matches!(
        read(&[0x19, 0x00, 0xff]).unwrap_err().rule,
        Rule::NonShortestArgument { .. }
    ));
    assert_eq!(read(&[0x19, 0x01, 0x00]).unwrap(), Value::Integer(256));
    assert!(matches!(
        read(&[0x1a, 0, 0, 0xff, 0xff]).unwrap_err().rule,
        Rule::NonShortestArgument { .. }
    ));
}

#[test]
fn indefinite_and_break_are_rejected() {
    assert_eq!(
        read(&[0x5f, 0xff]).unwrap_err().rule,
        Rule::IndefiniteLength
    );
    assert_eq!(
        read(&[0x9f, 0xff]).unwrap_err().rule,
        Rule::IndefiniteLength
    );
    assert_eq!(read(&[0xff]).unwrap_err().rule, Rule::UnexpectedBreak);
    assert_eq!(
        read(&[0x1c]).unwrap_err().rule,
        Rule::ReservedAdditionalInfo(28)
    );
}

#[test]
fn integer_range_is_enforced() {
    // 2^53 - 1 is fine, 2^53 is not.
    assert_eq!(
        read(&[0x1b, 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap(),
        Value::Integer(MAX_SAFE_INTEGER)
    );
    assert!(matches!(
        read(&[0x1b, 0, 0x20, 0, 0, 0, 0, 0, 0]).unwrap_err().rule,
        Rule::IntegerOutOfRange { .. }
    ));
    // -(2^53 - 1) is encoded as 0x3b with argument 2^53 - 2.
    assert_eq!(
        read(&[0x3b, 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]).unwrap(),
        Value::Integer(-MAX_SAFE_INTEGER)
    );
    assert!(matches!(
        read(&[0x3b, 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
            .unwrap_err()
            .rule,
        Rule::IntegerOutOfRange { .. }
    ));
}

#[test]
fn floats_must_be_shortest_and_nan_canonical() {
    assert_eq!(read(&[0xf9, 0x3e, 0x00]).unwrap(), Value::Float(1.5));
    assert!(matches!(
        read(&[0xfa, 0x3f, 0xc0, 0, 0]).unwrap_err().rule,
        Rule::NonShortestFloat { .. }
    ));
    assert!(matches!(
        read(&[0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0])
            .unwrap_err()
            .rule,
        Rule::NonShortestFloat { .. }
    ));
    // 0.1 needs f64.
    let mut v = vec![0xfb];
    v.extend_from_slice(&0.1f64.to_bits().to_be_bytes());
    assert_eq!(read(&v).unwrap(), Value::Float(0.1));
    assert!(read(&[0xf9, 0x7e, 0x00]).unwrap() != Value::Float(0.0));
    assert_eq!(
        read(&[0xf9, 0x7e, 0x01]).unwrap_err().rule,
        Rule::NonCanonicalNan
    );
    assert_eq!(
        read(&[0xfa, 0x7f, 0xc0, 0, 0]).unwrap_err().rule,
        Rule::NonCanonicalNan
    );
    // Infinity and subnormals round-trip through the writer.
    for v in [
        f64::INFINITY,
        f64::NEG_INFINITY,
        5.960464477539063e-8,
        65504.0,
        -0.0,
        1e300,
    ] {
        let bytes = Value::Float(v).to_cbor();
        assert_eq!(read(&bytes).unwrap().to_cbor(), bytes, "{v}");
    }
}

#[test]
fn map_order_and_duplicates() {
    // {1: 0, 2: 0} sorted; {2: 0, 1: 0} not; {1: 0, 1: 0} duplicate.
    assert!(read(&[0xa2, 0x01, 0x00, 0x02, 0x00]).is_ok());
    assert_eq!(
        read(&[0xa2, 0x02, 0x00, 0x01, 0x00]).unwrap_err().rule,
        Rule::UnsortedKeys
    );
    assert_eq!(
        read(&[0xa2, 0x01, 0x00, 0x01, 0x00]).unwrap_err().rule,
        Rule::DuplicateKey
    );
    // Bytewise order puts 100 (0x1864) before -1 (0x20), unlike RFC 7049 length-first.
    assert!(read(&[0xa2, 0x18, 0x64, 0x01, 0x20, 0x02]).is_ok());
    assert_eq!(
        read(&[0xa2, 0x20, 0x02, 0x18, 0x64, 0x01])
            .unwrap_err()
            .rule,
        Rule::UnsortedKeys
    );
}

#[test]
fn writer_sorts_map_keys() {
    let v = Value::Map(vec![
        (Value::Integer(-1), Value::Integer(2)),
        (Value::Integer(100), Value::Integer(1)),
    ]);
    assert_eq!(v.to_cbor(), vec![0xa2, 0x18, 0x64, 0x01, 0x20, 0x02]);
}

#[test]
fn depth_limit_counts_containers() {
    // Four nested arrays from level 0 reach level 4: allowed. Five: rejected.
    assert!(read(&[0x81, 0x81, 0x81, 0x81, 0x00]).is_ok());
    assert!(matches!(
        read(&[0x81, 0x81, 0x81, 0x81, 0x81, 0x00])
            .unwrap_err()
            .rule,
        Rule::ExtensionsTooDeep { .. }
    ));
}

#[test]
fn huge_counts_do_not_allocate() {
    assert!(matches!(
        read(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])
            .unwrap_err()
            .rule,
        Rule::NonShortestArgument { .. } | Rule::Truncated { .. }
    ));
    assert!(matches!(
        read(&[0x9a, 0xff, 0xff, 0xff, 0xff]).unwrap_err().rule,
        Rule::Truncated { .. }
    ));
    assert!(matches!(
        read(&[0x5a, 0xff, 0xff, 0xff, 0xff]).unwrap_err().rule,
        Rule::Truncated { .. }
    ));
}

#[test]
fn simple_values() {
    assert_eq!(
        read(&[0xf8, 0x10]).unwrap_err().rule,
        Rule::BadSimpleValue(16)
    );
    assert_eq!(read(&[0xf8, 0x20]).unwrap(), Value::Simple(32));
    assert_eq!(read(&[0xe5]).unwrap(), Value::Simple(5));
    assert_eq!(read(&[0xf7]).unwrap(), Value::Undefined);
}
