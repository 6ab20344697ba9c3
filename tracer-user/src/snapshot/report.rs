//! The report: the machine-readable result of a session (`report.json`). Its schema is
//! documented in the README ("report.json"); names here are stable, later features only add
//! fields.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracer_common::ProbeKind;

use super::Parts;
use crate::{
    attach::SamplerState,
    detect::Finding,
    goruntime::{
        gcstats::GcSnapshot,
        traceback::{self, show_frame},
        OffsetsSource,
    },
    model::{
        finalizers::SetFinalizerSite,
        gc::GcObservation,
        goroutine_sites::GoroutineAges,
        heap::{self, AgeHistogram},
        Footprint,
    },
    symbols::{Frame, Symbolizer},
    target::TargetInfo,
};

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// Ctrl-C, SIGTERM, or the caller's stop future.
    Stopped,
    Duration,
    TargetExited,
    /// The process exec'd another program (same pid): what was learnt of the old one is void.
    TargetExeced,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    #[serde(deserialize_with = "crate::util::static_str")]
    pub gotrace_version: crate::util::StaticStr,
    pub target: TargetInfo,
    pub session: SessionInfo,
    pub counters: Counters,
    pub goroutines: GoroutineReport,
    pub channels: Vec<ChannelReport>,
    pub finalizers: Vec<SetFinalizerSite>,
    pub heap: HeapReport,
    pub gc: GcReport,
    /// The detectors' verdicts (see `detect`): `{pattern, site, stack, evidence, hint}`.
    pub findings: Vec<Finding>,
    /// Heap in use against the GC's goal, goroutines, stack bytes and GC cycles over the
    /// session (at most 1024 points, spread over all of it).
    #[serde(default)]
    pub timeline: Vec<crate::model::timeline::TimePoint>,
}

/// Go's heap profile as of the last GC cycle before the end, scaled like `go tool pprof`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeapReport {
    /// What gotrace did to `runtime.MemProfileRate` (null: not found in this binary).
    pub sampler: Option<SamplerState>,
    /// Why there is no heap profile, if there is none.
    pub unavailable: Option<String>,
    /// The pprof file in the output directory, when written.
    pub profile: Option<String>,
    pub inuse_bytes: u64,
    pub inuse_objects: u64,
    pub alloc_bytes: u64,
    pub alloc_objects: u64,
    /// Allocation sites by bytes in use, most first (at most 20).
    pub top: Vec<HeapSite>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeapSite {
    /// The innermost frame outside package runtime.
    pub site: Frame,
    pub stack: Vec<Frame>,
    pub object_size: u64,
    pub inuse_bytes: u64,
    pub inuse_objects: u64,
    pub alloc_bytes: u64,
    pub alloc_objects: u64,
    /// GC cycles survived by this site's live sampled objects (null: not tracked).
    pub age: Option<AgeHistogram>,
}

/// One allocation site's share of `top`, over every stack that allocates there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteTotal {
    pub site: Frame,
    pub inuse_bytes: u64,
    pub alloc_bytes: u64,
    /// The most GC cycles one of its objects survived, when tracked.
    pub oldest: Option<u32>,
}

