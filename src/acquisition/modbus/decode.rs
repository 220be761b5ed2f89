//! Turning raw 16-bit registers into numbers.

use crate::acquisition::config::{ValueType, WordOrder};

/// Reassembles the big-endian byte sequence A B C D … of a value from registers as they came off
/// the wire, undoing the device's word and byte order. Returns the bytes and how many are used.
fn ordered_bytes(regs: &[u16], order: WordOrder) -> ([u8; 8], usize) {
    let mut out = [0u8; 8];
    let n = regs.len().min(4);
    let reverse = matches!(order, WordOrder::CDAB | WordOrder::DCBA);
    let swap = matches!(order, WordOrder::BADC | WordOrder::DCBA);
    for i in 0..n {
        let w = if reverse { regs[n - 1 - i] } else { regs[i] };
        let [hi, lo] = w.to_be_bytes();
        let (a, b) = if swap { (lo, hi) } else { (hi, lo) };
        out[2 * i] = a;
        out[2 * i + 1] = b;
    }
    (out, 2 * n)
}

/// Decodes one value from exactly `value_type.registers()` registers. Returns the raw number
/// before scale and offset; floats may be NaN (the caller turns those into bad readings).
pub fn decode(regs: &[u16], value_type: ValueType, order: WordOrder) -> Result<f64, String> {
    decode_raw(regs, value_type, order).map(|(v, _)| v)
}

