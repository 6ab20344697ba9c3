//! Everything a session writes out.

pub mod report;

pub use report::Report;
