//! What an alert says to people, in the site's language (`[site] language`): the device's
//! name, the quantity's name, the value rounded for reading and its unit, against the rule's
//! limit — "压机 有功功率 140.1 kW，超过上限 135 kW". Notifications (robots, webhook `text`,
//! the log notifier) use it; the stored `message` keeps the evaluator's exact figures.

use crate::lang::Language;
use crate::readings::Quantity;

use super::config::{Condition, NotifyContext, Threshold};
use super::notify::StoredAlert;

/// A value rounded for people: whole numbers from 1000, one decimal from 10, two from 1,
/// three below, one significant digit under 0.001 (never a false 0); trailing zeros dropped:
/// 140.107546875 → "140.1", 0.93125 → "0.931", 0.0000154 → "0.00002".
pub fn round_for_people(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a > 0.0 && a < 0.001 {
        let digits = (-a.log10().floor()) as usize;
        let s = format!("{v:.digits$}");
        return s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    let digits = if a >= 1000.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// The quantity's name in `lang` (Chinese names as meters and electricity bills print them).
pub fn quantity_name(q: Quantity, lang: Language) -> String {
    let zh = match q {
        Quantity::ActivePower => "有功功率",
        Quantity::ReactivePower => "无功功率",
        Quantity::PowerFactor => "功率因数",
        Quantity::Frequency => "频率",
        Quantity::VoltageL1 => "A 相电压",
        Quantity::VoltageL2 => "B 相电压",
        Quantity::VoltageL3 => "C 相电压",
        Quantity::CurrentL1 => "A 相电流",
        Quantity::CurrentL2 => "B 相电流",
        Quantity::CurrentL3 => "C 相电流",
        Quantity::EnergyImport => "正向有功电能",
        Quantity::EnergyExport => "反向有功电能",
        Quantity::GasVolume => "燃气累计量",
        Quantity::GasFlow => "燃气流量",
        Quantity::WaterVolume => "累计水量",
        Quantity::HeatEnergy => "累计热量",
        Quantity::HeatPower => "热功率",
        Quantity::MaxDemandImport => "正向有功最大需量",
        Quantity::MeterClockOffset => "电表时钟偏差",
        Quantity::ProductionCount => "产量计数",
        _ => "",
    };
    match lang {
        Language::Zh if !zh.is_empty() => zh.to_string(),
        _ => q.as_str().replace('_', " "),
    }
}

/// A unit as people write it (m3 → m³).
fn unit_shown(u: &str) -> String {
    u.replace("m3", "m³")
}

/// The device's display name, else its id.
fn device_name(cfg: &NotifyContext, id: &str) -> String {
    cfg.device_names
        .get(id)
        .cloned()
        .unwrap_or_else(|| id.to_string())
}

/// The one-sentence description of an alert in the site's language, or `None` for the kinds
/// whose stored message already says it best (counter, imbalance).
pub fn describe(cfg: &NotifyContext, a: &StoredAlert) -> Option<String> {
    let lang = cfg.site.language;
    let rule = cfg.alerts.iter().find(|r| r.id == a.rule)?;
    let zh = lang == Language::Zh;
    let name = device_name(cfg, &a.device);
    let q: Option<Quantity> = a.quantity.parse().ok();
    let unit = q.map(|q| unit_shown(q.unit())).unwrap_or_default();
    let with_unit = |v: f64| {
        let n = round_for_people(v);
        match unit.as_str() {
            "" | "1" => n,
            u => format!("{n} {u}"),
        }
    };
    let value = a.value.map(with_unit).unwrap_or_else(|| "–".into());
    let resolved = a.state == "resolved";
    let qname = q.map(|q| quantity_name(q, lang)).unwrap_or_default();
    let s = match &rule.condition {
        Condition::Threshold(t) => {
            let (limit, word) = threshold_limit(t, a, resolved, zh);
            let sep = if zh { "，" } else { ", " };
            format!(
                "{name} {qname} {value}{sep}{word} {}",
                limit.map(with_unit).unwrap_or_default()
            )
        }
        Condition::Demand(d) => {
            let c = round_for_people(d.contracted_kw);
            match (zh, resolved) {
                (true, false) => {
                    format!("{name} 15 分钟需量预计 {value}，超过合同需量 {c} kW")
                }
                (true, true) => {
                    format!("{name} 15 分钟需量预计 {value}，已回到合同需量 {c} kW 以内")
                }
                (false, false) => {
                    format!(
                        "{name} 15-min demand projected to {value}, above the contracted {c} kW"
                    )
                }
                (false, true) => {
                    format!("{name} 15-min demand projected to {value}, back within the contracted {c} kW")
                }
            }
        }
        Condition::PowerFactor(p) => {
            let b = round_for_people(p.below);
            match (zh, resolved) {
                (true, false) => format!("{name} 功率因数平均 {value}，低于 {b}"),
                (true, true) => format!("{name} 功率因数平均 {value}，已恢复（下限 {b}）"),
                (false, false) => format!("{name} power factor averages {value}, below {b}"),
                (false, true) => format!("{name} power factor averages {value}, back above {b}"),
            }
        }
        Condition::RateOfChange(r) => {
            let max = round_for_people(r.max_rate_per_min);
            if zh {
                format!("{name} {qname} 变化 {value}/分钟，上限 {max}")
            } else {
                format!("{name} {qname} changes by {value}/min, limit {max}")
            }
        }
        Condition::Deadman(_) if resolved => {
            if zh {
                format!("{name} 恢复上报数据")
            } else {
                format!("{name} reporting again")
            }
        }
        Condition::Deadman(_) => {
            let secs = a.value.map(|v| format!("{v:.0}")).unwrap_or_default();
            if zh {
                format!("{name} 已 {secs} 秒无有效读数：仪表离线")
            } else {
                format!("{name}: no good reading for {secs} s, meter offline")
            }
        }
        Condition::Outbox(o) => {
            let v = a.value.map(round_for_people).unwrap_or_default();
            let l = round_for_people(o.fill_pct);
            if zh {
                format!("发送缓存已用 {v} %（上限 {l} %）：目的地未确认接收")
            } else {
                format!("outbox {v} % full (limit {l} %): destinations are not confirming")
            }
        }
        Condition::Intensity(_) => {
            let v = a.value.map(round_for_people).unwrap_or_default();
            if zh {
                format!("年初至今单位增加值能耗 {v} tce/万元，高于目标路径")
            } else {
                format!("year-to-date energy intensity {v} tce/10⁴ CNY, above the target path")
            }
        }
        Condition::Counter(_) | Condition::Imbalance(_) => return None,
    };
    Some(s)
}

/// The limit a threshold alert is measured against and its words: of a band (`below..above`),
/// the lower limit when the value is under it, or, when the alert clears, when it had been
/// under it (the evaluator's message says so: the value is back inside the band then).
fn threshold_limit(
    t: &Threshold,
    a: &StoredAlert,
    resolved: bool,
    zh: bool,
) -> (Option<f64>, &'static str) {
    let under = if resolved {
        a.message.contains(super::BACK_ABOVE_LOWER)
    } else {
        matches!((a.value, t.below), (Some(v), Some(b)) if v < b)
    };
    match (t.above.filter(|_| !under), t.below, resolved, zh) {
        (Some(a), _, false, true) => (Some(a), "超过上限"),
        (Some(a), _, false, false) => (Some(a), "above the limit"),
        (Some(a), _, true, true) => (Some(a), "已恢复，上限"),
        (Some(a), _, true, false) => (Some(a), "back within the limit"),
        (None, b, false, true) => (b, "低于下限"),
        (None, b, false, false) => (b, "below the limit"),
        (None, b, true, true) => (b, "已恢复，下限"),
        (None, b, true, false) => (b, "back within the limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_for_people() {
        assert_eq!(round_for_people(140.107546875), "140.1");
        assert_eq!(round_for_people(135.0), "135");
        assert_eq!(round_for_people(0.93125), "0.931");
        assert_eq!(round_for_people(1234.56), "1235");
        assert_eq!(round_for_people(2.005), "2");
        assert_eq!(round_for_people(-0.0001), "-0.0001");
        assert_eq!(round_for_people(0.0000154), "0.00002");
        assert_eq!(round_for_people(0.0), "0");
        assert_eq!(round_for_people(f64::NAN), "–");
    }

    fn cfg(lang: &str) -> NotifyContext {
        let toml = format!(
            "[site]\nid = \"p\"\nlanguage = \"{lang}\"\n\
             [[devices]]\nid = \"press\"\nname = \"压机\"\nmodel = \"eastron-sdm120\"\n[devices.modbus]\naddress = \"127.0.0.1:502\"\n\
             [[alerts]]\nid = \"press-peak\"\ndevice = \"press\"\nquantity = \"active_power\"\nabove = 135.0\n"
        );
        crate::config::load_str(&toml)
            .unwrap_or_else(|p| panic!("{p:?}"))
            .notify_context()
    }

    fn alert(state: &str) -> StoredAlert {
        StoredAlert {
            id: 1,
            ts_ms: 0,
            rule: "press-peak".into(),
            device: "press".into(),
            quantity: "active_power".into(),
            state: state.into(),
            severity: "warning".into(),
            value: Some(140.107546875),
            message: "press-peak: active_power of press is 140.107546875 kW (limit above 135)"
                .into(),
        }
    }

    #[test]
    fn threshold_alert_in_chinese_and_english() {
        assert_eq!(
            describe(&cfg("zh"), &alert("firing")).unwrap(),
            "压机 有功功率 140.1 kW，超过上限 135 kW"
        );
        assert_eq!(
            describe(&cfg("en"), &alert("firing")).unwrap(),
            "压机 active power 140.1 kW, above the limit 135 kW"
        );
        assert_eq!(
            describe(&cfg("zh"), &alert("resolved")).unwrap(),
            "压机 有功功率 140.1 kW，已恢复，上限 135 kW"
        );
    }

    /// A DL/T 645 meter's clock read against the gateway's, watched by a threshold rule.
    #[test]
    fn meter_clock_alert_in_chinese_and_english() {
        let ctx = |lang: &str| {
            let toml = format!(
                "[site]\nid = \"p\"\nlanguage = \"{lang}\"\n\
                 [[buses]]\nid = \"l\"\ntransport = \"rtu\"\nprotocol = \"dlt645-2007\"\nport = \"/dev/ttyS9\"\n\
                 [[devices]]\nid = \"main\"\nname = \"总表\"\nmodel = \"dlt645-2007-three-phase\"\n[devices.dlt645]\nbus = \"l\"\naddress = \"000012345678\"\n\
                 [[alerts]]\nid = \"clock\"\ndevice = \"main\"\nquantity = \"meter_clock_offset\"\nabove = 60.0\nbelow = -60.0\n"
            );
            crate::config::load_str(&toml)
                .unwrap_or_else(|p| panic!("{p:?}"))
                .notify_context()
        };
        let a = StoredAlert {
            rule: "clock".into(),
            device: "main".into(),
            quantity: "meter_clock_offset".into(),
            value: Some(-125.0),
            message: "clock: meter_clock_offset of main is -125 s (limit below -60)".into(),
            ..alert("firing")
        };
        // What an alert says in Chinese and in English.
        let says = |a: &StoredAlert, zh: &str, en: &str| {
            assert_eq!(describe(&ctx("zh"), a).unwrap(), zh);
            assert_eq!(describe(&ctx("en"), a).unwrap(), en);
        };
        says(
            &a,
            "总表 电表时钟偏差 -125 s，低于下限 -60 s",
            "总表 meter clock offset -125 s, below the limit -60 s",
        );
        // Back inside the band from below: the clear names the lower limit, not the upper.
        let cleared = StoredAlert {
            state: "resolved".into(),
            value: Some(-20.0),
            message: format!(
                "clock: meter_clock_offset of main is -20 s (allowed -60..60, {} -60)",
                crate::alerting::BACK_ABOVE_LOWER
            ),
            ..a.clone()
        };
        says(
            &cleared,
            "总表 电表时钟偏差 -20 s，已恢复，下限 -60 s",
            "总表 meter clock offset -20 s, back within the limit -60 s",
        );
        // From above: the upper one.
        let cleared = StoredAlert {
            message: "clock: meter_clock_offset of main is 20 s (allowed -60..60)".into(),
            value: Some(20.0),
            ..cleared
        };
        says(
            &cleared,
            "总表 电表时钟偏差 20 s，已恢复，上限 60 s",
            "总表 meter clock offset 20 s, back within the limit 60 s",
        );
    }
}
