//! Loading gotrace's eBPF object and attaching its programs to one process.

pub mod libc;
pub mod placement;
pub mod plan;

use std::{num::NonZeroU32, time::Instant};

use aya::{
    maps::{MapData, PerCpuArray, RingBuf, StackTraceMap},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeScope},
        UProbe,
    },
    Ebpf, EbpfLoader,
};
use tracer_common::{
    ProbeConfig, ProbeKind, CONFIG_GLOBAL, EVENTS_MAP, HITS_MAP, LOST_MAP, STACKS_MAP,
};

pub use plan::{PlannedProbe, ProbeSite};

use crate::error::{Error, Result};

/// The eBPF object built from `tracer-ebpf/` by this crate's build script.
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("GOTRACE_EBPF_OBJECT"));

/// Which probes to place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSelection(Vec<ProbeKind>);

impl ProbeSelection {
    /// What `gotrace attach` places unless told otherwise: nothing. The heap profile,
    /// goroutines, GC, channels and the finalizer queue are read from the runtime's memory,
    /// which costs the target nothing; every probe costs each call of its function a trap
    /// (~4 µs), which some program somewhere calls in a tight loop.
    pub fn default_set() -> Self {
        ProbeSelection(Vec::new())
    }

    /// Adds the per-goroutine start/exit probes (exact events with parent and creation site;
    /// they cost every `go` statement a trap).
    pub fn with_goroutine_events(self) -> Self {
        self.with(ProbeKind::GoroutineCreate)
            .with(ProbeKind::GoroutineExit)
    }

    /// No probe at all: the session only reads the runtime's memory (no BPF needed).
    pub fn none() -> Self {
        Self::default_set()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn with(mut self, kind: ProbeKind) -> Self {
        if !self.0.contains(&kind) {
            self.0.push(kind);
        }
        self
    }

    pub fn contains(&self, kind: ProbeKind) -> bool {
        self.0.contains(&kind)
    }
}

/// Programs loaded in the kernel and attached to one process. Dropping it detaches every probe
/// and unloads every program and map.
pub struct AttachedProbes {
    bpf: Ebpf,
    pub sites_attached: usize,
    pub attach_time: std::time::Duration,
}

/// Kernel-side state handed to the event reader.
pub struct ProbeMaps {
    /// Taken by the session's reader while it runs.
    pub events: Option<RingBuf<MapData>>,
    pub hits: PerCpuArray<MapData, u64>,
    pub lost: PerCpuArray<MapData, u64>,
    pub stacks: StackTraceMap<MapData>,
    /// Outstanding C allocations per stack, per CPU.
    pub c_stacks: aya::maps::PerCpuHashMap<MapData, i64, tracer_common::CStack>,
}

impl AttachedProbes {
    /// Loads the object with `config` and attaches every enabled probe of `plan` to `pid`
    /// through `exe` (normally `/proc/PID/exe`, which reaches the binary even in another mount
    /// namespace or after it was deleted on disk).
    pub fn attach(
        pid: u32,
        exe: &std::path::Path,
        config: ProbeConfig,
        plan: &[PlannedProbe],
    ) -> Result<Self> {
        let start = Instant::now();
        let mut bpf = EbpfLoader::new()
            .override_global(CONFIG_GLOBAL, &config, true)
            .load(OBJECT)
            .map_err(|e| Error::Load(error_chain(&e)))?;
        let pid_nz = NonZeroU32::new(pid).ok_or(Error::NoSuchProcess { pid })?;
        let mut sites_attached = 0;
        let mut loaded: Vec<&str> = Vec::new();
        for probe in plan.iter().filter(|p| p.enabled) {
            if let Some(reason) = &probe.unavailable {
                return Err(Error::Attach {
                    probe: probe.name,
                    pid,
                    reason: reason.clone(),
                });
            }
            let program: &mut UProbe = bpf
                .program_mut(probe.program)
                .ok_or_else(|| {
                    Error::Load(format!("program {} missing from the object", probe.program))
                })?
                .try_into()
                .map_err(|e| Error::Load(error_chain(&e)))?;
            // One program can serve several probes (the C allocators' common return probe).
            if !loaded.contains(&probe.program) {
                program
                    .load()
                    .map_err(|e| Error::Load(format!("{}: {}", probe.program, error_chain(&e))))?;
                loaded.push(probe.program);
            }
            let path = probe.target.as_deref().unwrap_or(exe);
            for site in &probe.sites {
                program
                    .attach(
                        UProbeAttachLocation::AbsoluteOffset(site.file_offset),
                        path,
                        UProbeScope::OneProcess(pid_nz),
                    )
                    .map_err(|e| Error::Attach {
                        probe: probe.name,
                        pid,
                        reason: format!(
                            "{} at {:#x}: {}",
                            site.function,
                            site.address,
                            error_chain(&e)
                        ),
                    })?;
                sites_attached += 1;
            }
        }
        Ok(AttachedProbes {
            bpf,
            sites_attached,
            attach_time: start.elapsed(),
        })
    }

    /// Takes the maps out for the event reader (the programs stay attached).
    pub fn take_maps(&mut self) -> Result<ProbeMaps> {
        let mut take = |name: &str| {
            self.bpf
                .take_map(name)
                .ok_or_else(|| Error::Load(format!("map {name} missing from the object")))
        };
        let events = take(EVENTS_MAP)?;
        let hits = take(HITS_MAP)?;
        let lost = take(LOST_MAP)?;
        let stacks = take(STACKS_MAP)?;
        let c_stacks = take(tracer_common::C_STACKS_MAP)?;
        let conv = |e: aya::maps::MapError| Error::Load(error_chain(&e));
        Ok(ProbeMaps {
            events: Some(RingBuf::try_from(events).map_err(conv)?),
            hits: PerCpuArray::try_from(hits).map_err(conv)?,
            lost: PerCpuArray::try_from(lost).map_err(conv)?,
            stacks: StackTraceMap::try_from(stacks).map_err(conv)?,
            c_stacks: aya::maps::PerCpuHashMap::try_from(c_stacks).map_err(conv)?,
        })
    }
}

impl ProbeMaps {
    /// Sum over CPUs of a per-probe counter array.
    pub fn counter(map: &PerCpuArray<MapData, u64>, kind: ProbeKind) -> u64 {
        map.get(&(kind as u32), 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }
}

/// gotrace programs currently loaded in the kernel, by any process: `(id, name)`. The kernel
/// keeps the first 15 bytes of a program's name.
pub fn loaded_in_kernel() -> Vec<(u32, String)> {
    let ours: Vec<String> = plan::PROBES
        .iter()
        .map(|d| d.program)
        .chain(libc::PROGRAMS.iter().copied())
        .map(|p| p.chars().take(15).collect())
        .collect();
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .filter_map(|p| {
            let name = p.name_as_str()?.to_string();
            ours.contains(&name).then(|| (p.id(), name))
        })
        .collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
