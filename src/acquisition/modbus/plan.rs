//! Request planning: merge the configured points of one device into as few read requests as
//! the device's limits allow.

use crate::acquisition::config::{PointConfig, RegisterKind};

/// One read request and the points decoded from its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub kind: RegisterKind,
    pub start: u16,
    pub count: u16,
    /// Indexes into the device's point list.
    pub points: Vec<usize>,
}

/// The register span of one value to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub kind: RegisterKind,
    pub register: u16,
    pub registers: u16,
}

impl From<&PointConfig> for Span {
    fn from(p: &PointConfig) -> Self {
        Span {
            kind: p.kind,
            register: p.register,
            registers: p.value_type.registers(),
        }
    }
}

/// Limits of one device for planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most registers per request (1..=125).
    pub max_registers: u16,
    /// Longest hole of unconfigured registers a request may read across.
    pub max_gap: u16,
    /// Requests must ask for an even number of registers.
    pub even: bool,
}

/// Plans the points of one device; see [`plan_spans`].
pub fn plan(points: &[PointConfig], limits: Limits) -> Vec<Block> {
    let spans: Vec<Span> = points.iter().map(Span::from).collect();
    plan_spans(&spans, limits)
}

/// Greedy merge over spans sorted by table and address: a span joins the current block when it
/// is in the same table, the block stays within `max_registers`, and the hole between them is at
/// most `max_gap` registers. Overlapping spans share registers. With `even`, a block of odd
/// length is extended by one register (the limit is then taken as the largest even number
/// within it). Greedy is optimal here: blocks are runs of consecutive sorted spans, and taking
/// each run as long as allowed never needs more runs than any other split.
pub fn plan_spans(spans: &[Span], limits: Limits) -> Vec<Block> {
    plan_spans_around(spans, limits, &[])
}

/// Whether two spans share a register.
pub fn overlaps(a: &Span, b: &Span) -> bool {
    let (a0, a1) = (
        u32::from(a.register),
        u32::from(a.register) + u32::from(a.registers),
    );
    let (b0, b1) = (
        u32::from(b.register),
        u32::from(b.register) + u32::from(b.registers),
    );
    a.kind == b.kind && a0 < b1 && b0 < a1
}

