//! The fifth stage: a snapshot — the report, the findings and the profiles, owned and
//! serialisable, taken at any moment while a session runs (the live views) or once it has
//! ended (`attach`, `check` and `record` all end by writing one through [`crate::export`]).

pub mod report;

use std::time::{Duration, SystemTime};

use tracer_common::ProbeKind;

pub use report::{Report, StopReason};

use crate::{
    attach::Attachment,
    detect::Finding,
    dump::Group,
    error::Result,
    goruntime::allgs::GSnapshot,
    model::Model,
    pprof::{self, proto, Executable, Mapping},
};

/// The heap profile's file name in an output directory, which the report names.
pub const HEAP_PPROF: &str = "heap.pb.gz";

/// What a snapshot is taken from: the session's parts, borrowed.
pub(crate) struct Parts<'a> {
    pub att: &'a Attachment,
    pub model: &'a Model,
    pub findings: &'a [Finding],
    /// Every goroutine at the latest look.
    pub goroutines: &'a [GSnapshot],
    pub started_wall: SystemTime,
    pub elapsed: Duration,
    pub reason: Option<StopReason>,
    /// The goroutine groups of the dump taken at the end (`None` while running).
    pub groups: Option<&'a [Group]>,
    /// Everything, the profile at attach included (`false`: what a tick can afford).
    pub full: bool,
}

impl Parts<'_> {
    pub fn probed(&self, kind: ProbeKind) -> bool {
        self.att.enabled_probes().any(|p| p.kind == kind)
    }

    /// Goroutines started while attached: counted by the probes when they are placed, else
    /// from the runtime's goroutine-id generator.
    pub fn goroutines_created(&self) -> Option<u64> {
        if self.probed(ProbeKind::GoroutineCreate) {
            return Some(self.att.hits(ProbeKind::GoroutineCreate));
        }
        Some(
            self.model
                .goids?
                .saturating_sub(self.model.goids_at_attach?),
        )
    }

    /// Goroutines that finished while attached: by the probes, else started minus the growth
    /// of the live count.
    pub fn goroutines_exited(&self) -> Option<u64> {
        if self.probed(ProbeKind::GoroutineExit) {
            return Some(self.att.hits(ProbeKind::GoroutineExit));
        }
        let grown = self.model.census?.all as i64 - self.model.census_at_start?.all as i64;
        Some((self.goroutines_created()? as i64 - grown).max(0) as u64)
    }

    /// The program's goroutines alive now (what `runtime.NumGoroutine` counts): the latest
    /// census, else the census at attach plus what was created minus what exited.
    pub fn live_goroutines(&self) -> Option<i64> {
        if let Some(c) = self.model.census {
            return Some(c.user as i64);
        }
        let start = self.model.census_at_start?;
        Some(
            start.user as i64 + self.att.hits(ProbeKind::GoroutineCreate) as i64
                - self.att.hits(ProbeKind::GoroutineExit) as i64,
        )
    }
}

/// A session's results at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub report: Report,
    /// Go's heap profile as of the last GC cycle (`None`: no profile could be read).
    pub heap: Option<proto::Profile>,
    /// Go's goroutine profile (`goroutine/count` per stack) of the user goroutines.
    pub goroutines: Option<proto::Profile>,
    /// One line saying what the profiles are of, for flamegraph titles.
    pub subtitle: String,
    /// The heap profile gotrace found at attach, to compare with (full snapshots only).
    pub heap_at_attach: Option<proto::Profile>,
    /// Goroutines grouped by state and stack, as `gotrace dump` groups them (at the end of a
    /// session).
    pub groups: Option<Vec<Group>>,
}

/// The attached executable as the profile builder names it: its symbols, its load bias and
/// its mapping (every profile of the session is built against it).
pub(crate) fn with_executable<R>(att: &Attachment, f: impl FnOnce(&Executable<'_>) -> R) -> R {
    let symbolize = |pc: u64| att.symbols.frames(pc);
    f(&Executable {
        symbolize: &symbolize,
        load_bias: att.target.load_bias,
        mapping: Mapping::main_executable(&att.target.binary, att.target.load_bias),
    })
}

impl Snapshot {
    pub(crate) fn take(
        parts: &Parts<'_>,
        goroutine_stacks: Option<&[(Vec<u64>, u64)]>,
    ) -> Result<Snapshot> {
        with_executable(parts.att, |exe| {
            Snapshot::build(parts, goroutine_stacks, exe)
        })
    }

    fn build(
        parts: &Parts<'_>,
        goroutine_stacks: Option<&[(Vec<u64>, u64)]>,
        exe: &Executable<'_>,
    ) -> Result<Snapshot> {
        let att = parts.att;
        let binary = &att.target.binary;
        let heap = match &parts.model.heap {
            Some(h) => Some(pprof::heap_profile(h, exe)?),
            None => None,
        };
        let heap_at_attach = match &parts.model.heap_at_attach {
            Some(h) if parts.full => Some(pprof::heap_profile(h, exe)?),
            _ => None,
        };
        let goroutines = match goroutine_stacks {
            Some(stacks) => {
                let count = pprof::ValueType::new("goroutine", "count");
                let mut b = pprof::ProfileBuilder::new(exe, &[count]);
                b.period(count, 1).time(parts.started_wall, parts.elapsed);
                for (stack, n) in stacks {
                    b.add_go_stack(stack, false, &[i64::try_from(*n).unwrap_or(i64::MAX)], &[])?;
                }
                Some(b.finish())
            }
            None => None,
        };
        let mut report = Report::build(parts);
        if heap.is_some() {
            report.heap.profile = Some(HEAP_PPROF.to_string());
        }
        let rate = parts.model.heap.as_ref().map_or(0, |h| h.sample_rate);
        Ok(Snapshot {
            report,
            heap,
            goroutines,
            heap_at_attach,
            groups: parts.groups.map(<[Group]>::to_vec),
            subtitle: format!(
                "pid {} ({}), {:.0} s after attach, sampled every {} KiB",
                att.target.pid,
                binary.buildinfo.version_string,
                parts.elapsed.as_secs_f64(),
                rate / 1024
            ),
        })
    }
}
