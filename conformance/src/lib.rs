//! The MIMI conformance suite as a library: [`suite`] (black-box protocol tests of a provider
//! in the hub or follower role), [`content`] (checks of MIMI content encodings) and [`report`]
//! (table, JSON, JUnit XML). The `mimi-conformance` binary is a thin command line over it.

pub mod content;
pub mod report;
pub mod suite;
