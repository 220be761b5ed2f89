//! The gateway's other series, delivered to every InfluxDB destination after its readings:
//!
//! | measurement | source (store table) | tags | fields | timestamp |
//! | --- | --- | --- | --- | --- |
//! | `alert` | `alert_events` (every transition) | `site`, `park`, `rule`, `device`, `quantity` (when not empty), `severity`, `state` | `value` (float, when known), `message` (string) | `ts_ms` |
//! | `energy_interval` | `energy_intervals` (accounting) | `site`, `park`, `device`, `quantity`, `unit`, `carrier`, `resolution` | `value` (float), `quality` (string) | interval start |
//! | `energy_account` | `accounts` (accounting) | `site`, `park`, `period`, `kind`, `product` (product fields only) | the account field (float); product fields `product.<id>.<f>` are written as `<f>` on the product's point, with the string `unit` next to `output` | period start |
//!
//! `energy_account` is the schema of the park report ([`crate::reporting::park`]): it is written
//! with exactly those tag names, without the destination's tag mapping, so the park report can
//! read what gateways write. `alert` and `energy_interval` follow the destination's mapping of
//! the standard tags (`rename_tags`, `drop_tags`, static `tags`).
//!
//! Each stream has its own cursor per destination in the table `influx_stream_cursors` (kept
//! apart from the reading cursors, which bound pruning and reading ids): the alert id, or
//! (`rev`, id) for the accounting tables, whose rows get a new `rev` whenever they change, so a
//! changed row is sent again. A cursor advances only after its batch was confirmed (2xx) or
//! quarantined. Replays overwrite: a point's series and timestamp depend only on its row.

use std::path::Path;
use std::sync::Arc;

use crate::storage::feeds::FeedStore;

use super::line_protocol::{self, EncodeError, FieldValue, Precision};
use super::schema::TagMapping;

/// One of the series delivered besides readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Alert,
    EnergyInterval,
    EnergyAccount,
}

impl Stream {
    pub const ALL: [Stream; 3] = [Stream::Alert, Stream::EnergyInterval, Stream::EnergyAccount];

    /// The measurement (also the stream's name in cursors and quarantine destinations).
    pub fn measurement(self) -> &'static str {
        match self {
            Stream::Alert => "alert",
            Stream::EnergyInterval => "energy_interval",
            Stream::EnergyAccount => "energy_account",
        }
    }
}

/// Position of a stream's cursor: (`rev`, id); `rev` is 0 for alerts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub rev: i64,
    pub id: i64,
}

/// One row of a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Alert {
        id: i64,
        ts_ms: i64,
        rule: String,
        device: String,
        quantity: String,
        state: String,
        severity: String,
        value: Option<f64>,
        message: String,
    },
    Interval {
        id: i64,
        rev: i64,
        device: String,
        quantity: String,
        carrier: String,
        unit: String,
        resolution: String,
        start_ms: i64,
        value: f64,
        quality: String,
    },
    Account {
        id: i64,
        rev: i64,
        period: String,
        kind: String,
        start_ms: i64,
        field: String,
        value: f64,
        unit: String,
    },
}

impl Row {
    pub fn position(&self) -> Position {
        match self {
            Row::Alert { id, .. } => Position { rev: 0, id: *id },
            Row::Interval { id, rev, .. } | Row::Account { id, rev, .. } => {
                Position { rev: *rev, id: *id }
            }
        }
    }

    /// Short description for the quarantine when the row cannot be encoded.
    pub fn describe(&self) -> String {
        format!("{self:?}")
    }
}

