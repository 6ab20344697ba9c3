//! Everything a session writes out.

pub mod flamegraph;
pub mod pprof;
pub mod outputs;
pub mod report;

pub use report::Report;
