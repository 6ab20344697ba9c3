//! gotrace: find memory and goroutine leaks in running Go programs with eBPF.
//!
//! The `gotrace` binary is a thin CLI over this library: [`session::Session`] attaches to a
//! process and feeds [`model::Model`]; [`export`] writes what it found. Tests drive the same
//! API against real traced processes.

pub mod binary;
pub mod check;
pub mod detect;
pub mod dump;
pub mod error;
pub mod events;
pub mod export;
pub mod goruntime;
pub mod inspect;
pub mod model;
pub mod privileges;
pub mod probes;
pub mod session;
pub mod symbols;
pub mod target;
pub mod ui;
mod util;

pub use error::{Error, Result};
pub use session::{AttachOptions, Session, StopReason};
pub use util::SharedBytes;
