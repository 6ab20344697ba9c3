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

use std::collections::{HashMap, VecDeque};

use serde_json::json;

use super::{goroutine_stack, Finding};
use crate::{
    goruntime::{
        allgs::{is_system_goroutine, GSnapshot},
        traceback::{goroutine_function, Tracebacks, G_LEAKED, G_WAITING},
    },
    symbols::Symbolizer,
    target::Target,
};

#[derive(Clone, Debug)]
pub struct Config {
    /// Observe a site this long before judging its growth.
    pub min_window_s: f64,
    /// ... and see it grow by at least this many goroutines ...
    pub min_growth: u64,
    /// ... at this rate or more (least-squares slope over the window).
    pub min_rate: f64,
    /// Goroutines blocked longer than this are reported even without growth.
    pub block_threshold_s: f64,
    /// Blocked on a nil channel this long: reported (it can never wake up).
    pub nil_chan_threshold_s: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_window_s: 10.0,
            min_growth: 10,
            min_rate: 0.2,
            block_threshold_s: 600.0,
            nil_chan_threshold_s: 10.0,
        }
    }
}

/// Points of a site's live count kept for the slope: two minutes at one tick per second.
const WINDOW_POINTS: usize = 120;

#[derive(Debug, Default)]
struct Site {
    points: VecDeque<(f64, u64)>,
    first_seen: f64,
    startpc: u64,
    /// At the latest look: goroutines blocked, marked leaked by the runtime, and one of the
    /// blocked ones (to show where they wait).
    blocked: u64,
    leaked: u64,
    sample: Option<GSnapshot>,
    oldest_blocked_since: Option<f64>,
    reasons: HashMap<u8, u64>,
    /// Ages of its live goroutines at the latest look (see [`GoroutineAges`]).
    ages: GoroutineAges,
}

/// How long the live goroutines of one creation site have been alive.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GoroutineAges {
    /// Goroutines by age: `[<1s, 1-10s, 10s-1m, 1-10m, 10m+]` (since attach at most).
    pub seconds: [u64; 5],
    /// Of which already alive when gotrace attached (older than they look).
    pub before_attach: u64,
}

impl GoroutineAges {
    fn add(&mut self, age_s: f64, before_attach: bool) {
        let slot = match age_s {
            a if a < 1.0 => 0,
            a if a < 10.0 => 1,
            a if a < 60.0 => 2,
            a if a < 600.0 => 3,
            _ => 4,
        };
        self.seconds[slot] += 1;
        self.before_attach += u64::from(before_attach);
    }
}

/// One creation site's live goroutines.
#[derive(Clone, Debug)]
pub struct LiveSite {
    /// The `go` statement, and the goroutines' function (link-time PCs).
    pub gopc: u64,
    pub startpc: u64,
    pub live: u64,
    pub blocked: u64,
    pub ages: GoroutineAges,
}

#[derive(Debug, Default)]
pub struct GoroutineLeaks {
    pub config: Config,
    sites: HashMap<u64, Site>,
    /// goid -> (first time seen blocked, wait reason)
    blocked_since: HashMap<u64, (f64, u8)>,
    /// goid -> (first time seen, alive at the first look)
    first_seen: HashMap<u64, (f64, bool)>,
    looks: u64,
}

impl GoroutineLeaks {
    pub fn new(config: Config) -> Self {
        GoroutineLeaks {
            config,
            ..Default::default()
        }
    }

    /// Takes one look at every goroutine, `t` seconds after attach.
    pub fn update(&mut self, t: f64, snapshot: &[GSnapshot], target: &Target) {
        let pcln = target.binary.pclntab();
        for s in self.sites.values_mut() {
            s.blocked = 0;
            s.leaked = 0;
            s.sample = None;
            s.oldest_blocked_since = None;
            s.reasons.clear();
            s.ages = GoroutineAges::default();
        }
        let first_look = self.looks == 0;
        self.looks += 1;
        let mut still_alive = HashMap::new();
        let mut live: HashMap<u64, u64> = HashMap::new();
        let mut still_blocked = HashMap::new();
        for g in snapshot.iter().filter(|g| g.is_live()) {
            let start = pcln
                .func_for_pc(g.startpc)
                .map(|f| f.name)
                .unwrap_or_default();
            if is_system_goroutine(&start) {
                continue;
            }
            *live.entry(g.gopc).or_default() += 1;
            let site = self.sites.entry(g.gopc).or_insert_with(|| Site {
                first_seen: t,
                startpc: g.startpc,
                ..Default::default()
            });
            let seen = *self.first_seen.get(&g.goid).unwrap_or(&(t, first_look));
            still_alive.insert(g.goid, seen);
            site.ages.add(t - seen.0, seen.1);
            if g.status == G_WAITING || g.status == G_LEAKED {
                let since = match self.blocked_since.get(&g.goid) {
                    Some(&(since, reason)) if reason == g.waitreason => since,
                    _ => t,
                };
                still_blocked.insert(g.goid, (since, g.waitreason));
                site.blocked += 1;
                site.leaked += u64::from(g.status == G_LEAKED);
                *site.reasons.entry(g.waitreason).or_default() += 1;
                if site.oldest_blocked_since.is_none_or(|o| since < o) {
                    site.oldest_blocked_since = Some(since);
                    site.sample = Some(g.clone());
                }
            }
        }
        self.blocked_since = still_blocked;
        self.first_seen = still_alive;
        for (pc, site) in self.sites.iter_mut() {
            let n = live.get(pc).copied().unwrap_or(0);
            site.points.push_back((t, n));
            if site.points.len() > WINDOW_POINTS {
                site.points.pop_front();
            }
        }
        // Forget sites with nothing left for a whole window.
        self.sites
            .retain(|_, s| s.points.iter().any(|(_, n)| *n > 0));
    }

