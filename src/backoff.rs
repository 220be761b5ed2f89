//! Retry pacing shared by everything that reconnects or resends (InfluxDB writes, MQTT
//! connections, notifiers): exponential backoff with ±20 % jitter, so that many gateways that
//! lost the same server do not all come back at the same instant.

use std::time::Duration;

/// Exponential backoff (doubling from `initial` up to `max`) with ±20 % jitter.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    rng: u64,
}

impl Backoff {
    /// 1 s doubling up to 60 s.
    pub fn new() -> Self {
        Self::with_limits(Duration::from_secs(1), Duration::from_secs(60))
    }

    pub fn with_limits(initial: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            ^ u64::from(std::process::id()).rotate_left(32);
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
            rng: seed | 1,
        }
    }

    /// A factor in 0.8..1.2.
    pub fn jitter(&mut self) -> f64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        0.8 + 0.4 * ((r >> 11) as f64 / (1u64 << 53) as f64)
    }

    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base.mul_f64(self.jitter())
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(800) && first <= Duration::from_millis(1200));
        for _ in 0..10 {
            b.next_delay();
        }
        let capped = b.next_delay();
        assert!(capped <= Duration::from_secs(72) && capped >= Duration::from_secs(48));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(1200));
        // The jitter varies.
        let js: Vec<f64> = (0..20).map(|_| b.jitter()).collect();
        assert!(js.iter().all(|j| (0.8..1.2).contains(j)));
        assert!(js.windows(2).any(|w| w[0] != w[1]));
    }
}
