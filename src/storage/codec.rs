//! Compact encoding of the readings of one commit ("batch"): one BLOB per batch instead of one
//! row (and one index entry) per reading. Reading ids are implicit: the batch row's `first_id`
//! plus the position in the blob, so ids stay dense and ordered by commit as before.
//!
//! Layout (all integers LEB128 varints, signed ones zigzag-encoded):
//!
//! ```text
//! version = 1 (u8) | n | base_ts (signed)
//! n × ( tag (u8) | [series id] | [ts − previous ts (signed)] | [value] | [reason len | reason] )
//! ```
//!
//! Tag bits: 0–1 value kind (0 none, 1 f32 little-endian, 2 f64 little-endian: a value that a
//! f32 holds exactly takes 4 bytes, as meter registers are mostly f32), 2–3 quality code (0 good,
//! 1 bad, 2 estimated; a reason follows unless good), 4 "same timestamp as the previous
//! reading" (a device's readings of one poll share it), 5 "series id = previous + 1" (a
//! device's quantities get consecutive ids). A typical reading of a poll takes 5 bytes.

use crate::readings::{Quality, TimestampMs};

const VERSION: u8 = 1;
const KIND_NONE: u8 = 0;
const KIND_F32: u8 = 1;
const KIND_F64: u8 = 2;
const SAME_TS: u8 = 1 << 4;
const NEXT_SERIES: u8 = 1 << 5;

/// One reading as the codec sees it: the series by id.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub series_id: i64,
    pub ts_ms: TimestampMs,
    pub value: Option<f64>,
    pub quality: Quality,
}

/// Why a blob could not be decoded (a damaged or foreign store).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("reading batch blob: {0}")]
pub struct DecodeError(pub &'static str);

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_signed(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Encodes `readings` (series id, ts, value, quality) into one blob.
pub fn encode<'a>(
    readings: impl ExactSizeIterator<Item = (i64, TimestampMs, Option<f64>, &'a Quality)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(readings.len() * 6 + 16);
    out.push(VERSION);
    put_varint(&mut out, readings.len() as u64);
    let mut prev_ts: Option<TimestampMs> = None;
    let mut prev_sid = i64::MIN;
    for (sid, ts, value, quality) in readings {
        if prev_ts.is_none() {
            put_signed(&mut out, ts);
        }
        let (kind, bytes): (u8, [u8; 8]) = match value {
            None => (KIND_NONE, [0; 8]),
            Some(v) if ((v as f32) as f64).to_bits() == v.to_bits() => {
                let mut b = [0; 8];
                b[..4].copy_from_slice(&(v as f32).to_le_bytes());
                (KIND_F32, b)
            }
            Some(v) => (KIND_F64, v.to_le_bytes()),
        };
        let mut tag = kind | ((quality.code() as u8 & 3) << 2);
        let same_ts = prev_ts == Some(ts);
        if same_ts {
            tag |= SAME_TS;
        }
        let next_series = prev_sid != i64::MIN && sid == prev_sid.wrapping_add(1);
        if next_series {
            tag |= NEXT_SERIES;
        }
        out.push(tag);
        if !next_series {
            put_varint(&mut out, sid as u64);
        }
        if !same_ts {
            put_signed(&mut out, ts.wrapping_sub(prev_ts.unwrap_or(ts)));
        }
        match kind {
            KIND_F32 => out.extend_from_slice(&bytes[..4]),
            KIND_F64 => out.extend_from_slice(&bytes),
            _ => {}
        }
        if let Some(reason) = quality.reason() {
            put_varint(&mut out, reason.len() as u64);
            out.extend_from_slice(reason.as_bytes());
        }
        prev_ts = Some(ts);
        prev_sid = sid;
    }
    out
}

/// Reads the readings of a blob in order.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    left: u64,
    prev_ts: TimestampMs,
    prev_sid: i64,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Result<Decoder<'a>, DecodeError> {
        let mut d = Decoder {
            buf,
            pos: 0,
            left: 0,
            prev_ts: 0,
            prev_sid: 0,
        };
        if d.byte()? != VERSION {
            return Err(DecodeError("unknown version"));
        }
        d.left = d.varint()?;
        if d.left > 0 {
            d.prev_ts = d.signed()?;
        }
        Ok(d)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError("truncated"))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(DecodeError("truncated"))?;
        self.pos = end;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }

    fn signed(&mut self) -> Result<i64, DecodeError> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn next_reading(&mut self) -> Result<Encoded, DecodeError> {
        let tag = self.byte()?;
        let sid = if tag & NEXT_SERIES != 0 {
            self.prev_sid.wrapping_add(1)
        } else {
            self.varint()? as i64
        };
        let ts = if tag & SAME_TS != 0 {
            self.prev_ts
        } else {
            self.prev_ts.wrapping_add(self.signed()?)
        };
        let value = match tag & 3 {
            KIND_NONE => None,
            KIND_F32 => {
                let b = self.take(4)?;
                Some(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            KIND_F64 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Some(f64::from_le_bytes(a))
            }
            _ => return Err(DecodeError("unknown value kind")),
        };
        let code = i64::from((tag >> 2) & 3);
        let reason = if code != 0 {
            let n = self.varint()? as usize;
            let b = self.take(n)?;
            Some(String::from_utf8_lossy(b).into_owned())
        } else {
            None
        };
        self.prev_ts = ts;
        self.prev_sid = sid;
        Ok(Encoded {
            series_id: sid,
            ts_ms: ts,
            value,
            quality: Quality::from_code(code, reason),
        })
    }
}

