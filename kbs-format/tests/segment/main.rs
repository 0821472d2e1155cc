//! Integration tests of the segment codec: golden vectors, round trips, corruption, hostile input.

mod common;
mod corruption;
mod encryption;
mod golden;
mod hostile;
mod roundtrip;
