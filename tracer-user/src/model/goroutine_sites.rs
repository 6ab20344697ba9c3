//! Live goroutines per creation site (`go` statement), look after look: the series of each
//! site's live count, how many wait and on what, how old they are. Read from `allgs` (no
//! probe); the goroutine-leak and closure-retention verdicts and the report's `live_by_site`
//! all come from here.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::capped::Capped;
use crate::{
    goruntime::traceback::{G_LEAKED, G_WAITING},
    observe::GoroutineLook,
    util::FastMap,
};

/// Points of a site's live count kept for its trend: two minutes at one look per second.
const WINDOW_POINTS: usize = 120;
/// Creation sites followed at once (a program has as many as it has `go` statements).
const MAX_SITES: usize = 4096;

/// How long the live goroutines of one creation site have been alive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// One creation site.
#[derive(Clone, Debug, Default)]
pub struct Site {
    /// (seconds since attach, live goroutines), oldest first.
    pub points: VecDeque<(f64, u64)>,
    pub first_seen: f64,
    /// The goroutines' function (link-time entry PC).
    pub startpc: u64,
    /// At the latest look: goroutines blocked, and of those marked leaked by the runtime.
    pub blocked: u64,
    pub leaked: u64,
    /// Since when the longest-blocked of them has been blocked.
    pub oldest_blocked_since: Option<f64>,
    /// Blocked goroutines per wait reason code.
    pub reasons: HashMap<u8, u64>,
    /// Where one of the blocked ones waits (link-time return PCs, innermost first).
    pub sample_stack: Option<Vec<u64>>,
    pub ages: GoroutineAges,
}

impl Site {
    pub fn live(&self) -> u64 {
        self.points.back().map_or(0, |p| p.1)
    }

    /// The most common wait reason of its blocked goroutines.
    pub fn main_reason(&self) -> Option<u8> {
        self.reasons
            .iter()
            .max_by_key(|(r, n)| (**n, std::cmp::Reverse(**r)))
            .map(|(r, _)| *r)
    }
}

/// One creation site's live goroutines, as reported.
#[derive(Clone, Debug)]
pub struct LiveSite {
    /// The `go` statement, and the goroutines' function (link-time PCs).
    pub gopc: u64,
    pub startpc: u64,
    pub live: u64,
    pub blocked: u64,
    pub ages: GoroutineAges,
}

#[derive(Debug)]
pub struct GoroutineSites {
    sites: Capped<u64, Site>,
    /// goid -> (first time seen blocked, wait reason), for the goroutines blocked now.
    blocked_since: FastMap<u64, (f64, u8)>,
    /// goid -> (first time seen, alive at the first look), for the goroutines alive now.
    first_seen: FastMap<u64, (f64, bool)>,
    /// The runtime's names of wait reasons seen so far.
    wait_reasons: HashMap<u8, String>,
    looks: u64,
}

impl Default for GoroutineSites {
    fn default() -> Self {
        GoroutineSites {
            sites: Capped::new(MAX_SITES),
            blocked_since: FastMap::default(),
            first_seen: FastMap::default(),
            wait_reasons: HashMap::new(),
            looks: 0,
        }
    }
}

