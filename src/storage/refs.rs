//! Reference values of the readings' encoding (table `value_refs`, [`codec::RefValues`]).
//!
//! The store writer keeps the latest value of every series it committed. A batch is encoded
//! against the writer's current reference: a reading equal to its series' reference value
//! takes its tag byte only, an f32 near it 2–3 bytes ([`codec`]). The writer starts a new
//! reference (from the latest values, this batch's included) when it has none, when a quarter
//! of a batch's values have none in it (new series, a restart), or after
//! [`READINGS_PER_SERIES`] readings per series of it (values drift away from it). A reference
//! is written in the transaction of the first batch that uses it and never changes.
//!
//! References only grow in id with the batches' ids (only the writer of `run` makes them;
//! other writers, such as `import readings`, write version 1 blobs), so the references in use
//! are those from the oldest batch's on; older ones are deleted with the batches
//! ([`Store::delete_ids`](super::Store)), and the newest one is always kept.

use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use super::codec::{self, RefValues};
use super::{ctx, Result, StoreError};
use crate::readings::Reading;

/// Readings per series a reference serves before the writer starts a new one (at 1 s polling
/// every 10 minutes: about 0.01 byte per reading for the reference itself).
pub const READINGS_PER_SERIES: u64 = 600;

/// References decoded and kept by a connection (a reading connection meets one or two).
const CACHED: usize = 4;

/// Batches looked at from the oldest on for the reference in use (version 1 batches, from an
/// upgrade or an import, name none).
const OLDEST_LOOKED_AT: i64 = 100;

/// The writer's side: the latest value of each series and the current reference.
#[derive(Debug, Default)]
struct RefWriter {
    latest: foldhash::HashMap<i64, u64>,
    current: Option<(i64, Arc<RefValues>)>,
    /// Readings encoded against the current reference.
    used: u64,
}

/// The references of one connection: the writer's state (when it writes references) and the
/// references read back.
#[derive(Debug, Default)]
pub(super) struct Refs {
    writer: Option<RefWriter>,
    cache: Mutex<Vec<(i64, Arc<RefValues>)>>,
}

impl Refs {
    /// From now on, batches written through this connection use references.
    pub(super) fn enable_writer(&mut self) {
        self.writer.get_or_insert_with(RefWriter::default);
    }

    /// The reference the batch `rows` (series id, reading) is to be encoded against, created in
    /// `tx` when needed; None when this connection writes no references.
    pub(super) fn for_batch(
        &mut self,
        tx: &Connection,
        rows: &[(i64, &Reading)],
    ) -> Result<Option<(i64, Arc<RefValues>)>> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(None);
        };
        for (sid, r) in rows {
            if let Some(v) = r.value {
                w.latest.insert(*sid, v.to_bits());
            }
        }
        let renew = match &w.current {
            None => true,
            Some((id, values)) => {
                let missing = rows
                    .iter()
                    .filter(|(sid, r)| r.value.is_some() && values.get(*sid).is_none())
                    .count();
                missing * 4 > rows.len()
                    || w.used >= READINGS_PER_SERIES * values.len().max(1) as u64
                    // Deleted meanwhile (the batches that used it are gone), or the
                    // transaction that wrote it was rolled back.
                    || tx
                        .prepare_cached("SELECT 1 FROM value_refs WHERE id = ?1")
                        .and_then(|mut s| s.query_row([id], |_| Ok(())).optional())
                        .map_err(ctx("read reference values"))?
                        .is_none()
            }
        };
        if renew {
            let values = Arc::new(RefValues::new(w.latest.clone()));
            tx.prepare_cached("INSERT INTO value_refs(data) VALUES (?1)")
                .and_then(|mut s| s.execute(params![values.encode()]))
                .map_err(ctx("write reference values"))?;
            let id = tx.last_insert_rowid();
            w.current = Some((id, values.clone()));
            w.used = 0;
            remember(&self.cache, id, values);
        }
        w.used += rows.len() as u64;
        Ok(w.current.clone())
    }

    /// The reference `id`, from the cache or the store.
    pub(super) fn values(&self, conn: &Connection, id: i64) -> Result<Arc<RefValues>> {
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, v)) = cache.iter().find(|(k, _)| *k == id) {
                return Ok(v.clone());
            }
        }
        let data: Option<Vec<u8>> = conn
            .prepare_cached("SELECT data FROM value_refs WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(ctx("read reference values"))?;
        let data = data.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "reference values {id} of a reading batch are missing"
            ))
        })?;
        let values = Arc::new(RefValues::decode(&data).map_err(super::batches::decode_err)?);
        remember(&self.cache, id, values.clone());
        Ok(values)
    }
}

fn remember(cache: &Mutex<Vec<(i64, Arc<RefValues>)>>, id: i64, values: Arc<RefValues>) {
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    cache.retain(|(k, _)| *k != id);
    if cache.len() >= CACHED {
        cache.remove(0);
    }
    cache.push((id, values));
}

/// Deletes the references no batch uses any more: those older than the oldest batch's (the
/// newest reference always stays: the writer may use it for its next batch). Returns how many.
pub(super) fn drop_unused(conn: &Connection) -> Result<usize> {
    let heads: Vec<Vec<u8>> = {
        let mut stmt = conn
            .prepare_cached(
                "SELECT substr(data, 1, 10) FROM reading_batches ORDER BY first_id LIMIT ?1",
            )
            .map_err(ctx("read batch headers"))?;
        let rows = stmt
            .query_map([OLDEST_LOOKED_AT], |r| r.get(0))
            .map_err(ctx("read batch headers"))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(ctx("read batch headers"))?
    };
    let mut oldest_in_use = None;
    for h in &heads {
        if let Some(id) = codec::ref_id(h).map_err(super::batches::decode_err)? {
            oldest_in_use = Some(id);
            break;
        }
    }
    let below = match oldest_in_use {
        Some(id) => id,
        // Only version 1 batches among the oldest: which references the rest use is not
        // known without reading them all; keep every reference until those are gone.
        None if heads.len() as i64 >= OLDEST_LOOKED_AT => return Ok(0),
        None => i64::MAX,
    };
    conn.execute(
        "DELETE FROM value_refs WHERE id < ?1
           AND id < (SELECT coalesce(max(id), 0) FROM value_refs)",
        [below],
    )
    .map_err(ctx("delete reference values"))
}
