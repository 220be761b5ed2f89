//! Sparkplug B payloads (Eclipse Sparkplug 3.0, the `Payload` message of the Eclipse Tahu
//! `sparkplug_b.proto`, protobuf proto2), written by hand for the few fields the gateway sends:
//!
//! | message | field | number | wire |
//! | --- | --- | --- | --- |
//! | Payload | timestamp (uint64), metrics (repeated Metric), seq (uint64) | 1, 2, 3 | varint, bytes, varint |
//! | Metric | name (string), alias (uint64), timestamp (uint64), datatype (uint32) | 1, 2, 3, 4 | bytes, varint ×3 |
//! | Metric | is_null (bool), properties (PropertySet) | 7, 9 | varint, bytes |
//! | Metric | long_value (uint64), double_value (double), boolean_value (bool) | 11, 13, 14 | varint, 64-bit, varint |
//! | PropertySet | keys (repeated string), values (repeated PropertyValue) | 1, 2 | bytes |
//! | PropertyValue | type (uint32), int_value (uint32), string_value (string) | 1, 3, 8 | varint, varint, bytes |
//!
//! Data types (Sparkplug 3.0 §6.4.16): Int32 3, UInt64 8, Double 10, Boolean 11, String 12.
//! Only the node command (NCMD) is read: its metrics' names and boolean values.

/// Sparkplug data type numbers used here.
pub const INT32: u32 = 3;
pub const UINT64: u32 = 8;
pub const DOUBLE: u32 = 10;
pub const BOOLEAN: u32 = 11;
pub const STRING: u32 = 12;

/// The node control metric a host sends (true) to ask for births again.
pub const REBIRTH: &str = "Node Control/Rebirth";

/// A metric's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Double(f64),
    UInt64(u64),
    Boolean(bool),
    /// No value (a bad reading, or unknown at birth), with the metric's data type.
    Null(u32),
}

/// A property of a metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Property {
    Int32(u32),
    String(String),
}

/// One metric as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// In births (and node metrics); data messages carry the alias only.
    pub name: Option<String>,
    pub alias: Option<u64>,
    pub timestamp: Option<u64>,
    pub value: Value,
    pub properties: Vec<(String, Property)>,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, 0);
    varint(out, v);
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn metric(m: &Metric) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    if let Some(n) = &m.name {
        bytes(&mut out, 1, n.as_bytes());
    }
    if let Some(a) = m.alias {
        uint(&mut out, 2, a);
    }
    if let Some(t) = m.timestamp {
        uint(&mut out, 3, t);
    }
    let datatype = match m.value {
        Value::Double(_) => DOUBLE,
        Value::UInt64(_) => UINT64,
        Value::Boolean(_) => BOOLEAN,
        Value::Null(t) => t,
    };
    uint(&mut out, 4, u64::from(datatype));
    if matches!(m.value, Value::Null(_)) {
        uint(&mut out, 7, 1);
    }
    if !m.properties.is_empty() {
        let mut set = Vec::new();
        for (k, _) in &m.properties {
            bytes(&mut set, 1, k.as_bytes());
        }
        for (_, v) in &m.properties {
            let mut pv = Vec::new();
            match v {
                Property::Int32(i) => {
                    uint(&mut pv, 1, u64::from(INT32));
                    uint(&mut pv, 3, u64::from(*i));
                }
                Property::String(s) => {
                    uint(&mut pv, 1, u64::from(STRING));
                    bytes(&mut pv, 8, s.as_bytes());
                }
            }
            bytes(&mut set, 2, &pv);
        }
        bytes(&mut out, 9, &set);
    }
    match m.value {
        Value::Double(v) => {
            key(&mut out, 13, 1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Value::UInt64(v) => uint(&mut out, 11, v),
        Value::Boolean(b) => uint(&mut out, 14, u64::from(b)),
        Value::Null(_) => {}
    }
    out
}

/// Encodes a payload: sending time, metrics, and the sequence number (`None` for NDEATH,
/// which has none).
pub fn encode(timestamp_ms: u64, metrics: &[Metric], seq: Option<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 40 * metrics.len());
    uint(&mut out, 1, timestamp_ms);
    for m in metrics {
        bytes(&mut out, 2, &metric(m));
    }
    if let Some(s) = seq {
        uint(&mut out, 3, u64::from(s));
    }
    out
}

