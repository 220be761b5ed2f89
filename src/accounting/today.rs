//! Today's energy and tce, from local midnight to now: what the live page and
//! `/api/v1/status` show, computed by the accounting service (never by a request).

use serde::Serialize;

use super::calendar::{local_midnight_ms, month_of};
use super::chunks::{period_data, ChunkCache};
use super::config::AccountingContext;
use super::ledger::{ledger, Inputs, Plan};
use super::store::AccountingStore;
use crate::readings::Quantity;
use crate::storage::config::Synchronous;
use crate::storage::Store;

/// Energy used today (site time zone), from midnight to now.
#[derive(Debug, Clone, Serialize)]
pub struct Today {
    /// Local date, `YYYY-MM-DD`.
    pub date: String,
    /// Energy imported by the main meters (`[site] main_meters`, counter `energy_import`).
    pub energy_kwh: Option<f64>,
    /// Gross comprehensive energy consumption (equivalent value) of every accounted carrier,
    /// from the meters only (manual consumption is monthly).
    pub tce: Option<f64>,
    /// Electricity consumed according to the accounts (purchase + generation − export).
    pub electricity_kwh: Option<f64>,
    /// Every accounted carrier today: its consumed quantity in its own unit and its tce
    /// (equivalent value), as the accounts count them.
    pub carriers: Vec<TodayCarrier>,
    /// RFC 3339 time of the computation.
    pub computed_at: String,
}

/// One carrier of [`Today`].
#[derive(Debug, Clone, Serialize)]
pub struct TodayCarrier {
    /// Carrier id (`electricity`, `natural_gas`, `water`, ...).
    pub carrier: String,
    /// The factor table's name of the carrier.
    pub name: String,
    pub quantity: f64,
    pub unit: String,
    pub tce: f64,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Today's figures, from midnight (site time zone) to now. With the accounting service's
/// chunks, only the hour in progress is read from the store.
pub fn compute_today(
    cfg: &AccountingContext,
    cache: Option<&mut ChunkCache>,
) -> anyhow::Result<Today> {
    let tz: chrono_tz::Tz = cfg
        .site
        .timezone
        .parse()
        .map_err(|_| anyhow::anyhow!("site.timezone is not a time zone"))?;
    let now = chrono::Utc::now();
    let now_ms = now.timestamp_millis();
    let date = now.with_timezone(&tz).date_naive();
    let midnight = local_midnight_ms(tz, date);

    let store = Store::open(&cfg.store_path(), Synchronous::Normal)?;
    let mut energy = None;
    for m in &cfg.site.main_meters {
        let first = store.first_good_since(m, Quantity::EnergyImport, midnight)?;
        let last = store.latest_good(m, Quantity::EnergyImport)?;
        if let (Some(a), Some(b)) = (first, last) {
            *energy.get_or_insert(0.0) += (b.1 - a.1).max(0.0);
        }
    }
    drop(store);

    let plan = Plan::build(cfg)?;
    let mut acc = AccountingStore::open(&cfg.store_path())?;
    let data = period_data(&plan, &mut acc, midnight, now_ms + 1, cache, false)?;
    // The ledger of this month over data that covers only today is today's ledger. Manual
    // consumption is monthly and so left out (`Inputs::default()`).
    let l = ledger(&plan, &data, &Inputs::default(), &[month_of(tz, now_ms)]);
    let measured = !plan.meters.is_empty();
    Ok(Today {
        date: date.format("%Y-%m-%d").to_string(),
        energy_kwh: energy,
        tce: measured.then_some(l.gross_tce),
        electricity_kwh: measured.then_some(l.electricity.consumed_kwh),
        carriers: l
            .carriers
            .iter()
            .map(|c| TodayCarrier {
                carrier: c.carrier.clone(),
                name: c.factor.name.clone(),
                quantity: c.quantity,
                unit: c.unit.clone(),
                tce: c.tce,
            })
            .collect(),
        computed_at: now_rfc3339(),
    })
}
