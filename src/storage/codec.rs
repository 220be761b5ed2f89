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
//!
//! Version 2 adds reference values ([`RefValues`], table `value_refs`: one value per series,
//! taken from recent readings when the writer starts a reference): the header names the
//! reference (`version = 2 | ref id | n | base_ts`), value kind 3 means "the reference's value"
//! (no bytes follow: a register that did not change since costs its tag byte only), and tag bit
//! 6 with kind 1 means "f32 as a varint of its bits XOR the reference's f32 bits" (a value near
//! the reference's shares sign, exponent and the high mantissa bits: 2–3 bytes instead of 4).
//! The reference is immutable and kept while a batch refers to it; version 1 blobs (no
//! reference) stay readable and are still written where no reference is kept.

use std::sync::Arc;

use crate::readings::{Quality, TimestampMs};

const VERSION: u8 = 1;
const VERSION_REF: u8 = 2;
const KIND_NONE: u8 = 0;
const KIND_F32: u8 = 1;
const KIND_F64: u8 = 2;
/// The value of the series in the batch's reference (version 2).
const KIND_REF: u8 = 3;
const SAME_TS: u8 = 1 << 4;
const NEXT_SERIES: u8 = 1 << 5;
/// With [`KIND_F32`] (version 2): the f32 bits XOR the reference's, as a varint.
const XOR_REF: u8 = 1 << 6;

/// Reference values: one value (f64 bits) per series, which the readings of version 2 blobs
/// are encoded against. Series ids are dense (row ids), so the values are a vector indexed by
/// id: decoding looks one up per reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RefValues {
    /// Series id of `dense[0]`.
    base: i64,
    dense: Vec<Option<u64>>,
    /// Series ids too far from the others for `dense`.
    sparse: foldhash::HashMap<i64, u64>,
    len: usize,
}

impl RefValues {
    pub fn new(values: foldhash::HashMap<i64, u64>) -> Self {
        let len = values.len();
        let (lo, hi) = values
            .keys()
            .fold((i64::MAX, i64::MIN), |(lo, hi), k| (lo.min(*k), hi.max(*k)));
        let span = (hi as i128 - lo as i128 + 1).max(0) as u128;
        if len == 0 || span > (4 * len as u128 + 4096) {
            return RefValues {
                base: 0,
                dense: Vec::new(),
                sparse: values,
                len,
            };
        }
        let mut dense = vec![None; span as usize];
        for (k, v) in values {
            dense[(k - lo) as usize] = Some(v);
        }
        RefValues {
            base: lo,
            dense,
            sparse: Default::default(),
            len,
        }
    }