/// Encodes one row as a complete line (with its newline); on error nothing is appended.
/// `site` holds the `site` and (when configured) `park` tags.
pub fn push_row(
    out: &mut String,
    row: &Row,
    site: &[(&str, &str)],
    mapping: &TagMapping,
    precision: Precision,
) -> Result<(), EncodeError> {
    match row {
        Row::Alert {
            ts_ms,
            rule,
            device,
            quantity,
            state,
            severity,
            value,
            message,
            ..
        } => {
            let mut standard = site.to_vec();
            standard.push(("device", device.as_str()));
            standard.push(("quantity", quantity.as_str()));
            let own = [
                ("rule", rule.as_str()),
                ("severity", severity.as_str()),
                ("state", state.as_str()),
            ];
            let series = mapping.series_key_in("alert", &standard, &own)?;
            let mut fields = Vec::with_capacity(2);
            if let Some(v) = value.filter(|v| v.is_finite()) {
                fields.push(("value", FieldValue::Float(v)));
            }
            fields.push(("message", FieldValue::Str(message)));
            line_protocol::push_line(out, &series, &fields, *ts_ms, precision)
        }
        Row::Interval {
            device,
            quantity,
            carrier,
            unit,
            resolution,
            start_ms,
            value,
            quality,
            ..
        } => {
            let mut standard = site.to_vec();
            standard.extend([
                ("device", device.as_str()),
                ("quantity", quantity.as_str()),
                ("unit", unit.as_str()),
                ("carrier", carrier.as_str()),
            ]);
            let series = mapping.series_key_in(
                "energy_interval",
                &standard,
                &[("resolution", resolution.as_str())],
            )?;
            line_protocol::push_line(
                out,
                &series,
                &[
                    ("value", FieldValue::Float(*value)),
                    ("quality", FieldValue::Str(quality)),
                ],
                *start_ms,
                precision,
            )
        }
        Row::Account {
            period,
            kind,
            start_ms,
            field,
            value,
            unit,
            ..
        } => {
            // The park report's schema, tag names as they are.
            let mut tags = site.to_vec();
            tags.push(("period", period));
            tags.push(("kind", kind));
            let product = field
                .strip_prefix("product.")
                .and_then(|rest| rest.rsplit_once('.'));
            let name = match product {
                Some((p, f)) => {
                    tags.push(("product", p));
                    f
                }
                None => field.as_str(),
            };
            let series = line_protocol::series_key(Stream::EnergyAccount.measurement(), &tags)?;
            let mut fields = vec![(name, FieldValue::Float(*value))];
            if product.is_some() && name == "output" && !unit.is_empty() {
                fields.push(("unit", FieldValue::Str(unit)));
            }
            line_protocol::push_line(out, &series, &fields, *start_ms, precision)
        }
    }
}

/// The stream tables and cursors, on a connection of its own.
#[derive(Clone)]
pub struct StreamStore {
    db: FeedStore,
}

impl StreamStore {
    /// Opens the store at `path`.
    pub fn open(path: &Path) -> crate::storage::Result<StreamStore> {
        Ok(StreamStore {
            db: FeedStore::open(path)?,
        })
    }

    /// The confirmed position of `destination` in `stream`.
    pub fn cursor(&self, destination: &str, stream: Stream) -> crate::storage::Result<Position> {
        let (rev, id) = self.db.stream_cursor(destination, stream.measurement())?;
        Ok(Position { rev, id })
    }

    /// Moves the cursor forward to `to` (never backwards).
    pub fn advance(
        &self,
        destination: &str,
        stream: Stream,
        to: Position,
    ) -> crate::storage::Result<()> {
        self.db
            .advance_stream_cursor(destination, stream.measurement(), to.rev, to.id)
    }

    /// Up to `limit` rows of `stream` after `after`, in cursor order.
    pub fn rows_after(
        &self,
        stream: Stream,
        after: Position,
        limit: usize,
    ) -> crate::storage::Result<Vec<Row>> {
        Ok(match stream {
            Stream::Alert => self
                .db
                .alerts_after(after.id, limit, true)?
                .into_iter()
                .map(|a| Row::Alert {
                    id: a.id,
                    ts_ms: a.ts_ms,
                    rule: a.rule,
                    device: a.device,
                    quantity: a.quantity,
                    state: a.state,
                    severity: a.severity,
                    value: a.value,
                    message: a.message,
                })
                .collect(),
            Stream::EnergyInterval => self
                .db
                .intervals_after(after.rev, after.id, limit)?
                .into_iter()
                .map(|r| Row::Interval {
                    id: r.id,
                    rev: r.rev,
                    device: r.device,
                    quantity: r.quantity,
                    carrier: r.carrier,
                    unit: r.unit,
                    resolution: r.resolution,
                    start_ms: r.start_ms,
                    value: r.value,
                    quality: r.quality,
                })
                .collect(),
            Stream::EnergyAccount => self
                .db
                .accounts_after(after.rev, after.id, limit)?
                .into_iter()
                .map(|r| Row::Account {
                    id: r.id,
                    rev: r.rev,
                    period: r.period,
                    kind: r.kind,
                    start_ms: r.start_ms,
                    field: r.field,
                    value: r.value,
                    unit: r.unit,
                })
                .collect(),
        })
    }
}

