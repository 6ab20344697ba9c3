//! Everything a session writes out.

pub mod flamegraph;
pub mod outputs;
pub mod pprof;
pub mod report;

pub use report::Report;