impl GoroutineSites {
    /// Takes one look at every goroutine, `t` seconds after attach.
    pub(crate) fn update(&mut self, t: f64, look: &GoroutineLook) {
        for s in self.sites.values_mut() {
            s.blocked = 0;
            s.leaked = 0;
            s.sample_stack = None;
            s.oldest_blocked_since = None;
            s.reasons.clear();
            s.ages = GoroutineAges::default();
        }
        for (code, name) in &look.wait_reasons {
            self.wait_reasons
                .entry(*code)
                .or_insert_with(|| name.clone());
        }
        let first_look = self.looks == 0;
        self.looks += 1;
        // Per goroutine only cheap hashing (a million goroutines are read in a look): the
        // sites' LRU is touched once per `go` statement, after.
        let n = look.gs.len();
        let mut still_alive = FastMap::with_capacity_and_hasher(n, Default::default());
        let mut still_blocked = FastMap::with_capacity_and_hasher(n, Default::default());
        let mut per_site: FastMap<u64, (Site, u64)> = FastMap::default();
        for g in look.user() {
            let (acc, live) = per_site.entry(g.gopc).or_insert_with(|| {
                (
                    Site {
                        startpc: g.startpc,
                        ..Default::default()
                    },
                    0,
                )
            });
            *live += 1;
            let seen = *self.first_seen.get(&g.goid).unwrap_or(&(t, first_look));
            still_alive.insert(g.goid, seen);
            acc.ages.add(t - seen.0, seen.1);
            if g.status == G_WAITING || g.status == G_LEAKED {
                let since = match self.blocked_since.get(&g.goid) {
                    Some(&(since, reason)) if reason == g.waitreason => since,
                    _ => t,
                };
                still_blocked.insert(g.goid, (since, g.waitreason));
                acc.blocked += 1;
                acc.leaked += u64::from(g.status == G_LEAKED);
                *acc.reasons.entry(g.waitreason).or_default() += 1;
                if acc.oldest_blocked_since.is_none_or(|o| since < o) {
                    acc.oldest_blocked_since = Some(since);
                }
                if acc.sample_stack.is_none() {
                    acc.sample_stack = look.stack(g.addr).map(<[u64]>::to_vec);
                }
            }
        }
        let mut live: FastMap<u64, u64> = FastMap::default();
        for (gopc, (acc, n)) in per_site {
            live.insert(gopc, n);
            let site = self.sites.entry(gopc, || Site {
                first_seen: t,
                startpc: acc.startpc,
                ..Default::default()
            });
            site.blocked = acc.blocked;
            site.leaked = acc.leaked;
            site.oldest_blocked_since = acc.oldest_blocked_since;
            site.reasons = acc.reasons;
            site.sample_stack = acc.sample_stack;
            site.ages = acc.ages;
        }
        self.blocked_since = still_blocked;
        self.first_seen = still_alive;
        for (pc, site) in self.sites.iter_mut() {
            site.points
                .push_back((t, live.get(pc).copied().unwrap_or(0)));
            if site.points.len() > WINDOW_POINTS {
                site.points.pop_front();
            }
        }
        // Forget sites with nothing left for a whole window.
        self.sites
            .retain(|_, s| s.points.iter().any(|(_, n)| *n > 0));
    }

    /// Every followed site, by `go` statement PC.
    pub fn sites(&self) -> impl Iterator<Item = (u64, &Site)> {
        self.sites.iter().map(|(pc, s)| (*pc, s))
    }

    pub fn wait_reason(&self, code: u8) -> &str {
        self.wait_reasons.get(&code).map_or("", String::as_str)
    }

    /// Sites followed now.
    pub fn followed(&self) -> usize {
        self.sites.len()
    }

    /// Sites evicted to stay within [`MAX_SITES`].
    pub fn evicted(&self) -> u64 {
        self.sites.evicted()
    }

    /// Creation sites with goroutines alive at every look since they were first seen:
    /// (`go` statement PC, start PC, live, seconds alive), as of time `t`.
    pub fn long_lived(&self, t: f64) -> Vec<(u64, u64, u64, f64)> {
        self.sites()
            .filter(|(_, s)| s.points.iter().all(|p| p.1 > 0))
            .filter_map(|(pc, s)| {
                let &(_, live) = s.points.back()?;
                Some((pc, s.startpc, live, t - s.first_seen))
            })
            .collect()
    }

    /// Live goroutines per creation site at the latest look, most first.
    pub fn live_by_site(&self) -> Vec<LiveSite> {
        let mut v: Vec<_> = self
            .sites()
            .filter(|(_, s)| s.live() > 0)
            .map(|(pc, s)| LiveSite {
                gopc: pc,
                startpc: s.startpc,
                live: s.live(),
                blocked: s.blocked,
                ages: s.ages.clone(),
            })
            .collect();
        v.sort_by(|a, b| b.live.cmp(&a.live).then(a.gopc.cmp(&b.gopc)));
        v
    }
}
