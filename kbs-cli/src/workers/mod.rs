//! Scale-out workers (issue #14, planned in docs/DESIGN.md, "Scale-out workers"). So far: the
//! assignment the group's leader computes ([`assign`]). Nothing runs workers yet.

mod assign;

pub use assign::assign;
