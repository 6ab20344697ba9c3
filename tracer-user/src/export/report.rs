//! `report.json`: the machine-readable result of a session. Its schema is documented in the
//! README ("report.json"); names here are stable, later features only add fields.

use std::{path::Path, time::Duration};

use serde::Serialize;
use tracer_common::ProbeKind;

use crate::{
    detect::{goroutine_leak::GoroutineAges, Finding},
    error::{Error, Result},
    goruntime::{gcstats::GcSnapshot, heapprof::SamplerState, traceback, OffsetsSource},
    model::{
        gc::GcObservation,
        heap::{self, AgeHistogram},
    },
    session::{Session, SetFinalizerSite, StopReason},
    symbols::{Frame, Symbolizer},
    target::TargetInfo,
};

pub const REPORT_FILE: &str = "report.json";

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub gotrace_version: &'static str,
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
}

/// Go's heap profile as of the last GC cycle before the end, scaled like `go tool pprof`.
#[derive(Clone, Debug, Serialize)]
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

#[derive(Clone, Debug, Serialize)]
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

#[derive(Clone, Debug, Serialize)]
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

#[derive(Clone, Debug, Serialize)]
pub struct SessionInfo {
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_s: f64,
    /// From the command start to every probe attached.
    pub attach_ms: f64,
    pub end_reason: StopReason,
    pub probes: Vec<ProbeReport>,
    pub offsets_source: OffsetsSource,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    pub name: &'static str,
    pub sites: usize,
    pub hits: u64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counters {
    pub goroutines_created: u64,
    pub goroutines_exited: u64,
    pub chan_sends: u64,
    pub chans_made: u64,
    pub finalizers_set: u64,
    pub alloc_samples: u64,
    pub mallocs: u64,
    pub events_lost: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct GoroutineReport {
    /// Stack bytes held by live goroutines at attach and at the end.
    pub stack_in_use_at_start: Option<u64>,
    pub stack_in_use_at_end: Option<u64>,
    /// All goroutines (runtime ones included) when gotrace attached, read from `allgs`.
    pub live_at_start: Option<u64>,
    /// The same at the end: counted again if the target still runs, else the count at attach
    /// plus created minus exited.
    pub live_at_end: Option<u64>,
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

#[derive(Clone, Debug, Serialize)]
pub struct TreeEdge {
    pub parent_site: Option<Frame>,
    pub site: Frame,
    pub live: u64,
}

#[derive(Clone, Debug, Serialize)]
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

#[derive(Clone, Debug, Serialize)]
pub struct LiveSite {
    pub site: Frame,
    pub function: String,
    pub live: u64,
    /// Of which blocked (waiting on a channel, lock, timer...).
    pub blocked: u64,
    /// How long they have been alive.
    pub ages: GoroutineAges,
}

#[derive(Clone, Debug, Serialize)]
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
    /// Builds the report of a session that has finished running.
    pub fn build(session: &Session, reason: StopReason) -> Report {
        let target = &session.target;
        let sym = Symbolizer::new(&target.binary);
        let bias = target.load_bias;
        let model = &session.model;
        let hits = |k| session.hits(k);

        let mut created_by_site: Vec<GoSite> = model
            .goroutines
            .by_site
            .iter()
            .map(|(pc, s)| GoSite {
                site: sym.caller_frame(pc.wrapping_sub(bias)),
                creation_stack: session
                    .user_stack(s.stack_id)
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|pc| sym.caller_frames(pc.wrapping_sub(bias)))
                    .filter(|f| crate::dump::show_frame(&f.function))
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

        let finalizers = session.finalizer_sites(&sym);

        let live_at_end = session.live_goroutines().map(|n| n.max(0) as u64);

        Report {
            gotrace_version: env!("CARGO_PKG_VERSION"),
            target: target.info(),
            session: SessionInfo {
                started_at: humantime::format_rfc3339_seconds(session.started_wall).to_string(),
                duration_s: round3(session.started.elapsed()),
                attach_ms: session.attach_time.as_secs_f64() * 1e3,
                end_reason: reason,
                probes: session
                    .enabled_probes()
                    .map(|p| ProbeReport {
                        name: p.name,
                        sites: p.sites.len(),
                        hits: hits(p.kind),
                    })
                    .collect(),
                offsets_source: session.runtime.offsets.source.clone(),
            },
            counters: Counters {
                goroutines_created: session.goroutines_created().unwrap_or(0),
                goroutines_exited: session.goroutines_exited().unwrap_or(0),
                chan_sends: hits(ProbeKind::ChanSend),
                chans_made: hits(ProbeKind::ChanMake),
                finalizers_set: hits(ProbeKind::SetFinalizer),
                alloc_samples: hits(ProbeKind::AllocSample),
                mallocs: hits(ProbeKind::Malloc),
                events_lost: session.events_lost(),
            },
            findings: session.findings.clone(),
            heap: heap_report(session, &sym),
            gc: {
                let (cycles, forced) = session.gc.cycles_since_attach();
                GcReport {
                    cycles,
                    forced,
                    automatic: cycles - forced.min(cycles),
                    at_attach: session.gc.at_attach,
                    at_end: session.gc.latest,
                    per_cycle: session.gc.observations.clone(),
                }
            },
            goroutines: GoroutineReport {
                tree: goroutine_tree(session, &sym),
                stack_in_use_at_start: session.live_at_start.map(|c| c.stack_bytes),
                stack_in_use_at_end: session.census.map(|c| c.stack_bytes),
                live_at_start: session.live_at_start.map(|c| c.all),
                live_at_end,
                created_by_site,
                live_by_site: session
                    .leaks
                    .live_by_site()
                    .into_iter()
                    .take(20)
                    .map(|s| LiveSite {
                        site: sym.caller_frame(s.gopc),
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

    /// Writes `report.json` into `dir` (created if needed) through a temporary file, so a reader
    /// never sees half a report.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Output { path, source }
        };
        std::fs::create_dir_all(dir).map_err(err(dir))?;
        let path = dir.join(REPORT_FILE);
        let tmp = dir.join(format!(".{REPORT_FILE}.tmp"));
        std::fs::write(&tmp, self.to_json() + "\n").map_err(err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(err(&path))
    }
}

/// Folds the parent links of the live goroutines into creation-site edges.
fn goroutine_tree(session: &Session, sym: &Symbolizer) -> Vec<TreeEdge> {
    let gs = session.goroutines();
    let site_of: std::collections::HashMap<u64, u64> = gs
        .iter()
        .filter(|g| g.is_live() && g.gopc != 0)
        .map(|g| (g.goid, g.gopc))
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
    let mut out: Vec<TreeEdge> = edges
        .into_iter()
        .map(|((parent, site), live)| TreeEdge {
            parent_site: parent.map(|pc| sym.caller_frame(pc)),
            site: sym.caller_frame(site),
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
fn heap_report(session: &Session, sym: &Symbolizer) -> HeapReport {
    let mut report = HeapReport {
        sampler: session.sampler.clone(),
        unavailable: session.heap_unavailable.clone(),
        profile: None,
        inuse_bytes: 0,
        inuse_objects: 0,
        alloc_bytes: 0,
        alloc_objects: 0,
        top: Vec::new(),
    };
    let Some(profile) = &session.heap else {
        return report;
    };
    let ages = session.ages.by_bucket();
    let mut sites: Vec<HeapSite> = profile
        .records
        .iter()
        .map(|r| {
            let (inuse_objects, inuse_bytes) =
                heap::scale(r.inuse_objects(), r.object_size, profile.sample_rate);
            let (alloc_objects, alloc_bytes) =
                heap::scale(r.allocs, r.object_size, profile.sample_rate);
            let stack: Vec<Frame> = r
                .stack
                .iter()
                .flat_map(|pc| sym.caller_frames(*pc))
                .collect();
            let site = crate::detect::site_of(&stack);
            HeapSite {
                site,
                stack,
                object_size: r.object_size,
                inuse_bytes,
                inuse_objects,
                alloc_bytes,
                alloc_objects,
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
