//! The lock that makes one `vodhook serve` the owner of a SQLite database file.
//!
//! A second server on the same file would run a second delivery worker against it; SQLite would
//! keep the file intact, but the two would fight over its one write lock and over deliveries.
//! The lock is an OS file lock on `<database>.lock`, so it ends with the process, however that
//! ends; a lock on the database file itself is avoided because closing any descriptor of that
//! file drops SQLite's own POSIX locks.

use crate::storage::{StorageError, StorageResult};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub(super) struct OwnerLock {
    /// Locked for as long as it is open.
    _file: File,
}

impl OwnerLock {
    pub(super) fn acquire(database: &Path) -> StorageResult<OwnerLock> {
        let lock_path = lock_path(database);
        let io_error = |e: std::io::Error| {
            StorageError::Io(format!(
                "cannot open the lock file {}: {e}",
                lock_path.display()
            ))
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&lock_path).map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "another process".to_owned()
                } else {
                    format!("process {holder}")
                };
                return Err(StorageError::InUse(format!(
                    "the SQLite database {} is already served by {holder}: one vodhook process owns \
                     a SQLite database; stop that one, or use Postgres (DATABASE_URL=postgres://...) \
                     to run several",
                    database.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(io_error(e)),
        }
        // Who holds it, for the message a second process gets; best effort.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()));
        Ok(OwnerLock { _file: file })
    }
}

fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}
