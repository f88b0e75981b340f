//! The SQLite store (placeholder while it is written).

use super::{Access, StorageError, StorageResult};

#[derive(Debug)]
pub(super) struct SqliteStore;

impl SqliteStore {
    pub(super) async fn open(
        _url: &str,
        _pool_size: u32,
        _access: Access,
    ) -> StorageResult<super::postgres::PgStore> {
        Err(StorageError::Io("not yet".into()))
    }
}