/// A cursor over protobuf fields: (field number, wire type, value or bytes).
struct Fields<'a> {
    buf: &'a [u8],
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl<'a> Fields<'a> {
    fn read_varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.buf.split_first()?;
            self.buf = rest;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn skip(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Some(a)
    }

    /// The next field; `Err` on malformed input.
    fn next_field(&mut self) -> Result<Option<(u64, Field<'a>)>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let bad = || "malformed protobuf".to_string();
        let k = self.read_varint().ok_or_else(bad)?;
        let f = match k & 7 {
            0 => Field::Varint(self.read_varint().ok_or_else(bad)?),
            1 => {
                self.skip(8).ok_or_else(bad)?;
                Field::Fixed
            }
            2 => {
                let n = usize::try_from(self.read_varint().ok_or_else(bad)?).map_err(|_| bad())?;
                Field::Bytes(self.skip(n).ok_or_else(bad)?)
            }
            5 => {
                self.skip(4).ok_or_else(bad)?;
                Field::Fixed
            }
            w => return Err(format!("unsupported protobuf wire type {w}")),
        };
        Ok(Some((k >> 3, f)))
    }
}

/// The (name, boolean value) of every metric of a payload that has both (what an NCMD
/// carries); an error for bytes that are not a protobuf message.
pub fn command_metrics(payload: &[u8]) -> Result<Vec<(String, bool)>, String> {
    let mut out = Vec::new();
    let mut p = Fields { buf: payload };
    while let Some((n, f)) = p.next_field()? {
        let (2, Field::Bytes(m)) = (n, f) else {
            continue;
        };
        let (mut name, mut value) = (None, None);
        let mut mf = Fields { buf: m };
        while let Some((n, f)) = mf.next_field()? {
            match (n, f) {
                (1, Field::Bytes(s)) => name = Some(String::from_utf8_lossy(s).into_owned()),
                (14, Field::Varint(v)) => value = Some(v != 0),
                _ => {}
            }
        }
        if let (Some(n), Some(v)) = (name, value) {
            out.push((n, v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebirth_command_reads_back() {
        let m = Metric {
            name: Some(REBIRTH.into()),
            alias: None,
            timestamp: Some(1),
            value: Value::Boolean(true),
            properties: vec![("engUnit".into(), Property::String("kW".into()))],
        };
        let p = encode(1_700_000_000_000, &[m], Some(0));
        assert_eq!(
            command_metrics(&p).unwrap(),
            vec![(REBIRTH.to_string(), true)]
        );
        assert!(command_metrics(&[0x12, 0x05, 0x01]).is_err());
        assert!(command_metrics(&[]).unwrap().is_empty());
    }

    #[test]
    fn varints_and_doubles_are_protobuf() {
        // Payload{timestamp: 300, seq: 255}: 08 ac 02 18 ff 01
        assert_eq!(
            encode(300, &[], Some(255)),
            vec![0x08, 0xAC, 0x02, 0x18, 0xFF, 0x01]
        );
        let m = Metric {
            name: None,
            alias: Some(7),
            timestamp: None,
            value: Value::Double(1.5),
            properties: vec![],
        };
        // metric: alias 7 (10 07), datatype 10 (20 0a), double 1.5 (69 + 8 bytes LE)
        let mut want = vec![0x10, 0x07, 0x20, 0x0A, 0x69];
        want.extend_from_slice(&1.5f64.to_le_bytes());
        assert_eq!(metric(&m), want);
    }
}
