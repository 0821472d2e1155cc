//! Integration tests of kbs-storage, one binary: the conformance suite against every backend
//! (memory, filesystem, moto, Garage), races, injected faults, network faults against a real S3
//! server, and crash safety of the filesystem backend with SIGKILLed child processes.
//!
//! moto and Garage are started on loopback by kbs-testkit (see `servers.rs`); a missing tool
//! fails the tests unless `KBS_SKIP_MOTO=1` / `KBS_SKIP_GARAGE=1` says to skip.

mod backends;
mod child;
mod concurrency;
mod conformance;
mod crash;
mod faults;
mod framed;
mod network;
mod servers;
