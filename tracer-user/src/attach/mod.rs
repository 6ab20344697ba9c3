//! The first stage: what gotrace holds of one traced process while attached — the target and
//! its runtime, the symbolizer of its binary (built once), the probes placed on it, and the
//! guard that gives Go's heap sampler back as it was found whatever way the session ends.

use std::time::{Duration, Instant};

use tracer_common::ProbeKind;

mod ledger;
mod sampler;

pub use sampler::{Handover, SamplerGuard, SamplerRequest, SamplerState};

use crate::{
    error::{Error, Result},
    goruntime::Runtime,
    privileges,
    probes::{plan, AttachedProbes, PlannedProbe, ProbeMaps, ProbeSelection},
    symbols::Symbolizer,
    target::Target,
};

/// One attached process.
pub struct Attachment {
    pub target: Target,
    pub runtime: Runtime,
    /// Every probe gotrace knows of, with where it would be placed and whether it is enabled.
    pub plan: Vec<PlannedProbe>,
    /// Symbols of the target's executable, shared by every stage and output.
    pub symbols: Symbolizer,
    pub attach_time: Duration,
    // Declared before `sampler`: probes come off before the rate is put back.
    probes: Option<AttachedProbes>,
    maps: Option<ProbeMaps>,
    sampler: SamplerGuard,
}

impl Attachment {
    /// Checks privileges and the target, turns Go's heap sampler on (unless read-only), then
    /// loads and attaches the probes (none when `probes` is empty: then no BPF at all).
    pub fn new(pid: u32, probes: &ProbeSelection, sampler: SamplerRequest) -> Result<Self> {
        let begin = Instant::now();
        let bpf = !probes.is_empty();
        privileges::check(pid, bpf)?;
        if bpf {
            privileges::check_kernel()?;
        }
        let target = Target::open(pid)?;
        let runtime = Runtime::for_process(&target)?;
        // From here on, any error drops the guard, which restores the sampler.
        let sampler = SamplerGuard::enable(&target, &runtime, sampler)?;
        let mut plan = plan::plan(&target.binary, probes);
        if probes.contains(ProbeKind::CMalloc) {
            let c = crate::probes::libc::plan(pid, true)?;
            if c.is_empty() {
                return Err(Error::Other(format!(
                    "--cgo-malloc: process {pid} has no C library mapped (a pure Go program allocates nothing in C)"
                )));
            }
            plan.extend(c);
        }
        let (attached, maps) = if bpf {
            let config = runtime.probe_config(&target.binary)?;
            let mut attached = AttachedProbes::attach(pid, &target.exe_handle, config, &plan)?;
            let maps = attached.take_maps()?;
            log::debug!(
                "attached {} probe sites in {:?} ({:?} in the kernel)",
                attached.sites_attached,
                begin.elapsed(),
                attached.attach_time
            );
            (Some(attached), Some(maps))
        } else {
            (None, None)
        };
        let symbols = Symbolizer::new(target.binary.clone());
        Ok(Attachment {
            target,
            runtime,
            plan,
            symbols,
            attach_time: begin.elapsed(),
            probes: attached,
            maps,
            sampler,
        })
    }

    pub fn enabled_probes(&self) -> impl Iterator<Item = &PlannedProbe> {
        self.plan.iter().filter(|p| p.enabled)
    }

    pub fn sampler(&self) -> &SamplerGuard {
        &self.sampler
    }

    pub(crate) fn maps(&self) -> Option<&ProbeMaps> {
        self.maps.as_ref()
    }

    pub(crate) fn maps_mut(&mut self) -> Option<&mut ProbeMaps> {
        self.maps.as_mut()
    }

    /// Kernel-side count of hits of one probe (exact even when events were dropped).
    pub fn hits(&self, kind: ProbeKind) -> u64 {
        self.maps
            .as_ref()
            .map_or(0, |m| ProbeMaps::counter(&m.hits, kind))
    }

    pub fn events_lost(&self) -> u64 {
        self.maps.as_ref().map_or(0, |m| {
            ProbeKind::ALL
                .iter()
                .map(|k| ProbeMaps::counter(&m.lost, *k))
                .sum()
        })
    }

    /// A user stack recorded by a probe (runtime addresses, innermost first).
    pub fn user_stack(&self, stack_id: i64) -> Option<Vec<u64>> {
        let maps = self.maps.as_ref()?;
        let trace = maps.stacks.get(&u32::try_from(stack_id).ok()?, 0).ok()?;
        Some(trace.frames().iter().map(|f| f.ip).collect())
    }

    /// Restores the sampler now, while the target still runs (the guard would do it later).
    pub fn restore_sampler(&mut self) {
        self.sampler.restore();
    }

    /// Takes the attached probes out, to drop them (slow: ~0.1 s per probe) elsewhere; the
    /// maps stay readable.
    pub(crate) fn take_probes(&mut self) -> Option<AttachedProbes> {
        self.probes.take()
    }
}
