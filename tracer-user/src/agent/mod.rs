//! `gotrace agent`: every Go process on the host watched continuously, in the probe-free
//! default mode, its profiles served as Go serves them, its metrics scraped, pushed to
//! Pyroscope and kept in a local history.

pub mod discover;
pub mod history;
pub mod pressure;
pub mod push;
