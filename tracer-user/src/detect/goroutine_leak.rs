//! `goroutine-leak`: goroutines that pile up. Three signals, all read from `allgs` at each tick
//! (no probe):
//! * a creation site (`go` statement) whose live goroutines keep growing while they sit
//!   blocked — the classic leak (a worker that sends to a channel nobody reads any more);
//! * goroutines the runtime itself marked leaked (`_Gleaked`: Go 1.26's goroutine leak
//!   experiment, on by default in 1.27, proves them unreachable during GC);
//! * goroutines blocked on a nil channel (forever, by definition), or blocked on anything
//!   longer than a threshold.
//!
//! A healthy pool has a stable count and its workers keep waking up: no verdict.

use serde_json::json;

use super::{config_defaults, goroutine_stack, trend::slope, Context, Detector, Finding};
use crate::goruntime::traceback::goroutine_function;

pub const PATTERN: &str = "goroutine-leak";

#[derive(Clone, Debug, clap::Args)]
#[group(skip)]
pub struct Config {
    /// Observe a site this long before judging its growth ...
    #[arg(skip = 10.0)]
    pub min_window_s: f64,
    /// goroutine-leak: growth of a creation site's live goroutines that counts.
    #[arg(
        id = "goroutine-growth",
        long = "goroutine-growth",
        value_name = "N",
        default_value_t = 10
    )]
    pub min_growth: u64,
    /// ... at this rate or more (least-squares slope over the window).
    #[arg(skip = 0.2)]
    pub min_rate: f64,
    /// goroutine-leak: report goroutines blocked longer than this even without growth.
    #[arg(id = "block-threshold", long = "block-threshold", value_name = "DUR", default_value = "10m", value_parser = crate::units::parse_duration)]
    pub block_threshold: std::time::Duration,
    /// Blocked on a nil channel this long: reported (it can never wake up).
    #[arg(skip = 10.0)]
    pub nil_chan_threshold_s: f64,
}

config_defaults!(Config);

pub struct GoroutineLeak {
    config: Config,
}

impl GoroutineLeak {
    pub fn new(config: Config) -> Self {
        GoroutineLeak { config }
    }
}

impl Detector for GoroutineLeak {
    fn findings(&self, cx: &Context<'_>) -> Vec<Finding> {
        let t = cx.t;
        let sites = &cx.model.goroutine_sites;
        let c = &self.config;
        let mut out = Vec::new();
        for (gopc, site) in sites.sites() {
            let Some(&(_, now)) = site.points.back() else {
                continue;
            };
            let window = t - site.points.front().map_or(t, |p| p.0);
            let min = site.points.iter().map(|p| p.1).min().unwrap_or(0);
            let rate = slope(&site.points);
            let oldest = site.oldest_blocked_since.map(|s| t - s);
            let reason = site
                .main_reason()
                .map(|r| sites.wait_reason(r).to_string())
                .unwrap_or_default();
            let growing = window >= c.min_window_s
                && t - site.first_seen >= c.min_window_s
                && now >= min + c.min_growth
                && rate >= c.min_rate
                && site.blocked * 2 >= now;
            let nil_chan =
                reason.contains("nil chan") && oldest.is_some_and(|o| o >= c.nil_chan_threshold_s);
            let long_blocked = oldest.is_some_and(|o| o >= c.block_threshold.as_secs_f64());
            if !(growing || site.leaked > 0 || nil_chan || long_blocked) {
                continue;
            }
            let why = if site.leaked > 0 {
                "runtime-detected"
            } else if growing {
                "growing"
            } else if nil_chan {
                "nil-channel"
            } else {
                "blocked-long"
            };
            let stack = site
                .sample_stack
                .as_deref()
                .map(|pcs| goroutine_stack(pcs, cx.sym))
                .unwrap_or_default();
            out.push(Finding {
                pattern: PATTERN,
                site: cx.sym.creation_site(gopc, site.startpc),
                stack,
                evidence: json!({
                    "signal": why,
                    "live": now,
                    "blocked": site.blocked,
                    "leaked_by_runtime": site.leaked,
                    "growth_per_s": (rate * 100.0).round() / 100.0,
                    "grew_by": now.saturating_sub(min),
                    "window_s": window.round(),
                    "oldest_blocked_s": oldest.map(|o| o.round()),
                    "wait_reason": reason,
                    "goroutine_function": goroutine_function(cx.binary, site.startpc),
                }),
                hint: hint(&reason),
            });
        }
        out.sort_by_key(|f| std::cmp::Reverse(f.evidence["live"].as_u64().unwrap_or(0)));
        out
    }
}

fn hint(reason: &str) -> String {
    let h = if reason.starts_with("chan send") {
        "goroutines block sending on a channel nobody receives from any more: give it a buffer of 1 for a single result, or select on ctx.Done()"
    } else if reason.starts_with("chan receive") {
        "goroutines wait for a value that never comes: close the channel when the producer is done, or select on ctx.Done()"
    } else if reason.starts_with("select") {
        "goroutines wait in a select none of whose cases can proceed: add a ctx.Done() or timeout case"
    } else if reason.contains("Mutex") || reason.contains("semacquire") {
        "goroutines queue on a lock that is never released: look for a missing Unlock on an error path"
    } else if reason.contains("WaitGroup") {
        "goroutines wait on a WaitGroup whose counter never reaches zero: every Add needs a Done, also on early returns"
    } else if reason.contains("Cond") {
        "goroutines wait on a sync.Cond nobody signals: Broadcast when the condition changes"
    } else {
        "goroutines from this go statement accumulate: make sure each one has a way to exit"
    };
    h.to_string()
}
