//! The notifiers' cursors (`notifier_cursors`) and what they sent or suppressed
//! (`notifier_log`, which bounds the per-rule rate).

use rusqlite::{params, OptionalExtension};

use super::feeds::FeedStore;
use super::Result;

impl FeedStore {
    /// The last alert id notifier `n` delivered (0 before the first).
    pub fn notifier_cursor(&self, n: &str) -> Result<i64> {
        self.with("read notifier cursor", |c| {
            c.query_row(
                "SELECT last_id FROM notifier_cursors WHERE notifier = ?1",
                [n],
                |r| r.get(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0))
        })
    }

    /// Moves notifier `n`'s cursor forward to `id` (never backwards).
    pub fn advance_notifier(&self, n: &str, id: i64) -> Result<()> {
        self.with("advance notifier cursor", |c| {
            c.execute(
                "INSERT INTO notifier_cursors(notifier, last_id) VALUES (?1, ?2)
                 ON CONFLICT(notifier) DO UPDATE SET last_id = max(last_id, excluded.last_id)",
                params![n, id],
            )
            .map(|_| ())
        })
    }

    /// How many messages notifier `n` sent for `rule` since `since_ms`.
    pub fn notifications_sent_since(&self, n: &str, rule: &str, since_ms: i64) -> Result<u32> {
        self.with("count notifications", |c| {
            c.query_row(
                "SELECT count(*) FROM notifier_log WHERE notifier = ?1 AND rule = ?2 AND outcome = 'sent' AND ts_ms >= ?3",
                params![n, rule, since_ms],
                |r| r.get(0),
            )
        })
    }

    /// Records what notifier `n` did with alert `alert_id` of `rule` (`sent` or `suppressed`).
    pub fn record_notification(
        &self,
        n: &str,
        alert_id: i64,
        rule: &str,
        outcome: &str,
        detail: &str,
    ) -> Result<()> {
        self.with("record notification", |c| {
            c.execute(
                "INSERT INTO notifier_log(notifier, alert_id, rule, ts_ms, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![n, alert_id, rule, crate::readings::now_ms(), outcome, detail],
            )
            .map(|_| ())
        })
    }
}
