//! Store safety at start: a store file that exists but is empty is refused (a truncated or
//! wrongly restored file would otherwise silently become a new, empty store and the history
//! would be gone without a word), and what the store creates is private to the service user
//! (directories 0700, files 0600, whatever the umask).

use std::path::Path;

use super::{Result, StoreError};

/// Refuses a store file that exists and is empty (0 bytes), naming the file and the way to
/// start with a new store. A missing file is fine (a first start).
pub fn refuse_empty(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == 0 => Err(StoreError::Open {
            path: path.display().to_string(),
            message: format!(
                "the store file exists but is empty (0 bytes): its history is gone or was never \
                 written, and it will not be replaced silently. Restore it from a backup, or, to \
                 start with a new, empty store, move it away (mv {p} {p}.empty) and start again",
                p = path.display()
            ),
        }),
        _ => Ok(()),
    }
}

/// Creates the data directory (and missing parents) 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates the store file 0600 when it does not exist (SQLite gives its WAL and shared-memory
/// files the database file's mode).
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(|_| ())
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(e)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::config::Synchronous;
    use crate::storage::Store;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_store_files_and_dirs_are_private() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("a/b/store.sqlite");
        let store = Store::open(&path, Synchronous::Normal).unwrap();
        store.max_reading_id().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&root.path().join("a/b")), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&root.path().join("a/b/store.sqlite-wal")), 0o600);
    }

    #[test]
    fn an_empty_store_file_is_refused_with_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite");
        assert!(
            refuse_empty(&path).is_ok(),
            "a missing file is a first start"
        );
        std::fs::write(&path, b"").unwrap();
        let e = refuse_empty(&path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("move it away"), "{e}");
    }
}
