//! Decode and plan throughput (CPU cost per value and per planned device).
//!
//!   cargo bench --bench modbus_decode

use std::hint::black_box;
use std::time::Instant;

use energy_gateway::acquisition::modbus::decode::{decode_raw, encode};
use energy_gateway::acquisition::modbus::plan::{plan_spans, Limits, Span};
use energy_gateway::acquisition::modbus::templates;
use energy_gateway::config::{RegisterKind, ValueType, WordOrder};

fn main() {
    let n = 5_000_000u32;
    for (t, order) in [
        (ValueType::U16, WordOrder::ABCD),
        (ValueType::I32, WordOrder::CDAB),
        (ValueType::F32, WordOrder::ABCD),
        (ValueType::F32, WordOrder::DCBA),
        (ValueType::U64, WordOrder::ABCD),
        (ValueType::I32F32, WordOrder::CDAB),
    ] {
        let regs = encode(1234.5, t, order);
        let start = Instant::now();
        let mut acc = 0.0;
        for _ in 0..n {
            acc += decode_raw(black_box(&regs), t, order)
                .map(|v| v.0)
                .unwrap_or(0.0);
        }
        black_box(acc);
        let el = start.elapsed();
        println!(
            "decode {t:?} {order:?}: {:.1} M values/s ({:.1} ns/value)",
            f64::from(n) / el.as_secs_f64() / 1e6,
            el.as_nanos() as f64 / f64::from(n)
        );
    }
    // Planning: every built-in template, and a 30-register device.
    let all = templates::load(None).unwrap();
    let limits = Limits {
        max_registers: 125,
        max_gap: 8,
        even: false,
    };
    let spans: Vec<Vec<Span>> = all
        .values()
        .map(|t| t.points.iter().map(Span::from).collect())
        .collect();
    let rounds = 200_000u32;
    let start = Instant::now();
    let mut blocks = 0;
    for _ in 0..rounds {
        for s in &spans {
            blocks += plan_spans(black_box(s), limits).len();
        }
    }
    black_box(blocks);
    let el = start.elapsed();
    let plans = f64::from(rounds) * spans.len() as f64;
    println!(
        "plan template devices: {:.2} M plans/s ({:.0} ns/plan)",
        plans / el.as_secs_f64() / 1e6,
        el.as_nanos() as f64 / plans
    );
    let thirty: Vec<Span> = (0..15)
        .map(|i| Span {
            kind: RegisterKind::Holding,
            register: i * 2,
            registers: 2,
        })
        .collect();
    let start = Instant::now();
    for _ in 0..rounds {
        blocks += plan_spans(black_box(&thirty), limits).len();
    }
    black_box(blocks);
    let el = start.elapsed();
    println!(
        "plan 15 x f32 (30 registers): {:.0} ns/plan",
        el.as_nanos() as f64 / f64::from(rounds)
    );
}
