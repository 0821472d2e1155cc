//! The library half of the `kbs` command: each subcommand's work, with output left to the
//! binary.
//!
//! Backup, restore, list, describe and validate land with their issues; this crate currently
//! offers segment inspection.

pub mod inspect;