/// One stream of one destination as a feed of the store's delivery consumer (the three
/// streams of a destination share a connection).
#[derive(Clone)]
pub struct StreamFeed {
    store: StreamStore,
    destination: Arc<str>,
    stream: Stream,
}

impl StreamFeed {
    /// The feeds of every stream of `destination`, in [`Stream::ALL`] order.
    pub fn open_all(path: &Path, destination: &str) -> crate::storage::Result<Vec<StreamFeed>> {
        let store = StreamStore::open(path)?;
        Ok(Stream::ALL
            .iter()
            .map(|&stream| StreamFeed {
                store: store.clone(),
                destination: destination.into(),
                stream,
            })
            .collect())
    }

    pub fn stream(&self) -> Stream {
        self.stream
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&StreamStore) -> crate::storage::Result<T>,
    ) -> anyhow::Result<T> {
        Ok(f(&self.store)?)
    }
}

impl crate::storage::consumer::Feed for StreamFeed {
    type Item = Row;
    type Pos = Position;

    fn load_cursor(&self) -> anyhow::Result<Position> {
        self.with(|s| s.cursor(&self.destination, self.stream))
    }

    fn read_after(&self, after: Position, limit: usize) -> anyhow::Result<Vec<Row>> {
        self.with(|s| s.rows_after(self.stream, after, limit))
    }