    /// Creation sites with goroutines alive at every look since they were first seen:
    /// (`go` statement PC, start PC, live, seconds alive), as of time `t`.
    pub fn long_lived(&self, t: f64) -> Vec<(u64, u64, u64, f64)> {
        self.sites
            .iter()
            .filter(|(_, s)| s.points.iter().all(|p| p.1 > 0))
            .filter_map(|(pc, s)| {
                let &(_, live) = s.points.back()?;
                Some((*pc, s.startpc, live, t - s.first_seen))
            })
            .collect()
    }

    /// Live goroutines per creation site at the latest look, most first.
    pub fn live_by_site(&self) -> Vec<LiveSite> {
        let mut v: Vec<_> = self
            .sites
            .iter()
            .filter_map(|(pc, s)| {
                let &(_, live) = s.points.back()?;
                (live > 0).then(|| LiveSite {
                    gopc: *pc,
                    startpc: s.startpc,
                    live,
                    blocked: s.blocked,
                    ages: s.ages.clone(),
                })
            })
            .collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.live));
        v
    }

    /// The verdicts at time `t`.
    pub fn findings(
        &self,
        t: f64,
        target: &Target,
        tracebacks: &Tracebacks,
        sym: &Symbolizer,
    ) -> Vec<Finding> {
        let c = &self.config;
        let mut out = Vec::new();
        for (gopc, site) in &self.sites {
            let Some(&(_, now)) = site.points.back() else {
                continue;
            };
            let window = t - site.points.front().map_or(t, |p| p.0);
            let min = site.points.iter().map(|p| p.1).min().unwrap_or(0);
            let rate = slope(&site.points);
            let oldest = site.oldest_blocked_since.map(|s| t - s);
            let (reason_code, _) = site
                .reasons
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(r, n)| (*r, *n))
                .unwrap_or((0, 0));
            let reason = tracebacks
                .wait_reason(target, reason_code)
                .unwrap_or_default();
            let growing = window >= c.min_window_s
                && t - site.first_seen >= c.min_window_s
                && now >= min + c.min_growth
                && rate >= c.min_rate
                && site.blocked * 2 >= now;
            let nil_chan =
                reason.contains("nil chan") && oldest.is_some_and(|o| o >= c.nil_chan_threshold_s);
            let long_blocked = oldest.is_some_and(|o| o >= c.block_threshold_s);
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
                .sample
                .as_ref()
                .map(|g| goroutine_stack(target, tracebacks, sym, g))
                .unwrap_or_default();
            out.push(Finding {
                pattern: "goroutine-leak",
                site: sym.caller_frame(*gopc),
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
                    "goroutine_function": goroutine_function(&target.binary, site.startpc),
                }),
                hint: hint(&reason),
            });
        }
        out.sort_by_key(|f| std::cmp::Reverse(f.evidence["live"].as_u64().unwrap_or(0)));
        out
    }
}

/// Least-squares slope of the live count, goroutines per second.
fn slope(points: &VecDeque<(f64, u64)>) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for &(x, y) in points {
        num += (x - mx) * (y as f64 - my);
        den += (x - mx) * (x - mx);
    }
    if den == 0.0 {
        0.0
    } else {
        num / den
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line() {
        let pts: VecDeque<(f64, u64)> = (0..10).map(|i| (i as f64, 5 + 2 * i as u64)).collect();
        assert!((slope(&pts) - 2.0).abs() < 1e-9);
        let flat: VecDeque<(f64, u64)> = (0..10).map(|i| (i as f64, 20)).collect();
        assert_eq!(slope(&flat), 0.0);
    }
}
