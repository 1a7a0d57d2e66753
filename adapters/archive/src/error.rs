//! The one error type of the archive. redb splits its failures over several types (opening,
//! starting a transaction, opening a table, reading, committing); callers of the archive can
//! do nothing different for each, so they are folded into [`ArchiveError::Storage`] with the
//! original message kept, and only a record this crate cannot decode gets its own variant.

use thiserror::Error;

/// Why an archive operation failed.
#[derive(Debug, Error)]
pub enum ArchiveError {
    /// The database file could not be opened, read or written (I/O, corruption detected by
    /// redb, a second process holding the file, ...).
    #[error("order archive storage error: {0}")]
    Storage(#[from] redb::Error),
    /// A stored record does not decode under this crate's layout.
    #[error("corrupt archived order {key}: {reason}")]
    Corrupt { key: String, reason: &'static str },
}

macro_rules! from_redb {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for ArchiveError {
            fn from(e: $t) -> Self {
                ArchiveError::Storage(e.into())
            }
        }
    )*};
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
);
