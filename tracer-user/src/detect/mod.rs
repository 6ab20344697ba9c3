//! Leak detectors. Each looks at the model a session builds and returns [`Finding`]s of one
//! pattern; report.json lists them under `findings`, and the live view prints each new one.

pub mod cgo_malloc_leak;
pub mod chan_backlog;
pub mod closure_retention;
pub mod finalizer_abuse;
pub mod goroutine_leak;
pub mod heap_growth;
pub mod syncmap_growth;
pub mod syncpool_misuse;

use serde::Serialize;

use crate::{
    dump::show_frame,
    goruntime::{allgs::GSnapshot, traceback::Tracebacks},
    model::heap_series::HeapSeries,
    symbols::{Frame, Symbolizer},
    target::Target,
};

/// Every pattern's stable id.
pub const PATTERNS: &[&str] = &[
    "goroutine-leak",
    "heap-growth",
    "syncmap-growth",
    "syncpool-misuse",
    "closure-retention",
    "chan-backlog",
    "finalizer-abuse",
    "cgo-malloc-leak",
];

/// Every detector's thresholds, and the patterns switched off.
#[derive(Clone, Debug, Default)]
pub struct DetectConfig {
    pub disabled: Vec<String>,
    pub goroutine_leak: goroutine_leak::Config,
    pub heap_growth: heap_growth::Config,
    pub chan_backlog: chan_backlog::Config,
    pub finalizer_abuse: finalizer_abuse::Config,
    pub syncpool_misuse: syncpool_misuse::Config,
    pub closure_retention: closure_retention::Config,
    pub cgo_malloc_leak: cgo_malloc_leak::Config,
}

impl DetectConfig {
    pub fn enabled(&self, pattern: &str) -> bool {
        !self.disabled.iter().any(|d| d == pattern)
    }
}

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

/// The code to point at in an allocation stack: its first frame outside the runtime (as Go's
/// heap profile hides the allocator); for the runtime's own allocations (goroutine structures,
/// timers...), the first runtime function that is not the allocator itself.
pub fn site_of(stack: &[Frame]) -> Frame {
    stack
        .iter()
        .find(|f| !is_runtime(&f.function))
        .or_else(|| stack.iter().find(|f| !is_allocator(&f.function)))
        .or(stack.first())
        .cloned()
        .unwrap_or_else(|| Frame::unknown(0))
}

/// The runtime's allocation entry points, which no one wants named as "the site".
fn is_allocator(function: &str) -> bool {
    let Some(name) = function.strip_prefix("runtime.") else {
        return false;
    };
    name.starts_with("mallocgc")
        || name.starts_with("newobject")
        || name.starts_with("makeslice")
        || name.starts_with("growslice")
        || name.starts_with("newarray")
        || name.starts_with("convT")
}

pub fn is_runtime(function: &str) -> bool {
    function.starts_with("runtime.") || function.starts_with("internal/runtime/")
}

/// The first frame, going outwards, past the frames of `inside` (e.g. the caller of
/// `sync.(*Map).Store`): the user code that called into it.
pub fn caller_of(stack: &[Frame], inside: impl Fn(&str) -> bool) -> Option<Frame> {
    let last_inside = stack.iter().rposition(|f| inside(&f.function))?;
    stack[last_inside + 1..]
        .iter()
        .find(|f| !is_runtime(&f.function))
        .cloned()
}

/// A heap site's allocation stack, named (inlined calls expanded), innermost first.
pub fn heap_stack(series: &HeapSeries, bucket: u64, sym: &Symbolizer) -> Vec<Frame> {
    series
        .stack(bucket)
        .iter()
        .flat_map(|pc| sym.caller_frames(*pc))
        .collect()
}

/// Where a goroutine that is not running waits, as Go's traceback shows it (runtime
/// internals hidden), innermost first. Empty for a running goroutine.
pub fn goroutine_stack(
    target: &Target,
    tb: &Tracebacks,
    sym: &Symbolizer,
    g: &GSnapshot,
) -> Vec<Frame> {
    let Ok(stacks) = tb.unwind(target, &[g]) else {
        return Vec::new();
    };
    stacks
        .into_iter()
        .flatten()
        .flat_map(|pc| sym.caller_frames(pc))
        .filter(|f| show_frame(&f.function))
        .collect()
}
