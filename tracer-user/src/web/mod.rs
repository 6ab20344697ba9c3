//! The live page's side of a session: what `attach --web` serves and what the agent serves for
//! each of its targets. [`LiveView`] keeps, beside a session, what the page needs that the
//! session does not hold — the allocations of the latest GC interval, the heap in use a minute
//! ago and earlier, the goroutine groups (read only while someone looks at them) — and turns
//! it into the page's JSON ([`crate::export::page_data`]). [`serve`] is `attach --web`'s server.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Deserialize;

use crate::{
    dump::Group,
    error::Result,
    export::{
        flamegraph::HeapValue,
        page_data::{self, Diff, DiffBase, Flames, Mode, PageData},
        tree::Node,
    },
    model::heap::AllocBaseline,
    session::Session,
    snapshot::Report,
};

/// What the page asks for (`api/page?diff=ID&goroutines=1`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PageQuery {
    /// `attach`, or seconds ago.
    pub diff: Option<String>,
    /// Whether the goroutine flamegraph and groups are shown (they cost a walk of every
    /// goroutine's stack, so they are read only then).
    #[serde(default, deserialize_with = "flag")]
    pub goroutines: bool,
}

fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    Ok(!matches!(s.as_str(), "" | "0" | "false"))
}

/// The heap in use is kept once a minute for the hour past, to compare with.
const RING_EVERY: Duration = Duration::from_secs(60);
const RING_LEN: usize = 60;
/// The goroutine groups are read again at most this often, and only while the page shows them.
const GROUPS_EVERY: Duration = Duration::from_secs(5);
/// How long after the page last asked for the groups they are still read.
const GROUPS_WANTED_FOR: Duration = Duration::from_secs(15);
/// The moments the diff view offers, when the view reaches back that far.
const AGES: &[(u64, &str)] = &[
    (60, "1 min ago"),
    (300, "5 min ago"),
    (900, "15 min ago"),
    (1800, "30 min ago"),
    (3600, "1 h ago"),
];

/// The trees and groups the page shows, refreshed from a session.
#[derive(Default)]
pub struct LiveView {
    report: Option<Report>,
    inuse: Option<Node>,
    alloc: Option<Node>,
    alloc_baseline: AllocBaseline,
    /// The GC cycle whose profile the allocations were taken from (`None`: not primed yet).
    alloc_cycle: Option<u32>,
    at_attach: Option<Node>,
    /// The heap in use once a minute, oldest first.
    ring: VecDeque<(Instant, Node)>,
    groups: Option<(Instant, Vec<Group>, Option<Node>)>,
    groups_wanted: Option<Instant>,
}

impl LiveView {
    /// Takes in the session's latest look. Cheap (a heap snapshot from what the look read),
    /// except the goroutine groups: a walk of every stack, at most every 5 s and only while
    /// the page asks for them.
    pub fn refresh(&mut self, session: &Session) -> Result<()> {
        let snapshot = session.heap_snapshot()?;
        self.inuse = match &snapshot.heap {
            Some(p) => Node::of_heap(p, HeapValue::InuseBytes)?,
            None => None,
        };
        self.report = Some(snapshot.report);
        if self.at_attach.is_none() {
            self.at_attach.clone_from(&self.inuse);
        }
        if let Some(now) = &self.inuse {
            if self
                .ring
                .back()
                .is_none_or(|(t, _)| t.elapsed() >= RING_EVERY)
            {
                if self.ring.len() == RING_LEN {
                    self.ring.pop_front();
                }
                self.ring.push_back((Instant::now(), now.clone()));
            }
        }
        // The allocations between the two latest profiles the runtime published (one per GC
        // cycle): the first profile only primes the baseline, it holds the program's whole life.
        let cycle = session.model().gc.latest.map(|g| g.cycles);
        if cycle.is_some() && cycle != self.alloc_cycle {
            if let Some(delta) = session.delta_heap_profile(&mut self.alloc_baseline)? {
                if self.alloc_cycle.is_some() {
                    self.alloc = Node::of_heap(&delta, HeapValue::AllocBytes)?;
                }
                self.alloc_cycle = cycle;
            }
        }
        let wanted = self
            .groups_wanted
            .is_some_and(|t| t.elapsed() < GROUPS_WANTED_FOR);
        let stale = self
            .groups
            .as_ref()
            .is_none_or(|(t, ..)| t.elapsed() >= GROUPS_EVERY);
        if wanted && stale {
            let dump = session.dump()?;
            let tree = Node::of_groups(&dump.groups);
            self.groups = Some((Instant::now(), dump.groups, tree));
        }
        Ok(())
    }