    /// The value of `series_id` (f64 bits).
    pub fn get(&self, series_id: i64) -> Option<u64> {
        match usize::try_from(series_id.wrapping_sub(self.base)) {
            Ok(i) if i < self.dense.len() && series_id >= self.base => self.dense[i],
            _ => self.sparse.get(&series_id).copied(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn entries(&self) -> Vec<(i64, u64)> {
        let mut out: Vec<(i64, u64)> = self
            .dense
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (self.base + i as i64, v)))
            .chain(self.sparse.iter().map(|(k, v)| (*k, *v)))
            .collect();
        out.sort_unstable();
        out
    }

    /// `version = 1 | n | n × (series id − previous (signed) | kind (1 f32, 2 f64) | value)`,
    /// series in ascending order.
    pub fn encode(&self) -> Vec<u8> {
        let sids = self.entries();
        let mut out = Vec::with_capacity(sids.len() * 6 + 8);
        out.push(1);
        put_varint(&mut out, sids.len() as u64);
        let mut prev = 0i64;
        for (sid, bits) in sids {
            put_signed(&mut out, sid.wrapping_sub(prev));
            prev = sid;
            match f32_bits(bits) {
                Some(b) => {
                    out.push(KIND_F32);
                    out.extend_from_slice(&b.to_le_bytes());
                }
                None => {
                    out.push(KIND_F64);
                    out.extend_from_slice(&bits.to_le_bytes());
                }
            }
        }
        out
    }

    pub fn decode(buf: &[u8]) -> Result<RefValues, DecodeError> {
        let mut d = Reader { buf, pos: 0 };
        if d.byte()? != 1 {
            return Err(DecodeError("unknown reference version"));
        }
        let n = d.varint()?;
        let mut values = foldhash::HashMap::with_capacity_and_hasher(
            n.min(1 << 20) as usize,
            Default::default(),
        );
        let mut sid = 0i64;
        for _ in 0..n {
            sid = sid.wrapping_add(d.signed()?);
            let bits = match d.byte()? {
                KIND_F32 => {
                    let b = d.take(4)?;
                    f64::from(f32::from_bits(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                        .to_bits()
                }
                KIND_F64 => {
                    let b = d.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    u64::from_le_bytes(a)
                }
                _ => return Err(DecodeError("unknown reference value kind")),
            };
            values.insert(sid, bits);
        }
        Ok(RefValues::new(values))
    }
}

/// The f32 bits of an f64 (given as bits) that an f32 holds exactly.
fn f32_bits(bits: u64) -> Option<u32> {
    let v = f64::from_bits(bits);
    let f = v as f32;
    (f64::from(f).to_bits() == bits).then_some(f.to_bits())
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// The reference a blob was encoded against (None for version 1 blobs).
pub fn ref_id(buf: &[u8]) -> Result<Option<i64>, DecodeError> {
    let mut d = Reader { buf, pos: 0 };
    match d.byte()? {
        VERSION => Ok(None),
        VERSION_REF => Ok(Some(d.varint()? as i64)),
        _ => Err(DecodeError("unknown version")),
    }
}

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

/// Encodes `readings` (series id, ts, value, quality) into one blob (version 1).
pub fn encode<'a>(
    readings: impl ExactSizeIterator<Item = (i64, TimestampMs, Option<f64>, &'a Quality)>,
) -> Vec<u8> {
    encode_with(readings, None)
}

/// Encodes `readings` into one blob, against the reference `(id, values)` when given
/// (version 2).
pub fn encode_with<'a>(
    readings: impl ExactSizeIterator<Item = (i64, TimestampMs, Option<f64>, &'a Quality)>,
    reference: Option<(i64, &RefValues)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(readings.len() * 6 + 16);
    match reference {
        Some((id, _)) => {
            out.push(VERSION_REF);
            put_varint(&mut out, id as u64);
        }
        None => out.push(VERSION),
    }
    let refv = reference.map(|r| r.1);
    put_varint(&mut out, readings.len() as u64);
    let mut prev_ts: Option<TimestampMs> = None;
    let mut prev_sid = i64::MIN;
    for (sid, ts, value, quality) in readings {
        if prev_ts.is_none() {
            put_signed(&mut out, ts);
        }
        let reference = refv.and_then(|r| r.get(sid));
        let mut xor = None;
        let (kind, bytes): (u8, [u8; 8]) = match value {
            None => (KIND_NONE, [0; 8]),
            Some(v) if reference == Some(v.to_bits()) => (KIND_REF, [0; 8]),
            Some(v) if ((v as f32) as f64).to_bits() == v.to_bits() => {
                let bits = (v as f32).to_bits();
                xor = reference
                    .and_then(f32_bits)
                    .map(|r| u64::from(bits ^ r))
                    .filter(|x| varint_len(*x) < 4);
                let mut b = [0; 8];
                b[..4].copy_from_slice(&bits.to_le_bytes());
                (KIND_F32, b)
            }
            Some(v) => (KIND_F64, v.to_le_bytes()),
        };
        let mut tag = kind | ((quality.code() as u8 & 3) << 2);
        if xor.is_some() {
            tag |= XOR_REF;
        }
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
        match (kind, xor) {
            (KIND_F32, Some(x)) => put_varint(&mut out, x),
            (KIND_F32, None) => out.extend_from_slice(&bytes[..4]),
            (KIND_F64, _) => out.extend_from_slice(&bytes),
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

/// Reads the fields of a blob.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
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
}

/// Reads the readings of a blob in order.
pub struct Decoder<'a> {
    r: Reader<'a>,
    left: u64,
    prev_ts: TimestampMs,
    prev_sid: i64,
    reference: Option<Arc<RefValues>>,
}

impl<'a> Decoder<'a> {
    /// A decoder of a version 1 blob (one that refers to no reference values).
    pub fn new(buf: &'a [u8]) -> Result<Decoder<'a>, DecodeError> {
        Decoder::with_ref(buf, None)
    }

    /// A decoder of a blob with the reference values it names ([`ref_id`]), if any.
    pub fn with_ref(
        buf: &'a [u8],
        reference: Option<Arc<RefValues>>,
    ) -> Result<Decoder<'a>, DecodeError> {
        let mut d = Decoder {
            r: Reader { buf, pos: 0 },
            left: 0,
            prev_ts: 0,
            prev_sid: 0,
            reference: None,
        };
        match d.r.byte()? {
            VERSION => {}
            VERSION_REF => {
                d.r.varint()?;
                d.reference = Some(reference.ok_or(DecodeError("reference values missing"))?);
            }
            _ => return Err(DecodeError("unknown version")),
        }
        d.left = d.r.varint()?;
        if d.left > 0 {
            d.prev_ts = d.r.signed()?;
        }
        Ok(d)
    }

    fn reference(&self, sid: i64) -> Result<u64, DecodeError> {
        self.reference
            .as_ref()
            .and_then(|r| r.get(sid))
            .ok_or(DecodeError("no reference value for the series"))
    }

    fn next_reading(&mut self) -> Result<Encoded, DecodeError> {
        let tag = self.r.byte()?;
        let sid = if tag & NEXT_SERIES != 0 {
            self.prev_sid.wrapping_add(1)
        } else {
            self.r.varint()? as i64
        };
        let ts = if tag & SAME_TS != 0 {
            self.prev_ts
        } else {
            self.prev_ts.wrapping_add(self.r.signed()?)
        };
        let value = match tag & 3 {
            KIND_NONE => None,
            KIND_F32 if tag & XOR_REF != 0 => {
                let x = u32::try_from(self.r.varint()?)
                    .map_err(|_| DecodeError("f32 difference too long"))?;
                let base = f32_bits(self.reference(sid)?)
                    .ok_or(DecodeError("reference value is not an f32"))?;
                Some(f64::from(f32::from_bits(base ^ x)))
            }
            KIND_F32 => {
                let b = self.r.take(4)?;
                Some(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            KIND_F64 => {
                let b = self.r.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Some(f64::from_le_bytes(a))
            }
            _ => Some(f64::from_bits(self.reference(sid)?)),
        };
        let code = i64::from((tag >> 2) & 3);
        let reason = if code != 0 {
            let n = self.r.varint()? as usize;
            let b = self.r.take(n)?;
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

/// Decodes a whole version 1 blob.
pub fn decode(buf: &[u8]) -> Result<Vec<Encoded>, DecodeError> {
    Decoder::new(buf)?.collect()
}

/// Decodes a whole blob with its reference values, if it names any.
pub fn decode_with(
    buf: &[u8],
    reference: Option<Arc<RefValues>>,
) -> Result<Vec<Encoded>, DecodeError> {
    Decoder::with_ref(buf, reference)?.collect()
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

    fn poll(values: &[f64]) -> Vec<Encoded> {
        values
            .iter()
            .enumerate()
            .map(|(q, v)| Encoded {
                series_id: 300 + q as i64,
                ts_ms: 1_767_225_600_123,
                value: Some(*v),
                quality: Quality::Good,
            })
            .collect()
    }

    fn with_ref(rs: &[Encoded], values: &RefValues) -> Vec<u8> {
        let blob = encode_with(
            rs.iter()
                .map(|r| (r.series_id, r.ts_ms, r.value, &r.quality)),
            Some((7, values)),
        );
        assert_eq!(ref_id(&blob).unwrap(), Some(7));
        let again = RefValues::decode(&values.encode()).unwrap();
        assert_eq!(&again, values);
        assert_eq!(decode_with(&blob, Some(Arc::new(again))).unwrap(), rs);
        blob
    }

    #[test]
    fn against_a_reference_an_unchanged_value_takes_its_tag_byte_and_a_near_one_three() {
        let before: Vec<f64> = (0..15).map(|q| f64::from(230.5f32 + q as f32)).collect();
        let reference = RefValues::new(
            poll(&before)
                .iter()
                .map(|r| (r.series_id, r.value.unwrap().to_bits()))
                .collect(),
        );
        // header (1 + 1 ref id + 1 + 6) + first reading's series id (2) and ts delta (1)
        let blob = with_ref(&poll(&before), &reference);
        assert_eq!(blob.len(), 9 + 15 + 3);
        // Each value moved a little: XOR with the reference in at most 3 bytes, not 4.
        let after: Vec<f64> = before.iter().map(|v| f64::from(*v as f32 + 0.37)).collect();
        let blob = with_ref(&poll(&after), &reference);
        assert!(blob.len() <= 9 + 15 * 4 + 3, "{}", blob.len());
        // Far from it (another exponent), f64, none and series the reference lacks: as before.
        let mut other = poll(&[-1.0e9, 0.1, 5.0]);
        other[1].series_id = 9_999;
        other.push(Encoded {
            series_id: 301,
            ts_ms: 5,
            value: None,
            quality: Quality::Bad("timeout".into()),
        });
        with_ref(&other, &reference);
        // f64 reference values, exact.
        let f64s = RefValues::new(
            [(1, 0.1f64.to_bits()), (-3, (-0.0f64).to_bits())]
                .into_iter()
                .collect(),
        );
        with_ref(
            &[
                Encoded {
                    series_id: 1,
                    ts_ms: 0,
                    value: Some(0.1),
                    quality: Quality::Good,
                },
                Encoded {
                    series_id: -3,
                    ts_ms: 0,
                    value: Some(0.0),
                    quality: Quality::Good,
                },
            ],
            &f64s,
        );
    }

    #[test]
    fn a_blob_without_its_reference_is_an_error() {
        let values = RefValues::new([(1, 2.0f64.to_bits())].into_iter().collect());
        let blob = encode_with(
            std::iter::once((1, 1000, Some(2.0), &Quality::Good)),
            Some((3, &values)),
        );
        assert!(decode(&blob).is_err());
        assert!(decode_with(&blob, Some(Arc::new(RefValues::default()))).is_err());
        for cut in 0..blob.len() {
            assert!(decode_with(&blob[..cut], Some(Arc::new(values.clone()))).is_err());
        }
        let refs = values.encode();
        for cut in 0..refs.len() {
            assert!(RefValues::decode(&refs[..cut]).is_err(), "cut at {cut}");
        }
    }
}
