//! Request planning: merge the configured points of one device into as few read requests as
//! the device's limits allow.

use crate::config::{PointConfig, RegisterKind};

/// One read request and the points decoded from its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub kind: RegisterKind,
    pub start: u16,
    pub count: u16,
    /// Indexes into the device's point list.
    pub points: Vec<usize>,
}

/// Greedy merge over points sorted by table and address: a point joins the current block when it
/// is in the same table, the block stays within `max_registers`, and the hole between them is at
/// most `max_gap` registers. Overlapping points share registers.
pub fn plan(points: &[PointConfig], max_registers: u16, max_gap: u16) -> Vec<Block> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| (points[i].kind, points[i].register));
    let mut blocks: Vec<Block> = Vec::new();
    for i in order {
        let p = &points[i];
        let start = u32::from(p.register);
        let end = start + u32::from(p.value_type.registers()); // exclusive
        if let Some(b) = blocks.last_mut() {
            let b_end = u32::from(b.start) + u32::from(b.count);
            let fits = b.kind == p.kind
                && start <= b_end + u32::from(max_gap)
                && end.max(b_end) - u32::from(b.start) <= u32::from(max_registers);
            if fits {
                b.count = (end.max(b_end) - u32::from(b.start)) as u16;
                b.points.push(i);
                continue;
            }
        }
        blocks.push(Block {
            kind: p.kind,
            start: p.register,
            count: (end - start) as u16,
            points: vec![i],
        });
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ValueType, WordOrder};
    use crate::readings::Quantity;

    fn pt(register: u16, value_type: ValueType, kind: RegisterKind) -> PointConfig {
        PointConfig {
            quantity: Quantity::ActivePower,
            register,
            kind,
            value_type,
            order: WordOrder::ABCD,
            scale: 1.0,
            offset: 0.0,
        }
    }

    #[test]
    fn contiguous_floats_make_one_request() {
        let pts: Vec<_> = (0..15)
            .map(|i| pt(i * 2, ValueType::F32, RegisterKind::Input))
            .collect();
        let b = plan(&pts, 125, 0);
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
        assert_eq!(plan(&pts, 125, 0).len(), 4);
        let merged = plan(&pts, 125, 2);
        assert_eq!(merged.len(), 3);
        assert_eq!((merged[0].start, merged[0].count), (0, 6));
        // max_registers 100 keeps input 0 and input 120 apart even with a big gap allowance
        let b = plan(&pts, 100, 200);
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
        let blocks = plan(&pts, 10, 5);
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
