//! The one public error type of the crate.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The storage operation an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Opening a store (URL and option parsing, backend construction, capability probe).
    Open,
    /// [`ObjectStorage::put`](crate::ObjectStorage::put).
    Put,
    /// [`ObjectStorage::put_if_absent`](crate::ObjectStorage::put_if_absent).
    PutIfAbsent,
    /// [`ObjectStorage::put_if_match`](crate::ObjectStorage::put_if_match).
    PutIfMatch,
    /// [`ObjectStorage::get`](crate::ObjectStorage::get).
    Get,
    /// [`ObjectStorage::get_range`](crate::ObjectStorage::get_range).
    GetRange,
    /// [`ObjectStorage::get_stream`](crate::ObjectStorage::get_stream), including reading the stream.
    GetStream,
    /// [`ObjectStorage::head`](crate::ObjectStorage::head).
    Head,
    /// [`ObjectStorage::list`](crate::ObjectStorage::list) and
    /// [`ObjectStorage::list_with_delimiter`](crate::ObjectStorage::list_with_delimiter).
    List,
    /// [`ObjectStorage::delete`](crate::ObjectStorage::delete).
    Delete,
    /// [`ObjectStorage::delete_many`](crate::ObjectStorage::delete_many).
    DeleteMany,
    /// [`ObjectStorage::start_multipart`](crate::ObjectStorage::start_multipart).
    MultipartStart,
    /// [`MultipartUpload::put_part`](crate::MultipartUpload::put_part).
    MultipartPart,
    /// [`MultipartUpload::complete`](crate::MultipartUpload::complete).
    MultipartComplete,
    /// [`MultipartUpload::abort`](crate::MultipartUpload::abort).
    MultipartAbort,
}

