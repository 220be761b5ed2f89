//! Energy and carbon accounts: from meter counters to the indicators regulators judge.
//!
//! The flow, run from the store by the accounting service of `energy-gateway run` ([`service`])
//! and on demand (`energy-gateway report`, imports), never in the acquisition path:
//!
//! ```text
//! readings (store) ─► counters ─► 15-min intervals ─► ledgers per month/quarter/year
//!   counter rules      rollover, reset,     calendar in the      gross 综合能耗 (当量/等价),
//!   + replacements     replacement, spike,  site's time zone,    feedstock, non-fossil,
//!                      gap (estimated)      TOU bands, demand    assessment = gross − both
//!                                                                 ─► carbon (scope 1/2)
//!                                                                 ─► products + grades
//!                                                                 ─► intensity vs target
//! ```
//!
//! | module | what |
//! | --- | --- |
//! | [`counters`] | counter integrity rules, steps → 15-minute intervals |
//! | [`calendar`] | periods and local buckets in the site's time zone |
//! | [`tariff`] | time-of-use calendar (尖峰平谷) |
//! | [`factors`] | the factor tables (data with sources, embedded from `config/factors/`) |
//! | [`ledger`] | plan of the accounts, energy ledgers, maximum demand |
//! | [`carbon`] | scope 1 and scope 2 CO₂ |
//! | [`certificates`] | green-certificate batches: deductible or refused (113号) |
//! | [`grades`] | unit-product energy and limit-standard grades |
//! | [`balance`] | parent meter vs Σ children |
//! | [`targets`] | intensity targets and progress |
//! | [`import`] | CSV imports and meter-replacement records |
//! | [`store`] | accounting tables in the SQLite store |
//! | [`chunks`] | counters over long periods as aggregates of months, days and hours |
//! | [`report`] | the accounts of a period: compute ([`report::build_with`]), persist, the model |
//! | [`indicators`] | green-factory and 亩均 indicators of a period's accounts |
//! | [`alert_summary`] | the alerts of a period, for its accounts |
//! | [`service`] | the accounting service of `run`: intervals closed, accounts kept and persisted |
//! | [`config`] | the `[accounting]` configuration section and its checks; [`AccountingContext`], what the accounts are computed from |

pub mod alert_summary;
pub mod balance;
pub mod calendar;
pub mod carbon;
pub mod certificates;
pub mod chunks;
pub mod config;
pub mod counters;
pub mod factors;
pub mod grades;
pub mod import;
pub mod indicators;
pub mod ledger;
pub mod metrics;
pub mod notes;
pub mod report;
pub mod service;
pub mod store;
pub mod targets;
pub mod tariff;
pub mod today;

pub use config::{AccountingConfig, AccountingContext};