    /// Notes what the page asked for: the groups are read from the next refresh on.
    pub fn asked(&mut self, query: &PageQuery) {
        if query.goroutines {
            self.groups_wanted = Some(Instant::now());
        }
    }

    /// The diff bases this view can compare with: at attach, and minutes ago.
    fn bases(&self) -> Vec<DiffBase> {
        let mut out = Vec::new();
        if self.at_attach.is_some() {
            out.push(DiffBase {
                id: "attach".into(),
                label: "at attach".into(),
            });
        }
        let oldest = self.ring.front().map_or(0, |(t, _)| t.elapsed().as_secs());
        for (secs, label) in AGES {
            if oldest + 5 >= *secs {
                out.push(DiffBase {
                    id: secs.to_string(),
                    label: (*label).into(),
                });
            }
        }
        out
    }

    /// The heap in use at base `id` (from this view; `other` for bases it does not hold,
    /// e.g. the agent's history).
    fn base(&self, id: &str) -> Option<(String, Node)> {
        if id == "attach" {
            return Some((page_data::AT_ATTACH.into(), self.at_attach.clone()?));
        }
        let secs: u64 = id.parse().ok()?;
        let (t, node) = self
            .ring
            .iter()
            .rev()
            .find(|(t, _)| t.elapsed().as_secs() + 5 >= secs)?;
        Some((
            format!(
                "in use now vs {} ago",
                humantime::format_duration(Duration::from_secs(t.elapsed().as_secs()))
            ),
            node.clone(),
        ))
    }

    /// The page's JSON. `extra` adds bases this view does not hold (the agent's history) and
    /// gives the tree of one of them.
    pub fn page(&self, query: &PageQuery, tick: Duration, extra: &dyn ExtraBases) -> String {
        let mut diff_bases = self.bases();
        diff_bases.extend(extra.list());
        let diff = query.diff.as_deref().and_then(|id| {
            let (label, base) = self.base(id).or_else(|| extra.get(id))?;
            Some(Diff {
                base: id.to_string(),
                label,
                inuse_space: self.inuse.as_ref()?.diff(Some(&base)),
            })
        });
        let groups = self.groups.as_ref().filter(|_| query.goroutines);
        PageData {
            mode: Mode::Live,
            tick_s: tick.as_secs_f64(),
            generated_at: page_data::now_rfc3339(),
            targets: None,
            report: self.report.as_ref(),
            flames: Flames {
                inuse_space: self.inuse.clone(),
                alloc_space: self.alloc.clone(),
                goroutines: groups.and_then(|(_, _, tree)| tree.clone()),
            },
            groups: groups.map(|(_, g, _)| g.as_slice()),
            diff_bases,
            diff,
        }
        .to_json()
    }
}

/// Diff bases kept elsewhere than in the view.
pub trait ExtraBases {
    fn list(&self) -> Vec<DiffBase>;
    /// The label and heap-in-use tree of base `id`.
    fn get(&self, id: &str) -> Option<(String, Node)>;
}

impl ExtraBases for () {
    fn list(&self) -> Vec<DiffBase> {
        Vec::new()
    }
    fn get(&self, _: &str) -> Option<(String, Node)> {
        None
    }
}

/// A view shared between the session's loop (which refreshes it every tick) and the server.
#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<LiveView>>);

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, LiveView> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called every tick of the session.
    pub fn refresh(&self, session: &Session) {
        if let Err(e) = self.lock().refresh(session) {
            log::warn!("live page: {e}");
        }
    }
}

pub mod serve;