impl Operation {
    /// The operation's name as it appears in messages, e.g. `put-if-absent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Open => "open",
            Operation::Put => "put",
            Operation::PutIfAbsent => "put-if-absent",
            Operation::PutIfMatch => "put-if-match",
            Operation::Get => "get",
            Operation::GetRange => "get-range",
            Operation::GetStream => "get-stream",
            Operation::Head => "head",
            Operation::List => "list",
            Operation::Delete => "delete",
            Operation::DeleteMany => "delete-many",
            Operation::MultipartStart => "multipart-start",
            Operation::MultipartPart => "multipart-part",
            Operation::MultipartComplete => "multipart-complete",
            Operation::MultipartAbort => "multipart-abort",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong in this crate.
///
/// Every variant that comes from a store names the store (its
/// [`describe`](crate::ObjectStorage::describe) string, never credentials), the key or prefix
/// and the [`Operation`]; [`Error::is_retriable`] says whether trying again may help.
/// Messages that come from a remote service are scrubbed of the configured secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key is not a valid object key (see the crate docs for the rules).
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key or prefix.
        key: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The storage URL cannot be used.
    #[error("invalid storage URL {url}: {reason}")]
    InvalidUrl {
        /// The URL without user info or query string.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A storage option (struct field or URL query parameter) has an invalid value.
    #[error("invalid storage option {name}: {reason}")]
    InvalidOption {
        /// The option's name, as in [`StorageOptions`](crate::StorageOptions) / the URL query.
        name: String,
        /// What is wrong with the value (never the value itself when it is a secret).
        reason: String,
    },
    /// The URL has query parameters that this crate does not know.
    #[error("unknown storage URL parameter(s) for {scheme}: {}", names.join(", "))]
    UnknownParameters {
        /// The URL scheme (`s3`, `gs`, `az`, `file`, `memory`).
        scheme: String,
        /// The unknown parameter names (values are never echoed).
        names: Vec<String>,
    },
    /// The object does not exist.
    #[error("{store}: {operation} {key}: not found")]
    NotFound {
        /// The store, as described by `describe()`.
        store: String,
        /// The operation.
        operation: Operation,
        /// The key.
        key: String,
    },
    /// A create-only write found an object at the key.
    #[error("{store}: {operation} {key}: an object already exists at this key")]
    AlreadyExists {
        /// The store.
        store: String,
        /// The operation.
        operation: Operation,
        /// The key.
        key: String,
    },
    /// A compare-and-swap write found another version (or no object) at the key.
    #[error("{store}: {operation} {key}: the object is not at the expected version")]
    Precondition {
        /// The store.
        store: String,
        /// The operation.
        operation: Operation,
        /// The key.
        key: String,
    },
    /// A ranged read asked for bytes outside the object.
    #[error("{store}: {operation} {key}: range {}..{} is outside the object of {size} bytes", range.start, range.end)]
    InvalidRange {
        /// The store.
        store: String,
        /// The operation.
        operation: Operation,
        /// The key.
        key: String,
        /// The requested range.
        range: Range<u64>,
        /// The object's size.
        size: u64,
    },
    /// The store cannot do this operation (e.g. a conditional write on a store that does not
    /// honour conditional headers; see [`Capabilities`](crate::Capabilities)).
    #[error("{store}: {operation} is not supported: {reason}")]
    Unsupported {
        /// The store.
        store: String,
        /// The operation.
        operation: Operation,
        /// Why.
        reason: String,
    },
    /// The credentials were rejected or lack a permission.
    #[error("{store}: {operation} {key}: access denied: {message}")]
    AccessDenied {
        /// The store.
        store: String,
        /// The operation.
        operation: Operation,
        /// The key or prefix.
        key: String,
        /// The service's message (scrubbed of secrets).
        message: String,
    },
    /// A read returned different bytes than the object's metadata promises (short read, or the
    /// object changed while a stream was being resumed).
    #[error("{store}: {operation} {key}: {message}")]
    Inconsistent {
        /// The store.
        store: String,
        /// The operation.
        operation: Operation,
        /// The key.
        key: String,
        /// What was inconsistent.
        message: String,
        /// Whether trying again may help (a short read: yes; a changed object: no).
        retriable: bool,
    },
    /// A local filesystem error.
    #[error("{store}: {operation} {key}: {source}")]
    Io {
        /// The store.
        store: String,
        /// The operation.
        operation: Operation,
        /// The key or prefix.
        key: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Any other failure reported by a backend: server errors, throttling, timeouts,
    /// connection resets, unexpected responses.
    #[error("{store}: {operation} {key}: {message}")]
    Backend {
        /// The store.
        store: String,
        /// The operation.
        operation: Operation,
        /// The key or prefix.
        key: String,
        /// The backend's message (scrubbed of secrets).
        message: String,
        /// Whether trying again may help (5xx, throttling, timeouts, connection resets).
        retriable: bool,
    },
    /// A retriable error persisted through every attempt the [`RetryConfig`](crate::RetryConfig)
    /// allows.
    #[error("gave up after {attempts} attempts in {elapsed:?}: {last}")]
    RetriesExhausted {
        /// How many attempts were made.
        attempts: u32,
        /// Time from the first attempt to giving up.
        elapsed: Duration,
        /// The last attempt's error.
        #[source]
        last: Box<Error>,
    },
}

impl Error {
    /// Whether trying the operation again may succeed: `true` for server errors (5xx),
    /// throttling, timeouts, connection resets and short reads; `false` for everything a retry
    /// cannot fix (not found, already exists, precondition, access denied, bad input, and
    /// [`Error::RetriesExhausted`] itself).
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Backend { retriable, .. } | Error::Inconsistent { retriable, .. } => *retriable,
            _ => false,
        }
    }

    /// The store the error comes from, if it comes from one.
    pub fn store(&self) -> Option<&str> {
        match self {
            Error::NotFound { store, .. }
            | Error::AlreadyExists { store, .. }
            | Error::Precondition { store, .. }
            | Error::InvalidRange { store, .. }
            | Error::Unsupported { store, .. }
            | Error::AccessDenied { store, .. }
            | Error::Inconsistent { store, .. }
            | Error::Io { store, .. }
            | Error::Backend { store, .. } => Some(store),
            Error::RetriesExhausted { last, .. } => last.store(),
            Error::InvalidKey { .. }
            | Error::InvalidUrl { .. }
            | Error::InvalidOption { .. }
            | Error::UnknownParameters { .. } => None,
        }
    }

