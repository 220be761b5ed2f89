//! OPC UA values → readings: node ids, numbers, status codes and timestamps.
//!
//! A value is stamped with the server's SOURCE timestamp (when the PLC or device sampled it).
//! Without one, the server timestamp is used, and without that the receive time; both fallbacks
//! are flagged (quality `estimated`, the reason says which time was used). A status that is not
//! good makes a bad reading (no value); `Uncertain…` makes an estimated one.

use std::str::FromStr;

use opcua_types::{DataValue, DateTime, NodeId, StatusCode, Variant};

use super::config::NodeConfig;
use crate::readings::{Quality, Reading, TimestampMs};

/// Reason given when the server sent no source timestamp.
pub const SERVER_TIME: &str = "opcua: no source timestamp, server timestamp used";
/// Reason given when the server sent neither a source nor a server timestamp.
pub const RECEIVE_TIME: &str = "opcua: no source or server timestamp, receive time used";

/// A node id in the standard text form (`ns=2;s=Line1.Pieces`, `ns=3;i=1001`, `i=2258`,
/// `ns=2;g=…`, `ns=2;b=…`).
pub fn parse_node_id(s: &str) -> Result<NodeId, String> {
    NodeId::from_str(s.trim()).map_err(|_| {
        format!(
            "\"{s}\" is not an OPC UA node id (e.g. \"ns=2;s=Line1.Pieces\" or \"ns=3;i=1001\")"
        )
    })
}

fn ms(t: &Option<DateTime>) -> Option<TimestampMs> {
    t.as_ref()
        .filter(|d| !d.is_null())
        .map(|d| d.as_chrono().timestamp_millis())
}

/// A number from a variant: integers, floats and booleans (0/1).
pub fn number(v: &Variant) -> Result<f64, String> {
    match v {
        Variant::Boolean(b) => Ok(if *b { 1.0 } else { 0.0 }),
        Variant::Empty => Err("no value".into()),
        other => other
            .as_f64()
            .ok_or_else(|| format!("not a number ({:?})", other.type_id())),
    }
}

/// The reading for one value of one node. `received_ms` is the local receive time.
pub fn reading(
    device: &str,
    node: &NodeConfig,
    dv: &DataValue,
    received_ms: TimestampMs,
) -> Reading {
    let (ts_ms, time_note) = match (ms(&dv.source_timestamp), ms(&dv.server_timestamp)) {
        (Some(t), _) => (t, None),
        (None, Some(t)) => (t, Some(SERVER_TIME)),
        (None, None) => (received_ms, Some(RECEIVE_TIME)),
    };
    let status = dv.status.unwrap_or(StatusCode::Good);
    if status.is_bad() {
        return Reading::bad(
            device,
            node.quantity,
            ts_ms,
            format!("opcua status {status} ({})", node.node),
        );
    }
    let value = match dv.value.as_ref().map(number) {
        Some(Ok(v)) => v * node.scale + node.offset,
        Some(Err(e)) => {
            return Reading::bad(
                device,
                node.quantity,
                ts_ms,
                format!("opcua {}: {e}", node.node),
            )
        }
        None => {
            return Reading::bad(
                device,
                node.quantity,
                ts_ms,
                format!("opcua {}: no value", node.node),
            )
        }
    };
    let mut r = Reading::new(device, node.quantity, value, ts_ms);
    if r.quality == Quality::Good {
        let mut notes: Vec<String> = Vec::new();
        if status.is_uncertain() {
            notes.push(format!("opcua status {status}"));
        }
        if let Some(n) = time_note {
            notes.push(n.to_string());
        }
        if !notes.is_empty() {
            r.quality = Quality::Estimated(notes.join("; "));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readings::Quantity;

    fn node(scale: f64) -> NodeConfig {
        NodeConfig {
            node: "ns=2;s=Line1.Pieces".into(),
            quantity: Quantity::ProductionCount,
            scale,
            offset: 0.0,
        }
    }

    fn at(ms: i64) -> Option<DateTime> {
        Some(DateTime::from(
            chrono::DateTime::from_timestamp_millis(ms).unwrap(),
        ))
    }

    #[test]
    fn node_ids_parse_or_say_why() {
        assert!(parse_node_id("ns=2;s=Line1.Pieces").is_ok());
        assert!(parse_node_id("ns=3;i=1001").is_ok());
        assert!(parse_node_id("i=2258").is_ok());
        let e = parse_node_id("Line1.Pieces").unwrap_err();
        assert!(e.contains("ns=2;s="), "{e}");
    }

    #[test]
    fn source_timestamp_wins_then_server_then_receive_time() {
        let mut dv = DataValue {
            value: Some(Variant::UInt32(42)),
            status: Some(StatusCode::Good),
            source_timestamp: at(1_700_000_000_123),
            server_timestamp: at(1_700_000_005_000),
            ..Default::default()
        };
        let r = reading("line1", &node(2.0), &dv, 9);
        assert_eq!(r.ts_ms, 1_700_000_000_123);
        assert_eq!(r.value, Some(84.0));
        assert_eq!(r.quality, Quality::Good);

        dv.source_timestamp = None;
        let r = reading("line1", &node(1.0), &dv, 9);
        assert_eq!(r.ts_ms, 1_700_000_005_000);
        assert_eq!(r.quality, Quality::Estimated(SERVER_TIME.into()));
        assert_eq!(r.good_value(), Some(42.0));

        dv.server_timestamp = None;
        let r = reading("line1", &node(1.0), &dv, 9);
        assert_eq!(r.ts_ms, 9);
        assert_eq!(r.quality, Quality::Estimated(RECEIVE_TIME.into()));
    }

    #[test]
    fn bad_status_and_non_numbers_are_bad_readings() {
        let dv = DataValue {
            value: Some(Variant::Double(1.0)),
            status: Some(StatusCode::BadSensorFailure),
            source_timestamp: at(1_000),
            ..Default::default()
        };
        let r = reading("line1", &node(1.0), &dv, 9);
        assert_eq!(r.value, None);
        assert!(
            r.quality.reason().unwrap().contains("BadSensorFailure"),
            "{:?}",
            r.quality
        );
        assert_eq!(r.ts_ms, 1_000);

        let dv = DataValue {
            value: Some(Variant::from("line 1")),
            source_timestamp: at(1_000),
            ..Default::default()
        };
        let r = reading("line1", &node(1.0), &dv, 9);
        assert_eq!(r.quality.as_str(), "bad");
        assert!(r.quality.reason().unwrap().contains("not a number"));

        let dv = DataValue {
            value: Some(Variant::Boolean(true)),
            status: Some(StatusCode::UncertainLastUsableValue),
            source_timestamp: at(1_000),
            ..Default::default()
        };
        let r = reading("line1", &node(1.0), &dv, 9);
        assert_eq!(r.good_value(), Some(1.0));
        assert_eq!(r.quality.as_str(), "estimated");
    }
}
