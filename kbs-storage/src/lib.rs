//! Storage backends for kbs backups.
//!
//! This crate is a skeleton: the storage trait and its filesystem, S3 and memory backends are
//! tracked by their own issue and land there.
