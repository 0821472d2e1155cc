//! A pure-Rust Kafka client for kbs.
//!
//! This crate is a skeleton: the client is tracked by its own issue and lands there.