/// Like [`decode`], also returning the register contents as one unsigned number in A-B-C-D
/// order (for "not available" sentinels and bit fields).
pub fn decode_raw(
    regs: &[u16],
    value_type: ValueType,
    order: WordOrder,
) -> Result<(f64, u64), String> {
    let n = usize::from(value_type.registers());
    if regs.len() != n {
        return Err(format!(
            "{value_type:?} needs {n} registers, got {}",
            regs.len()
        ));
    }
    if value_type == ValueType::I32F32 {
        let int = decode_raw(&regs[..2], ValueType::I32, order)?;
        let frac = decode_raw(&regs[2..], ValueType::F32, order)?;
        return Ok((int.0 + frac.0, (int.1 << 32) | frac.1));
    }
    let (b, len) = ordered_bytes(regs, order);
    let bits = b[..len]
        .iter()
        .fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
    let v = match value_type {
        ValueType::U16 => f64::from(u16::from_be_bytes([b[0], b[1]])),
        ValueType::I16 => f64::from(i16::from_be_bytes([b[0], b[1]])),
        ValueType::U32 => f64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        ValueType::I32 => f64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        ValueType::F32 => f64::from(f32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        ValueType::U64 => u64::from_be_bytes(b) as f64,
        ValueType::I64 => i64::from_be_bytes(b) as f64,
        ValueType::F64 => f64::from_be_bytes(b),
        ValueType::I32F32 => f64::NAN, // composite: decoded from its halves above
    };
    Ok((v, bits))
}

/// Encodes a value into registers in the given order: the inverse of [`decode`], used by the
/// simulated meters of the demo and by tests.
pub fn encode(value: f64, value_type: ValueType, order: WordOrder) -> Vec<u16> {
    if value_type == ValueType::I32F32 {
        let int = value.trunc();
        let mut out = encode(int, ValueType::I32, order);
        out.extend(encode(value - int, ValueType::F32, order));
        return out;
    }
    let be: Vec<u8> = match value_type {
        ValueType::U16 => (value.round().clamp(0.0, u16::MAX as f64) as u16)
            .to_be_bytes()
            .to_vec(),
        ValueType::I16 => (value.round().clamp(i16::MIN as f64, i16::MAX as f64) as i16)
            .to_be_bytes()
            .to_vec(),
        ValueType::U32 => (value.round().clamp(0.0, u32::MAX as f64) as u32)
            .to_be_bytes()
            .to_vec(),
        ValueType::I32 => (value.round().clamp(i32::MIN as f64, i32::MAX as f64) as i32)
            .to_be_bytes()
            .to_vec(),
        ValueType::F32 => (value as f32).to_be_bytes().to_vec(),
        ValueType::U64 => (value.round().max(0.0) as u64).to_be_bytes().to_vec(),
        ValueType::I64 => (value.round() as i64).to_be_bytes().to_vec(),
        ValueType::F64 => value.to_be_bytes().to_vec(),
        ValueType::I32F32 => Vec::new(),
    };
    let swap = matches!(order, WordOrder::BADC | WordOrder::DCBA);
    let mut words: Vec<u16> = be
        .chunks(2)
        .map(|c| {
            if swap {
                u16::from_be_bytes([c[1], c[0]])
            } else {
                u16::from_be_bytes([c[0], c[1]])
            }
        })
        .collect();
    if matches!(order, WordOrder::CDAB | WordOrder::DCBA) {
        words.reverse();
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERS: [WordOrder; 4] = [
        WordOrder::ABCD,
        WordOrder::CDAB,
        WordOrder::BADC,
        WordOrder::DCBA,
    ];

    #[test]
    fn float32_in_every_order() {
        // 230.5 as IEEE-754 single is 0x4366_8000: bytes A=43 B=66 C=80 D=00.
        let cases = [
            (WordOrder::ABCD, [0x4366, 0x8000]),
            (WordOrder::CDAB, [0x8000, 0x4366]),
            (WordOrder::BADC, [0x6643, 0x0080]),
            (WordOrder::DCBA, [0x0080, 0x6643]),
        ];
        for (order, regs) in cases {
            assert_eq!(
                decode(&regs, ValueType::F32, order).unwrap(),
                230.5,
                "{order:?}"
            );
        }
    }

    #[test]
    fn signed_and_unsigned_integers() {
        assert_eq!(
            decode(&[0xFFFF], ValueType::I16, WordOrder::ABCD).unwrap(),
            -1.0
        );
        assert_eq!(
            decode(&[0xFFFF], ValueType::U16, WordOrder::ABCD).unwrap(),
            65535.0
        );
        assert_eq!(
            decode(&[0x0001, 0x0002], ValueType::U32, WordOrder::ABCD).unwrap(),
            65538.0
        );
        assert_eq!(
            decode(&[0x0002, 0x0001], ValueType::U32, WordOrder::CDAB).unwrap(),
            65538.0
        );
        assert_eq!(
            decode(&[0xFFFF, 0xFFFE], ValueType::I32, WordOrder::ABCD).unwrap(),
            -2.0
        );
        assert_eq!(
            decode(&[0, 0, 0x0001, 0x0000], ValueType::U64, WordOrder::ABCD).unwrap(),
            65536.0
        );
        assert_eq!(
            decode(&[0x0000, 0x0001, 0, 0], ValueType::U64, WordOrder::CDAB).unwrap(),
            65536.0
        );
    }

    #[test]
    fn encode_is_the_inverse_of_decode() {
        let types = [
            (ValueType::U16, 4321.0),
            (ValueType::I16, -1234.0),
            (ValueType::U32, 3_000_000_000.0),
            (ValueType::I32, -2_000_000_000.0),
            (ValueType::F32, 49.75),
            (ValueType::U64, 9_007_199_254_740_000.0),
            (ValueType::I64, -9_007_199_254_740_000.0),
            (ValueType::F64, 123456.789012345),
            (ValueType::I32F32, -1234567.5),
        ];
        for order in ORDERS {
            for (t, v) in types {
                let regs = encode(v, t, order);
                assert_eq!(regs.len(), usize::from(t.registers()));
                assert_eq!(decode(&regs, t, order).unwrap(), v, "{t:?} {order:?}");
            }
        }
    }

    #[test]
    fn tuf2000_integer_plus_fraction_low_word_first() {
        // TUF-2000 LONG 12345 and REAL4 0.625, both low word first (CDAB).
        let mut regs = vec![12345u16, 0];
        regs.extend([0x0000, 0x3F20]); // 0.625 = 0x3F20_0000
        assert_eq!(
            decode(&regs, ValueType::I32F32, WordOrder::CDAB).unwrap(),
            12345.625
        );
        // The manual's example word pair 806B 4212 decodes to 36.625 (low word first).
        assert_eq!(
            decode(&[0x806B, 0x4212], ValueType::F32, WordOrder::CDAB).unwrap(),
            36.625_408_172_607_42
        );
    }

    #[test]
    fn raw_bits_expose_sentinels() {
        let (_, bits) = decode_raw(&[0xFFFF, 0xFFFF], ValueType::U32, WordOrder::ABCD).unwrap();
        assert_eq!(bits, 0xFFFF_FFFF);
        let (_, bits) = decode_raw(&[0xFFFF, 0x7FFF], ValueType::I32, WordOrder::CDAB).unwrap();
        assert_eq!(bits, 0x7FFF_FFFF);
    }

    #[test]
    fn nan_decodes_as_nan_and_wrong_length_is_an_error() {
        assert!(decode(&[0x7FC0, 0x0000], ValueType::F32, WordOrder::ABCD)
            .unwrap()
            .is_nan());
        assert!(decode(&[1], ValueType::F32, WordOrder::ABCD).is_err());
    }
}