impl HeapReport {
    /// `top` with the stacks that share a site added up (callers of one allocating function,
    /// objects of several sizes), most bytes in use first: a site a line, as summaries list
    /// them.
    pub fn by_site(&self) -> Vec<SiteTotal> {
        let mut out: Vec<SiteTotal> = Vec::new();
        for s in &self.top {
            let oldest = s.age.as_ref().map(|a| a.oldest);
            match out.iter_mut().find(|t| t.site == s.site) {
                Some(t) => {
                    t.inuse_bytes += s.inuse_bytes;
                    t.alloc_bytes += s.alloc_bytes;
                    t.oldest = t.oldest.max(oldest);
                }
                None => out.push(SiteTotal {
                    site: s.site.clone(),
                    inuse_bytes: s.inuse_bytes,
                    alloc_bytes: s.alloc_bytes,
                    oldest,
                }),
            }
        }
        out.sort_by_key(|t| std::cmp::Reverse((t.inuse_bytes, t.alloc_bytes)));
        out
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GcReport {
    /// GC cycles completed while attached, and how many of them were forced.
    pub cycles: u32,
    pub forced: u32,
    pub automatic: u32,
    pub at_attach: Option<GcSnapshot>,
    pub at_end: Option<GcSnapshot>,
    /// One entry per GC cycle observed (several quick cycles can share one).
    pub per_cycle: Vec<GcObservation>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionInfo {
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_s: f64,
    /// From the command start to every probe attached.
    pub attach_ms: f64,
    /// Why the session ended (null: a snapshot taken while it runs).
    pub end_reason: Option<StopReason>,
    pub probes: Vec<ProbeReport>,
    pub offsets_source: OffsetsSource,
    /// What gotrace itself holds: the entries of its bounded tables, and how many it evicted.
    pub footprint: Footprint,
    /// Looks whose walk of every goroutine was cut short to end the session on time (a
    /// program with a million goroutines takes seconds to read): their goroutines are left out.
    pub looks_cut_short: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeReport {
    #[serde(deserialize_with = "crate::util::static_str")]
    pub name: crate::util::StaticStr,
    pub sites: usize,
    pub hits: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    pub goroutines_created: u64,
    pub goroutines_exited: u64,
    /// Counted by their probes: null when the probe was not placed (not measured, not zero).
    pub chan_sends: Option<u64>,
    pub chans_made: Option<u64>,
    pub finalizers_set: Option<u64>,
    pub mallocs: Option<u64>,
    pub events_lost: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GoroutineReport {
    /// Stack bytes held by live goroutines at attach and at the end.
    pub stack_in_use_at_start: Option<u64>,
    pub stack_in_use_at_end: Option<u64>,
    /// The program's goroutines when gotrace attached, read from `allgs`: what
    /// `runtime.NumGoroutine`, `go_goroutines` and Go's goroutine profile count (the
    /// runtime's own left out, see `system_at_start`).
    pub live_at_start: Option<u64>,
    /// The same at the end: counted again if the target still runs, else the count at attach
    /// plus created minus exited.
    pub live_at_end: Option<u64>,
    /// The runtime's own goroutines (GC workers, the finalizer goroutine...) at attach and at
    /// the latest count.
    pub system_at_start: Option<u64>,
    pub system_at_end: Option<u64>,
    /// Goroutines created while attached, per `go` statement, most first (with
    /// `--goroutine-events`, which sees every one).
    pub created_by_site: Vec<GoSite>,
    /// Goroutines alive at the end per `go` statement, most first (at most 20).
    pub live_by_site: Vec<LiveSite>,
    /// The parent→child tree of the goroutines alive at the end, folded by creation site:
    /// which `go` statement started goroutines that then ran which `go` statement (Go 1.21+
    /// records each goroutine's parent; `parent_site` is null for the main goroutine, the
    /// runtime's, and parents that have exited). At most 50 edges, largest first.
    pub tree: Vec<TreeEdge>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TreeEdge {
    pub parent_site: Option<Frame>,
    pub site: Frame,
    pub live: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GoSite {
    /// The `go` statement.
    pub site: Frame,
    /// The stack that ran it (runtime frames of the creation hidden), innermost first.
    pub creation_stack: Vec<Frame>,
    /// The goroutines' function.
    pub function: String,
    pub created: u64,
    pub exited: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LiveSite {
    pub site: Frame,
    pub function: String,
    pub live: u64,
    /// Of which blocked (waiting on a channel, lock, timer...).
    pub blocked: u64,
    /// How long they have been alive.
    pub ages: GoroutineAges,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChannelReport {
    pub address: String,
    pub capacity: u64,
    pub sends: u64,
    /// Buffered elements when the last observed send began.
    pub last_len: u64,
    pub max_len: u64,
    pub last_sender: Frame,
}

impl Report {
    /// The report of a session, as of now.
    pub(crate) fn build(p: &Parts<'_>) -> Report {
        let att = p.att;
        let target = &att.target;
        let sym = &att.symbols;
        let bias = target.load_bias;
        let model = p.model;
        let hits = |k| att.hits(k);
        let counted = |k| p.probed(k).then(|| att.hits(k));

        let mut created_by_site: Vec<GoSite> = model
            .goroutines
            .by_site
            .iter()
            .map(|(pc, s)| GoSite {
                site: sym.caller_frame(pc.wrapping_sub(bias)),
                creation_stack: att
                    .user_stack(s.stack_id)
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|pc| sym.caller_frames(pc.wrapping_sub(bias)))
                    .filter(|f| show_frame(&f.function))
                    .collect(),
                function: traceback::goroutine_function(
                    &target.binary,
                    s.startpc.wrapping_sub(bias),
                ),
                created: s.created,
                exited: s.exited,
            })
            .collect();
        created_by_site.sort_by(|a, b| {
            b.created
                .cmp(&a.created)
                .then(a.site.function.cmp(&b.site.function))
        });

        let mut channels: Vec<ChannelReport> = model
            .channels
            .by_address
            .iter()
            .map(|(addr, c)| ChannelReport {
                address: format!("{addr:#x}"),
                capacity: c.capacity,
                sends: c.sends,
                last_len: c.last_len,
                max_len: c.max_len,
                last_sender: sym.caller_frame(c.last_caller.wrapping_sub(bias)),
            })
            .collect();
        channels.sort_by_key(|c| std::cmp::Reverse(c.sends));

        let finalizers =
            model
                .finalizer_sites
                .named(&target.binary, &att.runtime.offsets, bias, sym);

        Report {
            gotrace_version: env!("CARGO_PKG_VERSION"),
            target: target.info(),
            session: SessionInfo {
                started_at: humantime::format_rfc3339_seconds(p.started_wall).to_string(),
                duration_s: round3(p.elapsed),
                attach_ms: att.attach_time.as_secs_f64() * 1e3,
                end_reason: p.reason,
                probes: att
                    .enabled_probes()
                    .map(|probe| ProbeReport {
                        name: probe.name,
                        sites: probe.sites.len(),
                        hits: hits(probe.kind),
                    })
                    .collect(),
                offsets_source: att.runtime.offsets.source.clone(),
                footprint: model.footprint(),
                looks_cut_short: model.looks_cut_short,
            },
            counters: Counters {
                goroutines_created: p.goroutines_created().unwrap_or(0),
                goroutines_exited: p.goroutines_exited().unwrap_or(0),
                chan_sends: counted(ProbeKind::ChanSend),
                chans_made: counted(ProbeKind::ChanMake),
                finalizers_set: counted(ProbeKind::SetFinalizer),
                mallocs: counted(ProbeKind::Malloc),
                events_lost: att.events_lost(),
            },
            findings: p.findings.to_vec(),
            timeline: model.timeline.points().to_vec(),
            heap: heap_report(p, sym),
            gc: {
                let (cycles, forced) = model.gc.cycles_since_attach();
                GcReport {
                    cycles,
                    forced,
                    automatic: cycles - forced.min(cycles),
                    at_attach: model.gc.at_attach,
                    at_end: model.gc.latest,
                    per_cycle: model.gc.observations.iter().cloned().collect(),
                }
            },
            goroutines: GoroutineReport {
                tree: goroutine_tree(p.goroutines, sym),
                stack_in_use_at_start: model.census_at_start.map(|c| c.stack_bytes),
                stack_in_use_at_end: model.census.map(|c| c.stack_bytes),
                live_at_start: model.census_at_start.map(|c| c.user),
                live_at_end: p.live_goroutines().map(|n| n.max(0) as u64),
                system_at_start: model.census_at_start.map(|c| c.system()),
                system_at_end: model.census.map(|c| c.system()),
                created_by_site,
                live_by_site: model
                    .goroutine_sites
                    .live_by_site()
                    .into_iter()
                    .take(20)
                    .map(|s| LiveSite {
                        site: sym.creation_site(s.gopc, s.startpc),
                        function: traceback::goroutine_function(&target.binary, s.startpc),
                        live: s.live,
                        blocked: s.blocked,
                        ages: s.ages,
                    })
                    .collect(),
            },
            channels,
            finalizers,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serialises")
    }
}

/// Folds the parent links of the live goroutines into creation-site edges.
fn goroutine_tree(gs: &[crate::goruntime::allgs::GSnapshot], sym: &Symbolizer) -> Vec<TreeEdge> {
    let site_of: std::collections::HashMap<u64, u64> = gs
        .iter()
        .filter(|g| g.is_live() && g.gopc != 0)
        .map(|g| (g.goid, g.gopc))
        .collect();
    // A start function per `go` statement: it tells the main goroutine's apart.
    let start_of: std::collections::HashMap<u64, u64> = gs
        .iter()
        .filter(|g| g.is_live())
        .map(|g| (g.gopc, g.startpc))
        .collect();
    let mut edges: std::collections::HashMap<(Option<u64>, u64), u64> = Default::default();
    for g in gs.iter().filter(|g| g.is_live() && g.gopc != 0) {
        let Some(parent) = g.parent_goid else {
            return Vec::new();
        };
        *edges
            .entry((site_of.get(&parent).copied(), g.gopc))
            .or_default() += 1;
    }
    let site = |gopc: u64| sym.creation_site(gopc, start_of.get(&gopc).copied().unwrap_or(0));
    let mut out: Vec<TreeEdge> = edges
        .into_iter()
        .map(|((parent, gopc), live)| TreeEdge {
            parent_site: parent.map(site),
            site: site(gopc),
            live,
        })
        .collect();
    out.sort_by(|a, b| {
        b.live
            .cmp(&a.live)
            .then(a.site.function.cmp(&b.site.function))
    });
    out.truncate(50);
    out
}

/// Top sites and totals of the session's last heap profile.
fn heap_report(p: &Parts<'_>, sym: &Symbolizer) -> HeapReport {
    let sampler = p.att.sampler();
    let mut report = HeapReport {
        sampler: sampler.state().cloned(),
        unavailable: sampler.unavailable().map(str::to_string),
        profile: None,
        inuse_bytes: 0,
        inuse_objects: 0,
        alloc_bytes: 0,
        alloc_objects: 0,
        top: Vec::new(),
    };
    let Some(profile) = &p.model.heap else {
        return report;
    };
    let ages = p.model.ages.by_bucket();
    let mut sites: Vec<HeapSite> = heap::scaled(profile)
        .map(|s| {
            let r = s.record;
            let stack: Vec<Frame> = r
                .stack
                .iter()
                .flat_map(|pc| sym.caller_frames(*pc))
                .collect();
            HeapSite {
                site: crate::detect::site_of(&stack),
                stack,
                object_size: r.object_size,
                inuse_bytes: s.inuse_bytes,
                inuse_objects: s.inuse_objects,
                alloc_bytes: s.alloc_bytes,
                alloc_objects: s.alloc_objects,
                age: ages.get(&r.bucket).cloned(),
            }
        })
        .collect();
    for s in &sites {
        report.inuse_bytes += s.inuse_bytes;
        report.inuse_objects += s.inuse_objects;
        report.alloc_bytes += s.alloc_bytes;
        report.alloc_objects += s.alloc_objects;
    }
    sites.sort_by_key(|s| std::cmp::Reverse((s.inuse_bytes, s.alloc_bytes)));
    sites.truncate(20);
    report.top = sites;
    report
}

fn round3(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}
