//! Packed BCD as DL/T 645 and CJ/T 188 meters send it: two decimal digits per byte, least
//! significant byte first, an implied decimal point, and for signed items the sign in the top
//! bit of the most significant byte (DL/T 645-2007 clause 6.4 and Appendix A notes).

use chrono::NaiveDate;

/// A fixed-point BCD layout such as `XXXXXX.XX` (4 bytes, 2 decimals) or `XX.XXXX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BcdFormat {
    pub bytes: usize,
    pub decimals: u8,
}

impl BcdFormat {
    /// Parses the standard's notation: `X` for each digit and one optional `.`. An odd digit
    /// count takes whole bytes all the same (DL/T 645-1997 `XXX` V is two bytes).
    pub fn parse(s: &str) -> Result<BcdFormat, String> {
        let digits = s.chars().filter(|c| *c == 'X').count();
        let dots = s.chars().filter(|c| *c == '.').count();
        if digits == 0 || digits > 16 || digits + dots != s.len() || dots > 1 {
            return Err(format!(
                "\"{s}\" is not a BCD format: write X for each digit and at most one point (e.g. \"XXXXXX.XX\")"
            ));
        }
        let decimals = s.find('.').map(|p| s.len() - p - 1).unwrap_or(0);
        Ok(BcdFormat {
            bytes: digits.div_ceil(2),
            decimals: decimals as u8,
        })
    }
}

/// The digits of one byte, or an error naming the byte.
fn digits(b: u8) -> Result<u64, String> {
    let (hi, lo) = (b >> 4, b & 0x0F);
    if hi > 9 || lo > 9 {
        return Err(format!("byte {b:#04x} is not BCD"));
    }
    Ok(u64::from(hi) * 10 + u64::from(lo))
}

/// Unsigned integer from BCD bytes, least significant byte first.
pub fn decode_uint(bytes: &[u8]) -> Result<u64, String> {
    if bytes.is_empty() || bytes.len() > 9 {
        return Err(format!("{} BCD bytes cannot be a number", bytes.len()));
    }
    bytes
        .iter()
        .rev()
        .try_fold(0u64, |acc, b| Ok(acc * 100 + digits(*b)?))
}

/// A fixed-point value from BCD bytes (least significant first); with `signed`, bit 7 of the
/// last byte is the sign.
pub fn decode(bytes: &[u8], f: BcdFormat, signed: bool) -> Result<f64, String> {
    if bytes.len() != f.bytes {
        return Err(format!(
            "expected {} BCD bytes, got {}",
            f.bytes,
            bytes.len()
        ));
    }
    let mut b = bytes.to_vec();
    let mut negative = false;
    if signed {
        if let Some(last) = b.last_mut() {
            negative = *last & 0x80 != 0;
            *last &= 0x7F;
        }
    }
    let n = decode_uint(&b)? as f64 / 10f64.powi(i32::from(f.decimals));
    Ok(if negative { -n } else { n })
}

/// A value as BCD bytes (least significant first), the inverse of [`decode`]. Errors when the
/// value does not fit.
pub fn encode(value: f64, f: BcdFormat, signed: bool) -> Result<Vec<u8>, String> {
    if !value.is_finite() || (value < 0.0 && !signed) {
        return Err(format!("{value} cannot be written as unsigned BCD"));
    }
    let mut n = (value.abs() * 10f64.powi(i32::from(f.decimals))).round() as u64;
    let mut out = Vec::with_capacity(f.bytes);
    for _ in 0..f.bytes {
        out.push((((n / 10) % 10) << 4 | (n % 10)) as u8);
        n /= 100;
    }
    let sign_clash = signed && out.last().is_some_and(|b| b & 0x80 != 0);
    if n != 0 || sign_clash {
        return Err(format!("{value} does not fit {} BCD bytes", f.bytes));
    }
    if signed && value < 0.0 {
        if let Some(last) = out.last_mut() {
            *last |= 0x80;
        }
    }
    Ok(out)
}

/// Calendar fields read from a meter (local time of the meter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterTime {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl MeterTime {
    /// As a calendar date-time, or an error when the meter sent an impossible date.
    pub fn to_naive(self) -> Result<chrono::NaiveDateTime, String> {
        NaiveDate::from_ymd_opt(self.year, self.month, self.day)
            .and_then(|d| d.and_hms_opt(self.hour, self.minute, self.second))
            .ok_or_else(|| format!("impossible meter date/time {self:?}"))
    }
}

/// BCD bytes (least significant first) as two-digit fields, most significant first: `YYMMDDhhmm`
/// on the wire `mm hh DD MM YY` gives `[YY, MM, DD, hh, mm]`.
pub fn fields(bytes: &[u8]) -> Result<Vec<u32>, String> {
    bytes.iter().rev().map(|b| Ok(digits(*b)? as u32)).collect()
}

/// A two-digit year of a meter: 20YY.
pub fn year_2000(yy: u32) -> i32 {
    2000 + yy as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_of_the_standard() {
        let f = |s| BcdFormat::parse(s).unwrap();
        assert_eq!(
            f("XXXXXX.XX"),
            BcdFormat {
                bytes: 4,
                decimals: 2
            }
        );
        assert_eq!(
            f("XX.XXXX"),
            BcdFormat {
                bytes: 3,
                decimals: 4
            }
        );
        assert_eq!(
            f("XXX.X"),
            BcdFormat {
                bytes: 2,
                decimals: 1
            }
        );
        assert_eq!(
            f("XXXX"),
            BcdFormat {
                bytes: 2,
                decimals: 0
            }
        );
        assert_eq!(f("XXX").bytes, 2);
        for bad in ["", "X.X.X", "XXYY", "."] {
            assert!(BcdFormat::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decodes_values_of_the_standard() {
        // 123456.78 kWh as XXXXXX.XX: 78 56 34 12
        let f = BcdFormat::parse("XXXXXX.XX").unwrap();
        assert_eq!(decode(&[0x78, 0x56, 0x34, 0x12], f, false), Ok(123456.78));
        // -1.234 A as XXX.XXX with the sign bit: 34 12 80
        let f = BcdFormat::parse("XXX.XXX").unwrap();
        assert_eq!(decode(&[0x34, 0x12, 0x80], f, true), Ok(-1.234));
        // unsigned: the top bit is a digit, 8 -> 800.000... here an invalid nibble
        assert!(decode(&[0x34, 0x12, 0xA0], f, false).is_err());
        assert!(decode(&[0x34, 0x12], f, false).is_err());
        assert!(decode(&[0x3A, 0x12, 0x00], f, false).is_err());
    }

    #[test]
    fn date_fields_come_most_significant_first() {
        // 2026-11-29 21:05 as YYMMDDhhmm on the wire: 05 21 29 11 26
        assert_eq!(
            fields(&[0x05, 0x21, 0x29, 0x11, 0x26]),
            Ok(vec![26, 11, 29, 21, 5])
        );
    }

    proptest! {
        #[test]
        fn encode_then_decode_gives_the_value(n in 0u64..100_000_000, neg: bool, dec in 0u8..5) {
            let f = BcdFormat { bytes: 4, decimals: dec };
            let v = n as f64 / 10f64.powi(i32::from(dec));
            let signed = n < 10_000_000;
            let v = if neg && signed { -v } else { v };
            let b = encode(v, f, signed).unwrap();
            prop_assert_eq!(decode(&b, f, signed).unwrap(), v);
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..12), dec in 0u8..6, signed: bool) {
            let _ = decode(&b, BcdFormat { bytes: b.len(), decimals: dec }, signed);
            let _ = fields(&b);
        }
    }
}