/// Like [`plan_spans`], around registers the device refused (Modbus exception 2, illegal data
/// address): a span touching an `excluded` register is left out of every request, and no request
/// reads across an excluded register (not through a hole, not as padding for an even length).
pub fn plan_spans_around(spans: &[Span], limits: Limits, excluded: &[Span]) -> Vec<Block> {
    let hits = |kind: RegisterKind, from: u32, to: u32| {
        excluded.iter().any(|x| {
            let (x0, x1) = (
                u32::from(x.register),
                u32::from(x.register) + u32::from(x.registers),
            );
            x.kind == kind && x0 < to && from < x1
        })
    };
    let max_registers = if limits.even {
        (limits.max_registers & !1).max(2)
    } else {
        limits.max_registers.max(1)
    };
    let max_gap = u32::from(limits.max_gap);
    let mut order: Vec<usize> = (0..spans.len())
        .filter(|&i| !excluded.iter().any(|x| overlaps(x, &spans[i])))
        .collect();
    order.sort_by_key(|&i| (spans[i].kind, spans[i].register));
    // Overlapping spans (say bit fields of one register) must come from one request: group them
    // into clusters first, then merge clusters. A request never overlaps another unless a single
    // cluster is longer than the limit.
    let mut clusters: Vec<Block> = Vec::new();
    for i in order {
        let p = &spans[i];
        let start = u32::from(p.register);
        let end = start + u32::from(p.registers); // exclusive
        if let Some(c) = clusters.last_mut() {
            let c_end = u32::from(c.start) + u32::from(c.count);
            if c.kind == p.kind && start < c_end {
                c.count = (end.max(c_end) - u32::from(c.start)) as u16;
                c.points.push(i);
                continue;
            }
        }
        clusters.push(Block {
            kind: p.kind,
            start: p.register,
            count: (end - start) as u16,
            points: vec![i],
        });
    }
    let mut blocks: Vec<Block> = Vec::new();
    for c in clusters {
        let start = u32::from(c.start);
        let end = start + u32::from(c.count);
        if let Some(b) = blocks.last_mut() {
            let b_end = u32::from(b.start) + u32::from(b.count);
            let fits = b.kind == c.kind
                && start <= b_end + max_gap
                && end.max(b_end) - u32::from(b.start) <= u32::from(max_registers)
                && !hits(c.kind, u32::from(b.start), end.max(b_end));
            if fits {
                b.count = (end.max(b_end) - u32::from(b.start)) as u16;
                b.points.extend(c.points);
                continue;
            }
        }
        if u32::from(c.count) > u32::from(max_registers) {
            // A cluster longer than a request: split it, each span whole in one request.
            let mut sub: Vec<Block> = Vec::new();
            for i in c.points {
                let p = &spans[i];
                let (ps, pe) = (
                    u32::from(p.register),
                    u32::from(p.register) + u32::from(p.registers),
                );
                match sub.last_mut() {
                    Some(b)
                        if pe.max(u32::from(b.start) + u32::from(b.count)) - u32::from(b.start)
                            <= u32::from(max_registers) =>
                    {
                        b.count = (pe.max(u32::from(b.start) + u32::from(b.count))
                            - u32::from(b.start)) as u16;
                        b.points.push(i);
                    }
                    _ => sub.push(Block {
                        kind: p.kind,
                        start: p.register,
                        count: (pe - ps) as u16,
                        points: vec![i],
                    }),
                }
            }
            blocks.extend(sub);
            continue;
        }
        blocks.push(c);
    }
    if limits.even {
        for b in &mut blocks {
            if b.count % 2 == 0 {
                continue;
            }
            let end = u32::from(b.start) + u32::from(b.count);
            if end <= u32::from(u16::MAX) && !hits(b.kind, end, end + 1) {
                b.count += 1;
            } else if !excluded.is_empty()
                && b.start > 0
                && !hits(b.kind, u32::from(b.start) - 1, u32::from(b.start))
            {
                // The register after is refused: pad in front instead.
                b.start -= 1;
                b.count += 1;
            }
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::acquisition::config::{ValueType, WordOrder};
    use crate::readings::Quantity;

    fn lim(max_registers: u16, max_gap: u16) -> Limits {
        Limits {
            max_registers,
            max_gap,
            even: false,
        }
    }

    fn pt(register: u16, value_type: ValueType, kind: RegisterKind) -> PointConfig {
        PointConfig {
            quantity: Quantity::ActivePower,
            register,
            kind,
            value_type,
            order: WordOrder::ABCD,
            scale: 1.0,
            offset: 0.0,
            interval: None,
            bit: None,
            not_available: vec![],
            multiply_by: vec![],
        }
    }

    /// A register list as the property test generates it.
    fn spans_strategy() -> impl Strategy<Value = Vec<Span>> {
        prop::collection::vec(
            (
                any::<bool>(),
                0u16..400,
                prop::sample::select(vec![1u16, 2, 4]),
            ),
            1..40,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(input, register, registers)| Span {
                    kind: if input {
                        RegisterKind::Input
                    } else {
                        RegisterKind::Holding
                    },
                    register,
                    registers,
                })
                .collect()
        })
    }

    /// The reference greedy merge the planner must never do worse than: one request per run of
    /// spans that are adjacent or overlapping (no hole), each run cut at max_registers.
    fn naive_greedy(spans: &[Span], max_registers: u16) -> usize {
        let mut sorted = spans.to_vec();
        sorted.sort_by_key(|s| (s.kind, s.register));
        let mut n = 0;
        let mut cur: Option<(RegisterKind, u32, u32)> = None;
        for s in sorted {
            let (a, b) = (
                u32::from(s.register),
                u32::from(s.register) + u32::from(s.registers),
            );
            match cur {
                Some((k, start, end))
                    if k == s.kind
                        && a <= end
                        && b.max(end) - start <= u32::from(max_registers) =>
                {
                    cur = Some((k, start, b.max(end)));
                }
                _ => {
                    n += 1;
                    cur = Some((s.kind, a, b));
                }
            }
        }
        n
    }

    /// Each value of `b` lies within it and in its table; counts it in `seen`.
    fn within(b: &Block, spans: &[Span], seen: &mut [usize]) -> Result<(), TestCaseError> {
        for &i in &b.points {
            seen[i] += 1;
            let s = spans[i];
            prop_assert_eq!(s.kind, b.kind);
            prop_assert!(s.register >= b.start);
            prop_assert!(
                u32::from(s.register) + u32::from(s.registers)
                    <= u32::from(b.start) + u32::from(b.count)
            );
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn planner_properties(spans in spans_strategy(), max_registers in 4u16..=125, max_gap in 0u16..20, even in any::<bool>()) {
            let limits = Limits { max_registers, max_gap, even };
            let blocks = plan_spans(&spans, limits);
            let mut seen = vec![0; spans.len()];
            for b in &blocks {
                prop_assert!(b.count <= max_registers, "{b:?} over the limit {max_registers}");
                if even {
                    prop_assert_eq!(b.count % 2, 0);
                }
                within(b, &spans, &mut seen)?;
            }
            // every configured register is covered by exactly one request
            prop_assert!(seen.iter().all(|&n| n == 1), "{:?}", seen);
            // requests of one table never overlap (padding for even reads may add one register),
            // unless overlapping values chain into a run longer than one request may be
            let longest_cluster = {
                let mut sorted = spans.clone();
                sorted.sort_by_key(|s| (s.kind, s.register));
                let mut longest = 0u32;
                let mut cur: Option<(RegisterKind, u32, u32)> = None;
                for s in sorted {
                    let (a, b) = (u32::from(s.register), u32::from(s.register) + u32::from(s.registers));
                    cur = match cur {
                        Some((k, st, e)) if k == s.kind && a < e => Some((k, st, e.max(b))),
                        _ => Some((s.kind, a, b)),
                    };
                    if let Some((_, st, e)) = cur {
                        longest = longest.max(e - st);
                    }
                }
                longest
            };
            let no_overlap_expected = !even && longest_cluster <= u32::from(max_registers);
            for (x, a) in blocks.iter().enumerate().filter(|_| no_overlap_expected) {
                for b in &blocks[x + 1..] {
                    if a.kind == b.kind {
                        prop_assert!(a.start + a.count <= b.start || b.start + b.count <= a.start, "{a:?} overlaps {b:?}");
                    }
                }
            }
            if !even {
                prop_assert!(blocks.len() <= naive_greedy(&spans, max_registers));
            }
        }
    }

    proptest! {
        /// Registers a device refused are never asked for again: no request covers one (not
        /// through a hole, not as even padding), a value touching one is left out, every other
        /// value is still read exactly once within the limits.
        #[test]
        fn plans_around_excluded_registers(
            spans in spans_strategy(),
            picks in prop::collection::vec((any::<bool>(), 0u16..400), 0..6),
            max_registers in 4u16..=125,
            max_gap in 0u16..20,
            even in any::<bool>(),
        ) {
            let excluded: Vec<Span> = picks
                .into_iter()
                .map(|(input, register)| Span {
                    kind: if input { RegisterKind::Input } else { RegisterKind::Holding },
                    register,
                    registers: 1,
                })
                .collect();
            let limits = Limits { max_registers, max_gap, even };
            let blocks = plan_spans_around(&spans, limits, &excluded);
            let mut seen = vec![0; spans.len()];
            for b in &blocks {
                prop_assert!(b.count <= max_registers, "{b:?} over the limit {max_registers}");
                let read = Span { kind: b.kind, register: b.start, registers: b.count };
                for x in &excluded {
                    prop_assert!(!overlaps(&read, x), "{b:?} reads the refused {x:?}");
                }
                within(b, &spans, &mut seen)?;
            }
            for (i, s) in spans.iter().enumerate() {
                let refused = excluded.iter().any(|x| overlaps(x, s));
                prop_assert_eq!(seen[i], usize::from(!refused), "span {:?} (refused: {})", s, refused);
            }
            // Nothing refused: the same plan as without exclusions.
            if excluded.is_empty() {
                prop_assert_eq!(blocks, plan_spans(&spans, limits));
            }
        }
    }

    #[test]
    fn a_refused_register_splits_a_block_in_two() {
        // 30 contiguous u16 values, register 17 refused: two requests around it.
        let pts: Vec<_> = (0..30)
            .map(|i| pt(i, ValueType::U16, RegisterKind::Holding))
            .collect();
        let spans: Vec<Span> = pts.iter().map(Span::from).collect();
        let refused = [Span {
            kind: RegisterKind::Holding,
            register: 17,
            registers: 1,
        }];
        let b = plan_spans_around(&spans, lim(125, 0), &refused);
        assert_eq!(
            b.iter().map(|b| (b.start, b.count)).collect::<Vec<_>>(),
            vec![(0, 17), (18, 12)]
        );
        // Even reads pad away from the refused register.
        let even = Limits {
            even: true,
            ..lim(125, 0)
        };
        let b = plan_spans_around(&spans[2..18], even, &refused);
        assert_eq!(
            b.iter().map(|b| (b.start, b.count)).collect::<Vec<_>>(),
            vec![(1, 16)]
        );
    }

    #[test]
    fn contiguous_floats_make_one_request() {
        let pts: Vec<_> = (0..15)
            .map(|i| pt(i * 2, ValueType::F32, RegisterKind::Input))
            .collect();
        let b = plan(&pts, lim(125, 0));
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].start, b[0].count), (0, 30));
        assert_eq!(b[0].points.len(), 15);
    }

    #[test]
    fn gaps_tables_and_limits_split_requests() {
        let pts = vec![
            pt(0, ValueType::F32, RegisterKind::Holding),
            pt(4, ValueType::F32, RegisterKind::Holding), // hole of 2
            pt(0, ValueType::U16, RegisterKind::Input),
            pt(120, ValueType::F32, RegisterKind::Input),
        ];
        assert_eq!(plan(&pts, lim(125, 0)).len(), 4);
        let merged = plan(&pts, lim(125, 2));
        assert_eq!(merged.len(), 3);
        assert_eq!((merged[0].start, merged[0].count), (0, 6));
        // max_registers 100 keeps input 0 and input 120 apart even with a big gap allowance
        let b = plan(&pts, lim(100, 200));
        assert!(b.iter().all(|b| b.count <= 100), "{b:?}");
        assert_eq!(
            b.iter().filter(|b| b.kind == RegisterKind::Input).count(),
            2
        );
    }

    #[test]
    fn every_point_is_planned_once_within_its_block() {
        let pts: Vec<_> = [7u16, 3, 50, 51, 200, 9, 1000]
            .iter()
            .map(|&r| pt(r, ValueType::U16, RegisterKind::Holding))
            .collect();
        let blocks = plan(&pts, lim(10, 5));
        let mut seen = vec![0; pts.len()];
        for b in &blocks {
            assert!(b.count <= 10);
            for &i in &b.points {
                seen[i] += 1;
                assert!(pts[i].register >= b.start);
                assert!(pts[i].register < b.start + b.count);
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
    }
}
