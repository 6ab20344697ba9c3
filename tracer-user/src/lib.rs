//! gotrace: find memory and goroutine leaks in running Go programs with eBPF.
//!
//! The `gotrace` binary is a thin CLI over this library. A [`Session`] is one pipeline, each
//! stage a module: [`attach`] (target, runtime, probes, the sampler guard) → `observe` (each
//! tick's reads of the runtime as a plain `Look`) → [`model`] (bounded accumulation) →
//! [`detect`] (one `Detector` per leak pattern) → [`snapshot`] (report and profiles, at any
//! moment) → [`export`] (one `Output` per file). Below them: [`binary`] (ELF, pclntab, build
//! info, offsets), [`symbols`], [`target`] and [`goruntime`] (live readers of the runtime's
//! structures). Tests drive the same API against real traced processes.

pub mod agent;
pub mod attach;
pub mod binary;
pub mod check;
pub mod detect;
pub mod diff;
pub mod dump;
pub mod error;
mod events;
pub mod export;
pub mod files;
pub mod goruntime;
pub mod inspect;
pub mod model;
mod observe;
pub mod pprof;
mod privileges;
pub mod probes;
pub mod session;
pub mod snapshot;
pub mod symbols;
pub mod target;
pub mod ui;
pub mod units;
mod util;
pub mod web;

pub use error::{Error, Result};
pub use session::{AttachOptions, Session};
pub use snapshot::{Snapshot, StopReason};
pub use util::SharedBytes;
