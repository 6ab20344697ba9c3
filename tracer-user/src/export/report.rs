//! `report.json`: the machine-readable result of a session. Its schema is documented in the
//! README ("report.json"); names here are stable, later features only add fields.

use std::{path::Path, time::Duration};

use serde::Serialize;
use tracer_common::ProbeKind;

use crate::{
    error::{Error, Result},
    goruntime::{allgs, OffsetsSource},
    session::{Session, StopReason},
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
    pub finalizers: Vec<SiteCount>,
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
    pub finalizers_set: u64,
    pub alloc_samples: u64,
    pub mallocs: u64,
    pub events_lost: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct GoroutineReport {
    /// All goroutines (runtime ones included) when gotrace attached, read from `allgs`.
    pub live_at_start: Option<u64>,
    /// The same at the end: counted again if the target still runs, else the count at attach
    /// plus created minus exited.
    pub live_at_end: Option<u64>,
    /// Goroutines created while attached, per `go` statement, most first.
    pub created_by_site: Vec<GoSite>,
}

#[derive(Clone, Debug, Serialize)]
pub struct GoSite {
    /// The `go` statement.
    pub site: Frame,
    /// The goroutines' function.
    pub function: String,
    pub created: u64,
    pub exited: u64,
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

#[derive(Clone, Debug, Serialize)]
pub struct SiteCount {
    pub site: Frame,
    pub count: u64,
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
                function: sym.frame(s.startpc.wrapping_sub(bias)).function,
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

        let mut finalizers: Vec<SiteCount> = model
            .finalizer_sites
            .iter()
            .map(|(pc, n)| SiteCount {
                site: sym.caller_frame(pc.wrapping_sub(bias)),
                count: *n,
            })
            .collect();
        finalizers.sort_by_key(|f| std::cmp::Reverse(f.count));

        let live_at_end = if target.is_alive() {
            allgs::census(target, &session.runtime)
                .and_then(|r| r.ok())
                .map(|c| c.all)
        } else {
            None
        }
        .or_else(|| session.live_goroutines().map(|n| n.max(0) as u64));

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
                goroutines_created: hits(ProbeKind::GoroutineCreate),
                goroutines_exited: hits(ProbeKind::GoroutineExit),
                chan_sends: hits(ProbeKind::ChanSend),
                finalizers_set: hits(ProbeKind::SetFinalizer),
                alloc_samples: hits(ProbeKind::AllocSample),
                mallocs: hits(ProbeKind::Malloc),
                events_lost: session.events_lost(),
            },
            goroutines: GoroutineReport {
                live_at_start: session.live_at_start.map(|c| c.all),
                live_at_end,
                created_by_site,
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

fn round3(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}
