//! The fourth stage: leak detectors. Each one is a [`Detector`] in a file of its own, with its
//! thresholds as command-line flags (defined once, in its `Config`), registered in the one
//! table at the bottom of this file. A detector sees each [`Look`] and the [`Model`], never the
//! process, and returns [`Finding`]s of its pattern; report.json lists them under `findings`,
//! and the live view prints each new one.

pub mod cgo_malloc_leak;
pub mod chan_backlog;
pub mod closure_retention;
pub mod finalizer_abuse;
pub mod goroutine_leak;
pub mod heap_growth;
pub mod syncmap_growth;
pub mod syncpool_misuse;
pub mod trend;

use serde::{Deserialize, Serialize};

use crate::{
    binary::{offsets::Offsets, GoBinary},
    goruntime::traceback::show_frame,
    model::{heap_series::HeapSeries, Model},
    observe::Look,
    symbols::{Frame, Symbolizer},
};

/// One verdict: which pattern, where, the numbers behind it, and what to change.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Finding {
    /// Stable id of the pattern: `goroutine-leak`, ...
    #[serde(deserialize_with = "crate::util::static_str")]
    pub pattern: crate::util::StaticStr,
    /// The code to look at (e.g. the `go` statement of leaking goroutines).
    pub site: Frame,
    /// Supporting stack, innermost first (e.g. where the goroutines are blocked).
    pub stack: Vec<Frame>,
    /// Pattern-specific numbers (counts, rates, durations).
    pub evidence: serde_json::Value,
    /// A one-line suggestion.
    pub hint: String,
}

/// What a detector may consult besides the look: the model, and the binary's symbols.
pub(crate) struct Context<'a> {
    /// Seconds since attach.
    pub t: f64,
    pub model: &'a Model,
    pub binary: &'a GoBinary,
    pub offsets: &'a Offsets,
    /// Runtime address minus link-time address (PIE); PCs from probes are runtime addresses.
    pub load_bias: u64,
    pub sym: &'a Symbolizer,
}

/// One leak pattern. `observe` takes each look (after the model has); `findings` gives the
/// current verdicts, and may be asked at any moment.
pub(crate) trait Detector: Send {
    fn observe(&mut self, _look: &Look, _cx: &Context<'_>) {}
    fn findings(&self, cx: &Context<'_>) -> Vec<Finding>;
}

/// A detector's configuration is its flags: clap parses them from the command line, and the
/// defaults of a session without flags are the same flags parsed from nothing, so help and
/// defaults cannot disagree.
pub fn defaults<C: clap::Args + clap::FromArgMatches>() -> C {
    let cmd = C::augment_args(clap::Command::new("gotrace").no_binary_name(true));
    C::from_arg_matches(&cmd.get_matches_from(std::iter::empty::<String>()))
        .expect("every detector flag has a default")
}

macro_rules! config_defaults {
    ($config:ty) => {
        impl Default for $config {
            fn default() -> Self {
                $crate::detect::defaults()
            }
        }
    };
}
pub(crate) use config_defaults;

macro_rules! registry {
    ($($module:ident => $detector:ident),* $(,)?) => {
        /// Every pattern's stable id, in registry order.
        pub const PATTERNS: &[&str] = &[$($module::PATTERN),*];

        /// The leak detectors: which run, and their thresholds.
        #[derive(Clone, Debug, clap::Args)]
        #[command(next_help_heading = "Detectors")]
        pub struct DetectConfig {
            /// Switch off these patterns (goroutine-leak, heap-growth, syncmap-growth,
            /// syncpool-misuse, closure-retention, chan-backlog, finalizer-abuse,
            /// cgo-malloc-leak).
            #[arg(long, value_delimiter = ',', value_name = "PATTERN,...", value_parser = parse_pattern)]
            pub disable: Vec<String>,
            $(
                #[command(flatten)]
                pub $module: $module::Config,
            )*
        }

        /// The enabled detectors, each with its configuration.
        pub(crate) fn build(config: &DetectConfig) -> Vec<Box<dyn Detector>> {
            let mut all: Vec<Box<dyn Detector>> = Vec::new();
            $(
                if config.enabled($module::PATTERN) {
                    all.push(Box::new($module::$detector::new(config.$module.clone())));
                }
            )*
            all
        }
    };
}

// The registry: one line per pattern.
registry! {
    goroutine_leak => GoroutineLeak,
    heap_growth => HeapGrowth,
    syncmap_growth => SyncMapGrowth,
    syncpool_misuse => SyncPoolMisuse,
    closure_retention => ClosureRetention,
    chan_backlog => ChanBacklog,
    finalizer_abuse => FinalizerAbuse,
    cgo_malloc_leak => CgoMallocLeak,
}

impl Default for DetectConfig {
    fn default() -> Self {
        defaults()
    }
}

impl DetectConfig {
    pub fn enabled(&self, pattern: &str) -> bool {
        !self.disabled(pattern)
    }

    fn disabled(&self, pattern: &str) -> bool {
        self.disable.iter().any(|d| d == pattern)
    }
}

/// A pattern id, as flags take them.
pub fn parse_pattern(s: &str) -> Result<String, String> {
    if PATTERNS.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "unknown pattern {s:?} (one of {})",
            PATTERNS.join(", ")
        ))
    }
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

/// Where a goroutine waits, as Go's traceback shows it (runtime internals hidden), innermost
/// first, from its stack's return PCs.
pub fn goroutine_stack(pcs: &[u64], sym: &Symbolizer) -> Vec<Frame> {
    pcs.iter()
        .flat_map(|pc| sym.caller_frames(*pc))
        .filter(|f| show_frame(&f.function))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_define_the_defaults() {
        use clap::Args;
        DetectConfig::augment_args(clap::Command::new("gotrace")).debug_assert();
        let c = DetectConfig::default();
        assert!(c.disable.is_empty());
        assert_eq!(c.goroutine_leak.min_growth, 10);
        assert_eq!(
            c.goroutine_leak.block_threshold,
            std::time::Duration::from_secs(600)
        );
        assert_eq!(c.heap_growth.min_growth_bytes, 1 << 20);
        assert_eq!(c.finalizer_abuse.stuck, std::time::Duration::from_secs(5));
        assert_eq!(c.chan_backlog.rising_looks, 5);
        assert_eq!(build(&c).len(), PATTERNS.len());
        let some_off = DetectConfig {
            disable: vec!["heap-growth".into()],
            ..c
        };
        assert_eq!(build(&some_off).len(), PATTERNS.len() - 1);
        assert!(parse_pattern("heap-grwoth").is_err());
    }
}