    /// The key (or list prefix) the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            Error::InvalidKey { key, .. }
            | Error::NotFound { key, .. }
            | Error::AlreadyExists { key, .. }
            | Error::Precondition { key, .. }
            | Error::InvalidRange { key, .. }
            | Error::AccessDenied { key, .. }
            | Error::Inconsistent { key, .. }
            | Error::Io { key, .. }
            | Error::Backend { key, .. } => Some(key),
            Error::RetriesExhausted { last, .. } => last.key(),
            Error::InvalidUrl { .. }
            | Error::InvalidOption { .. }
            | Error::UnknownParameters { .. }
            | Error::Unsupported { .. } => None,
        }
    }

    /// The operation the error happened in, if it happened in one.
    pub fn operation(&self) -> Option<Operation> {
        match self {
            Error::NotFound { operation, .. }
            | Error::AlreadyExists { operation, .. }
            | Error::Precondition { operation, .. }
            | Error::InvalidRange { operation, .. }
            | Error::Unsupported { operation, .. }
            | Error::AccessDenied { operation, .. }
            | Error::Inconsistent { operation, .. }
            | Error::Io { operation, .. }
            | Error::Backend { operation, .. } => Some(*operation),
            Error::RetriesExhausted { last, .. } => last.operation(),
            Error::InvalidUrl { .. } | Error::InvalidOption { .. } | Error::UnknownParameters { .. } => {
                Some(Operation::Open)
            }
            Error::InvalidKey { .. } => None,
        }
    }

    /// Whether the error means "no object at this key" (also through [`Error::RetriesExhausted`]).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound { .. } => true,
            Error::RetriesExhausted { last, .. } => last.is_not_found(),
            _ => false,
        }
    }
}

/// Where an error happened: the store, the operation and the key. Backends build their errors
/// from one of these.
#[derive(Debug, Clone)]
pub(crate) struct Context<'a> {
    pub(crate) store: &'a str,
    pub(crate) operation: Operation,
    pub(crate) key: &'a str,
}

impl<'a> Context<'a> {
    pub(crate) fn new(store: &'a str, operation: Operation, key: &'a str) -> Self {
        Context { store, operation, key }
    }

    pub(crate) fn not_found(&self) -> Error {
        Error::NotFound {
            store: self.store.to_owned(),
            operation: self.operation,
            key: self.key.to_owned(),
        }
    }

    pub(crate) fn already_exists(&self) -> Error {
        Error::AlreadyExists {
            store: self.store.to_owned(),
            operation: self.operation,
            key: self.key.to_owned(),
        }
    }

    pub(crate) fn precondition(&self) -> Error {
        Error::Precondition {
            store: self.store.to_owned(),
            operation: self.operation,
            key: self.key.to_owned(),
        }
    }

    pub(crate) fn invalid_range(&self, range: Range<u64>, size: u64) -> Error {
        Error::InvalidRange {
            store: self.store.to_owned(),
            operation: self.operation,
            key: self.key.to_owned(),
            range,
            size,
        }
    }

    pub(crate) fn unsupported(&self, reason: impl Into<String>) -> Error {
        Error::Unsupported {
            store: self.store.to_owned(),
            operation: self.operation,
            reason: reason.into(),
        }
    }

    pub(crate) fn inconsistent(&self, message: impl Into<String>, retriable: bool) -> Error {
        Error::Inconsistent {
            store: self.store.to_owned(),
            operation: self.operation,
            key: self.key.to_owned(),
            message: message.into(),
            retriable,
        }
    }

    pub(crate) fn io(&self, source: std::io::Error) -> Error {
        Error::Io {
            store: self.store.to_owned(),
            operation: self.operation,
            key: self.key.to_owned(),
            source,
        }
    }

    pub(crate) fn backend(&self, message: impl Into<String>, retriable: bool) -> Error {
        Error::Backend {
            store: self.store.to_owned(),
            operation: self.operation,
            key: self.key.to_owned(),
            message: message.into(),
            retriable,
        }
    }

    pub(crate) fn access_denied(&self, message: impl Into<String>) -> Error {
        Error::AccessDenied {
            store: self.store.to_owned(),
            operation: self.operation,
            key: self.key.to_owned(),
            message: message.into(),
        }
    }
}