    fn store_cursor(&self, to: Position) -> anyhow::Result<()> {
        self.with(|s| s.advance(&self.destination, self.stream, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(extra: &str) -> TagMapping {
        let toml = format!(
            "[site]\nid = \"s\"\n[outputs.influxdb.o]\nurl = \"http://127.0.0.1:1\"\ndatabase = \"d\"\n{extra}"
        );
        TagMapping::new(&crate::config::load_str(&toml).unwrap().outputs.influxdb["o"])
    }

    fn line(row: &Row, m: &TagMapping) -> String {
        let mut out = String::new();
        push_row(
            &mut out,
            row,
            &[("site", "plant-a"), ("park", "park-1")],
            m,
            Precision::Ms,
        )
        .unwrap();
        out
    }

    #[test]
    fn alert_lines_follow_the_tag_mapping() {
        let row = Row::Alert {
            id: 7,
            ts_ms: 1_700_000_000_000,
            rule: "press-peak".into(),
            device: "press".into(),
            quantity: "active_power".into(),
            state: "firing".into(),
            severity: "critical".into(),
            value: Some(150.0),
            message: "power \"high\"".into(),
        };
        assert_eq!(
            line(&row, &mapping("")),
            "alert,device=press,park=park-1,quantity=active_power,rule=press-peak,severity=critical,site=plant-a,state=firing value=150.0,message=\"power \\\"high\\\"\" 1700000000000\n"
        );
        // Renamed and dropped standard tags, static tags; a static tag cannot replace `rule`.
        let m = mapping(
            "tags = { region = \"west\", rule = \"x\" }\nrename_tags = { device = \"meter\" }\ndrop_tags = [\"park\"]\n",
        );
        let deadman = Row::Alert {
            id: 8,
            ts_ms: 1_700_000_000_000,
            rule: "offline".into(),
            device: "press".into(),
            quantity: String::new(),
            state: "resolved".into(),
            severity: "warning".into(),
            value: None,
            message: "back".into(),
        };
        assert_eq!(
            line(&deadman, &m),
            "alert,meter=press,region=west,rule=offline,severity=warning,site=plant-a,state=resolved message=\"back\" 1700000000000\n"
        );
    }

    #[test]
    fn interval_and_account_lines() {
        let row = Row::Interval {
            id: 1,
            rev: 3,
            device: "main".into(),
            quantity: "energy_import".into(),
            carrier: "electricity".into(),
            unit: "kWh".into(),
            resolution: "15m".into(),
            start_ms: 1_000,
            value: 12.5,
            quality: "measured".into(),
        };
        assert_eq!(
            line(&row, &mapping("")),
            "energy_interval,carrier=electricity,device=main,park=park-1,quantity=energy_import,resolution=15m,site=plant-a,unit=kWh value=12.5,quality=\"measured\" 1000\n"
        );
        // The account schema is the park report's, whatever the mapping says.
        let m = mapping("tags = { region = \"west\" }\nrename_tags = { site = \"factory\" }\n");
        let site = Row::Account {
            id: 2,
            rev: 3,
            period: "2026-01".into(),
            kind: "month".into(),
            start_ms: 5_000,
            field: "comprehensive_energy_tce".into(),
            value: 10.0,
            unit: "tce".into(),
        };
        assert_eq!(
            line(&site, &m),
            "energy_account,kind=month,park=park-1,period=2026-01,site=plant-a comprehensive_energy_tce=10.0 5000\n"
        );
        let product = Row::Account {
            id: 3,
            rev: 3,
            period: "2026-01".into(),
            kind: "month".into(),
            start_ms: 5_000,
            field: "product.steel.bar.output".into(),
            value: 100.0,
            unit: "t".into(),
        };
        assert_eq!(
            line(&product, &m),
            "energy_account,kind=month,park=park-1,period=2026-01,product=steel.bar,site=plant-a output=100.0,unit=\"t\" 5000\n"
        );
    }

    #[test]
    fn cursors_move_forward_by_rev_then_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite");
        let s = StreamStore::open(&path).unwrap();
        // No accounts yet: nothing to send.
        assert!(s
            .rows_after(Stream::EnergyAccount, Position::default(), 10)
            .unwrap()
            .is_empty());
        // Rows as accounting writes them: a and b at revision 1 (ids 1, 2), c at 2 (id 3).
        let mut acc = crate::storage::accounts::AccountsStore::open(&path).unwrap();
        let row = |field: &str, value: f64| crate::storage::accounts::AccountRow {
            period: "p".into(),
            kind: "month",
            start_ms: 0,
            end_ms: 1,
            field: field.into(),
            value,
            unit: "u".into(),
        };
        let first = [row("a", 1.0), row("b", 2.0)];
        assert_eq!(acc.write_outputs(&[], &first, &[]).unwrap(), 1);
        let second = [row("a", 1.0), row("b", 2.0), row("c", 3.0)];
        assert_eq!(acc.write_outputs(&[], &second, &[]).unwrap(), 2);
        let ids = |after: Position| -> Vec<i64> {
            s.rows_after(Stream::EnergyAccount, after, 2)
                .unwrap()
                .iter()
                .map(|r| r.position().id)
                .collect()
        };
        assert_eq!(ids(Position::default()), vec![1, 2]);
        s.advance("d", Stream::EnergyAccount, Position { rev: 1, id: 2 })
            .unwrap();
        let c = s.cursor("d", Stream::EnergyAccount).unwrap();
        assert_eq!(ids(c), vec![3]);
        // A changed row gets a new rev and is sent again.
        assert_eq!(acc.write_outputs(&[], &[row("a", 9.0)], &[]).unwrap(), 3);
        s.advance("d", Stream::EnergyAccount, Position { rev: 2, id: 3 })
            .unwrap();
        assert_eq!(ids(s.cursor("d", Stream::EnergyAccount).unwrap()), vec![1]);
        // Never backwards; other destinations and streams are apart.
        s.advance("d", Stream::EnergyAccount, Position { rev: 1, id: 9 })
            .unwrap();
        assert_eq!(
            s.cursor("d", Stream::EnergyAccount).unwrap(),
            Position { rev: 2, id: 3 }
        );
        assert_eq!(
            s.cursor("e", Stream::EnergyAccount).unwrap(),
            Position::default()
        );
        assert_eq!(s.cursor("d", Stream::Alert).unwrap(), Position::default());
    }
}