impl Iterator for Decoder<'_> {
    type Item = Result<Encoded, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let r = self.next_reading();
        if r.is_err() {
            self.left = 0;
        }
        Some(r)
    }
}

/// Decodes a whole blob.
pub fn decode(buf: &[u8]) -> Result<Vec<Encoded>, DecodeError> {
    Decoder::new(buf)?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(rs: &[Encoded]) -> Vec<u8> {
        let blob = encode(
            rs.iter()
                .map(|r| (r.series_id, r.ts_ms, r.value, &r.quality)),
        );
        assert_eq!(decode(&blob).unwrap(), rs);
        blob
    }

    #[test]
    fn a_poll_of_f32_values_takes_five_bytes_a_reading() {
        let rs: Vec<Encoded> = (0..15)
            .map(|q| Encoded {
                series_id: 300 + q,
                ts_ms: 1_767_225_600_123,
                value: Some(f64::from(230.5f32 + q as f32)),
                quality: Quality::Good,
            })
            .collect();
        let blob = round_trip(&rs);
        // header (1 + 1 + 6) + first reading's series id (2) and ts delta (1)
        assert_eq!(blob.len(), 8 + 15 * 5 + 3);
    }

    #[test]
    fn every_kind_of_reading_survives() {
        let rs = vec![
            Encoded {
                series_id: 7,
                ts_ms: -5,
                value: Some(0.1),
                quality: Quality::Good,
            },
            Encoded {
                series_id: 3,
                ts_ms: i64::MAX,
                value: None,
                quality: Quality::Bad("modbus exception: 非法地址".into()),
            },
            Encoded {
                series_id: i64::MAX,
                ts_ms: i64::MIN,
                value: Some(-0.0),
                quality: Quality::Estimated(String::new()),
            },
            Encoded {
                series_id: 0,
                ts_ms: 0,
                value: Some(f64::INFINITY),
                quality: Quality::Good,
            },
        ];
        round_trip(&rs);
        round_trip(&[]);
    }

    #[test]
    fn damaged_blobs_are_errors_not_panics() {
        let blob = encode(std::iter::once((1, 1000, Some(0.1), &Quality::Good)));
        for cut in 0..blob.len() {
            assert!(decode(&blob[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&[9, 1]).is_err());
        assert!(decode(&[1, 1, 0, 3]).is_err());
    }
}
