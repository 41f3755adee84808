//! What can go wrong in storage, by kind, so callers decide on the kind (retry a failed
//! write, refuse to boot on corruption, name the other process holding a lock) rather than on
//! a message's wording.

use std::fmt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Another process holds the data directory.
    Locked,
    /// The directory or a file in it cannot be created or opened.
    Open,
    /// A read, write or sync failed (disk full, I/O error): the committer retries.
    Io,
    /// What was read does not decode: Warren refuses to start rather than guess.
    Corrupt,
    /// The store was closed after a failure and is waiting to reopen.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    pub kind: StoreErrorKind,
    /// What was being done, where, and what the layer below said.
    pub detail: String,
}

impl StoreError {
    pub fn new(kind: StoreErrorKind, detail: impl Into<String>) -> Self {
        StoreError {
            kind,
            detail: detail.into(),
        }
    }

    /// `what` failed in the data directory `path` because of `cause`.
    pub fn at(kind: StoreErrorKind, path: &Path, what: &str, cause: impl fmt::Display) -> Self {
        Self::new(
            kind,
            format!("{what} in data directory {}: {cause}", path.display()),
        )
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for StoreError {}

/// Boot and the binary report storage failures as I/O errors with the detail intact.
impl From<StoreError> for std::io::Error {
    fn from(e: StoreError) -> Self {
        std::io::Error::other(e)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
