//! Leak detectors. Each looks at the model a session builds and returns [`Finding`]s of one
//! pattern; report.json lists them under `findings`, and the live view prints each new one.

pub mod chan_backlog;
pub mod finalizer_abuse;
pub mod goroutine_leak;
pub mod heap_growth;

use serde::Serialize;

use crate::symbols::Frame;

/// One verdict: which pattern, where, the numbers behind it, and what to change.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// Stable id of the pattern: `goroutine-leak`, ...
    pub pattern: &'static str,
    /// The code to look at (e.g. the `go` statement of leaking goroutines).
    pub site: Frame,
    /// Supporting stack, innermost first (e.g. where the goroutines are blocked).
    pub stack: Vec<Frame>,
    /// Pattern-specific numbers (counts, rates, durations).
    pub evidence: serde_json::Value,
    /// A one-line suggestion.
    pub hint: String,
}
