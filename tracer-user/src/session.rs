//! An attach session: probes placed on one process and its runtime read from memory, events
//! and telemetry flowing into the model until the caller's stop signal, the duration, or the
//! target's exit; then a clean detach (sampler restored, probes removed) and a report.

use std::{
    future::Future,
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;
use tokio::io::unix::AsyncFd;
use tracer_common::ProbeKind;

use crate::{
    detect::{
        cgo_malloc_leak::{self, CgoMallocLeak},
        chan_backlog::ChanBacklog,
        closure_retention::ClosureRetention,
        finalizer_abuse::FinalizerAbuse,
        goroutine_leak::GoroutineLeaks,
        heap_growth::HeapGrowth,
        syncpool_misuse::SyncPoolMisuse,
        Finding,
    },
    error::{Error, Result},
    events::Event,
    goruntime::{
        allgs::{census_of, AllGs, Census, GSnapshot},
        channels::ChannelReader,
        finalizers::FinalizerQueue,
        gcstats::{GcReader, GcSnapshot},
        heapprof::{HeapReader, SamplerState},
        pools::PoolReader,
        sched::GoidCounter,
        specials::SpecialsReader,
        traceback::Tracebacks,
        types::TypeNames,
        Runtime,
    },
    model::{
        gc::GcTimeline,
        heap::{AgeTracker, HeapProfile},
        Model,
    },
    privileges,
    probes::{plan, AttachedProbes, PlannedProbe, ProbeMaps, ProbeSelection},
    target::Target,
};

#[derive(Clone, Debug)]
pub struct AttachOptions {
    pub probes: ProbeSelection,
    /// Stop after this long (`None`: until stopped or the target exits).
    pub duration: Option<Duration>,
    /// How often the live summary is produced and the runtime's state is read.
    pub tick: Duration,
    /// `runtime.MemProfileRate` to set (`None`: Go's default, 512 KiB, if the sampler is off).
    pub sample_rate: Option<u64>,
    /// Never write into the target: the heap profile is then only available when the program
    /// already samples.
    pub read_only: bool,
    /// The detectors' thresholds and the patterns switched off.
    pub detect: crate::detect::DetectConfig,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            probes: ProbeSelection::default_set(),
            duration: None,
            tick: Duration::from_secs(1),
            sample_rate: None,
            read_only: false,
            detect: Default::default(),
        }
    }
}

/// The share of one CPU gotrace allows itself for its heavier reads of the target's memory.
const READ_BUDGET: f64 = 0.05;

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// Ctrl-C, SIGTERM, or the caller's stop future.
    Stopped,
    Duration,
    TargetExited,
}

/// A snapshot for the live view.
#[derive(Clone, Debug)]
pub struct Summary {
    pub elapsed: Duration,
    /// Probe hits per second over the last interval, for every enabled probe.
    pub rates: Vec<(&'static str, f64)>,
    /// Goroutines alive now (runtime's own included), when gotrace can tell.
    pub live_goroutines: Option<i64>,
    pub stack_in_use: Option<u64>,
    pub gc: Option<GcSnapshot>,
    pub events_lost: u64,
}

/// Readers of the runtime's state in memory; each is `None` when this binary does not let
/// gotrace find what it needs.
struct Readers {
    allgs: Option<AllGs>,
    heap: Option<HeapReader>,
    gc: Option<GcReader>,
    specials: Option<SpecialsReader>,
    goids: Option<GoidCounter>,
    finq: Option<FinalizerQueue>,
    channels: Option<ChannelReader>,
    pools: Option<PoolReader>,
}

/// A `SetFinalizer` call site, as reported.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SetFinalizerSite {
    pub site: crate::symbols::Frame,
    pub calls: u64,
    /// The finalized objects' Go type, e.g. `*main.conn`.
    pub object_type: Option<String>,
}

pub struct Session {
    pub target: Target,
    pub runtime: Runtime,
    pub plan: Vec<PlannedProbe>,
    pub model: Model,
    pub options: AttachOptions,
    probes: Option<AttachedProbes>,
    maps: Option<ProbeMaps>,
    readers: Readers,
    /// What gotrace did to Go's heap sampler (`None`: not found in this binary).
    pub sampler: Option<SamplerState>,
    /// Why there is no heap profile, when there is none.
    pub heap_unavailable: Option<String>,
    pub attach_time: Duration,
    pub started: Instant,
    pub started_wall: SystemTime,
    pub live_at_start: Option<Census>,
    pub census: Option<Census>,
    pub gc: GcTimeline,
    /// The latest heap profile read (refreshed after every GC cycle and at the end).
    pub heap: Option<HeapProfile>,
    /// Cycles survived by each live sampled object, updated after every GC cycle.
    pub ages: AgeTracker,
    /// Objects with a finalizer set, at the latest look.
    pub finalizers_pending: Option<u64>,
    /// Goroutine ids handed out by the runtime: at attach, and at the latest look.
    goids_at_attach: Option<u64>,
    goids: Option<u64>,
    tracebacks: Tracebacks,
    pub leaks: GoroutineLeaks,
    growth: HeapGrowth,
    pool_misuse: SyncPoolMisuse,
    closure_retention: ClosureRetention,
    /// Each allocation site's heap values per GC cycle.
    pub heap_series: crate::model::heap_series::HeapSeries,
    finalizer_abuse: FinalizerAbuse,
    chan_backlog: ChanBacklog,
    cgo_leaks: CgoMallocLeak,
    /// The latest goroutine snapshot (for the detectors' stacks).
    snapshot: Vec<GSnapshot>,
    /// The detectors' current verdicts.
    pub findings: Vec<Finding>,
    /// The most heap in use (runtime's count) and user goroutines seen at any look.
    pub peak_heap_in_use: Option<u64>,
    pub peak_goroutines: Option<u64>,
    /// When the next walk of the heap's specials, and of every goroutine, may start.
    next_specials_scan: Option<Instant>,
    next_census: Option<Instant>,
    /// Every user goroutine's stack (link-time return PCs) with how many goroutines share it,
    /// taken at the end of `run` while the target still runs: the goroutine profile.
    pub goroutine_stacks: Option<Vec<(Vec<u64>, u64)>>,
}

impl Session {
    /// Checks privileges and the target, turns Go's heap sampler on (unless read-only), then
    /// loads and attaches the probes (none when `options.probes` is empty: then no BPF at all).
    pub fn attach(pid: u32, options: AttachOptions) -> Result<Session> {
        let begin = Instant::now();
        let bpf = !options.probes.is_empty();
        if bpf {
            privileges::check()?;
            privileges::check_kernel()?;
        }
        let target = Target::open(pid)?;
        let runtime = Runtime::for_process(&target)?;
        let readers = Readers {
            allgs: AllGs::new(&target, &runtime),
            heap: HeapReader::new(&target, &runtime),
            gc: GcReader::new(&target, &runtime),
            specials: SpecialsReader::new(&target, &runtime),
            goids: GoidCounter::new(&target, &runtime),
            finq: FinalizerQueue::new(&target, &runtime),
            channels: ChannelReader::new(&runtime),
            pools: PoolReader::new(&target, &runtime),
        };
        let (sampler, heap_unavailable) = match &readers.heap {
            None => (
                None,
                Some("the heap profile variables were not found in this binary".into()),
            ),
            Some(h) => {
                let state = h.enable(&target, options.sample_rate, options.read_only)?;
                let why = (state.rate == 0).then(|| {
                    "the program's heap sampler is off (MemProfileRate = 0) and --read-only forbids turning it on".to_string()
                });
                (Some(state), why)
            }
        };
        let mut plan = plan::plan(&target.binary, &options.probes);
        if options.probes.contains(ProbeKind::CMalloc) {
            let c = crate::probes::libc::plan(pid, true)?;
            if c.is_empty() {
                return Err(Error::Other(format!(
                    "--cgo-malloc: process {pid} has no C library mapped (a pure Go program allocates nothing in C)"
                )));
            }
            plan.extend(c);
        }
        let (probes, maps) = if bpf {
            let config = runtime.probe_config(&target.binary)?;
            let mut probes = AttachedProbes::attach(pid, &target.exe_handle, config, &plan)?;
            let maps = probes.take_maps()?;
            log::debug!(
                "attached {} probe sites in {:?} ({:?} in the kernel)",
                probes.sites_attached,
                begin.elapsed(),
                probes.attach_time
            );
            (Some(probes), Some(maps))
        } else {
            (None, None)
        };
        let live_at_start = readers.allgs.as_ref().and_then(|a| a.census(&target).ok());
        let goids_at_attach = readers.goids.as_ref().and_then(|g| g.created(&target).ok());
        let tracebacks = Tracebacks::new(&target, &runtime);
        let d = &options.detect;
        let leaks = GoroutineLeaks::new(d.goroutine_leak.clone());
        let growth = HeapGrowth::new(d.heap_growth.clone());
        let pool_misuse = SyncPoolMisuse::new(d.syncpool_misuse.clone());
        let closure_retention = ClosureRetention {
            config: d.closure_retention.clone(),
        };
        let finalizer_abuse = FinalizerAbuse::new(d.finalizer_abuse.clone());
        let chan_backlog = ChanBacklog::new(d.chan_backlog.clone());
        let cgo_leaks = CgoMallocLeak::new(d.cgo_malloc_leak.clone());
        let mut session = Session {
            target,
            runtime,
            plan,
            model: Model::default(),
            options,
            probes,
            maps,
            readers,
            sampler,
            heap_unavailable,
            attach_time: begin.elapsed(),
            started: Instant::now(),
            started_wall: SystemTime::now(),
            live_at_start,
            census: live_at_start,
            gc: GcTimeline::default(),
            heap: None,
            ages: AgeTracker::default(),
            finalizers_pending: None,
            goids_at_attach,
            goids: goids_at_attach,
            tracebacks,
            leaks,
            growth,
            pool_misuse,
            closure_retention,
            heap_series: Default::default(),
            finalizer_abuse,
            chan_backlog,
            cgo_leaks,
            snapshot: Vec::new(),
            findings: Vec::new(),
            peak_heap_in_use: None,
            peak_goroutines: None,
            goroutine_stacks: None,
            next_specials_scan: None,
            next_census: None,
        };
        session.observe();
        Ok(session)
    }

    pub fn enabled_probes(&self) -> impl Iterator<Item = &PlannedProbe> {
        self.plan.iter().filter(|p| p.enabled)
    }

    /// Kernel-side count of hits of one probe (exact even when events were dropped).
    pub fn hits(&self, kind: ProbeKind) -> u64 {
        self.maps
            .as_ref()
            .map_or(0, |m| ProbeMaps::counter(&m.hits, kind))
    }

    /// `SetFinalizer` call sites (`--finalizer-sites`), busiest first, with the type of the
    /// objects each one finalizes.
    pub fn finalizer_sites(&self, sym: &crate::symbols::Symbolizer) -> Vec<SetFinalizerSite> {
        let bias = self.target.load_bias;
        let types = TypeNames::new(&self.target.binary, &self.runtime.offsets);
        let mut sites: Vec<SetFinalizerSite> = self
            .model
            .finalizer_sites
            .iter()
            .map(|(pc, s)| SetFinalizerSite {
                site: sym.caller_frame(pc.wrapping_sub(bias)),
                calls: s.calls,
                object_type: types
                    .as_ref()
                    .and_then(|t| t.name(s.obj_type.wrapping_sub(bias))),
            })
            .collect();
        sites.sort_by(|a, b| {
            b.calls
                .cmp(&a.calls)
                .then(a.site.function.cmp(&b.site.function))
        });
        sites
    }

    pub fn events_lost(&self) -> u64 {
        self.maps.as_ref().map_or(0, |m| {
            ProbeKind::ALL
                .iter()
                .map(|k| ProbeMaps::counter(&m.lost, *k))
                .sum()
        })
    }

    /// Goroutines started while attached: counted by the probes when they are placed, else
    /// from the runtime's goroutine-id generator.
    pub fn goroutines_created(&self) -> Option<u64> {
        if self.options.probes.contains(ProbeKind::GoroutineCreate) {
            return Some(self.hits(ProbeKind::GoroutineCreate));
        }
        Some(self.goids?.saturating_sub(self.goids_at_attach?))
    }

    /// Goroutines that finished while attached: by the probes, else started minus the growth
    /// of the live count.
    pub fn goroutines_exited(&self) -> Option<u64> {
        if self.options.probes.contains(ProbeKind::GoroutineExit) {
            return Some(self.hits(ProbeKind::GoroutineExit));
        }
        let grown = self.census?.all as i64 - self.live_at_start?.all as i64;
        Some((self.goroutines_created()? as i64 - grown).max(0) as u64)
    }

    /// Every goroutine at the latest look (dead ones included).
    pub fn goroutines(&self) -> &[GSnapshot] {
        &self.snapshot
    }

    /// A user stack recorded by a probe (runtime addresses, innermost first).
    pub fn user_stack(&self, stack_id: i64) -> Option<Vec<u64>> {
        let maps = self.maps.as_ref()?;
        let trace = maps.stacks.get(&u32::try_from(stack_id).ok()?, 0).ok()?;
        Some(trace.frames().iter().map(|f| f.ip).collect())
    }

    /// Goroutines alive now: the latest census, else the census at attach plus what was
    /// created minus what exited.
    pub fn live_goroutines(&self) -> Option<i64> {
        if let Some(c) = self.census {
            return Some(c.all as i64);
        }
        let start = self.live_at_start?;
        Some(
            start.all as i64 + self.hits(ProbeKind::GoroutineCreate) as i64
                - self.hits(ProbeKind::GoroutineExit) as i64,
        )
    }

    /// Reads the runtime's state: goroutine census, GC counters, and the heap profile when a
    /// GC cycle has published a new one. Errors mean the target is exiting: keep what we have.
    fn observe(&mut self) {
        if !self.target.is_alive() {
            return;
        }
        let t = self.started.elapsed().as_secs_f64();
        if self.options.probes.contains(ProbeKind::CMalloc) {
            if let Some(m) = &self.maps {
                let totals: Vec<(i64, i64, i64)> = m
                    .c_stacks
                    .iter()
                    .filter_map(|r| r.ok())
                    .map(|(stack, per_cpu)| {
                        let (b, n) = per_cpu.iter().fold((0u64, 0u64), |(b, n), c| {
                            (b.wrapping_add(c.bytes), n.wrapping_add(c.blocks))
                        });
                        (stack, b as i64, n as i64)
                    })
                    .collect();
                self.cgo_leaks.update(t, &totals);
            }
        }
        let census_due = self.next_census.is_none_or(|next| Instant::now() >= next);
        if let (Some(a), true) = (&self.readers.allgs, census_due) {
            let begin = Instant::now();
            if let Ok(snapshot) = a.snapshot(&self.target) {
                let census = census_of(&snapshot, &self.target);
                self.peak_goroutines = self.peak_goroutines.max(Some(census.user));
                self.census = Some(census);
                self.leaks.update(t, &snapshot, &self.target);
                let queue = self
                    .readers
                    .finq
                    .as_ref()
                    .and_then(|q| q.len(&self.target).ok());
                self.finalizer_abuse
                    .update(t, queue, &snapshot, &self.target, &self.tracebacks);
                if let Some(r) = &self.readers.channels {
                    let known: Vec<u64> = self.model.channels.by_address.keys().copied().collect();
                    let sym = crate::symbols::Symbolizer::new(&self.target.binary);
                    self.chan_backlog.update(
                        t,
                        &snapshot,
                        known,
                        &self.model.channels.made,
                        r,
                        &self.target,
                        &self.tracebacks,
                        &sym,
                    );
                }
                self.snapshot = snapshot;
            }
            if let Some(c) = self
                .readers
                .pools
                .as_ref()
                .and_then(|r| r.read(&self.target).ok())
            {
                self.pool_misuse.update(&c);
            }
            // A program with a million goroutines takes a while to read: keep within budget.
            self.next_census = Some(Instant::now() + begin.elapsed().div_f64(READ_BUDGET));
        }
        if let Some(g) = &self.readers.goids {
            if let Ok(n) = g.created(&self.target) {
                self.goids = Some(n);
            }
        }
        let Some(gc) = self
            .readers
            .gc
            .as_ref()
            .and_then(|r| r.read(&self.target).ok())
        else {
            return;
        };
        let new_cycle = self.gc.latest.is_none_or(|l| l.cycles != gc.cycles);
        self.peak_heap_in_use = self.peak_heap_in_use.max(Some(gc.heap_in_use));
        self.gc
            .observe(self.started.elapsed().as_secs_f64(), gc, self.census);
        if new_cycle || self.heap.is_none() {
            self.read_heap();
            self.scan_specials(gc.cycles);
            if let Some(h) = &self.heap {
                self.heap_series.update(t, gc.cycles, h);
            }
        }
        self.judge(t);
    }

    /// Runs the detectors over what has been observed so far.
    fn judge(&mut self, t: f64) {
        let sym = crate::symbols::Symbolizer::new(&self.target.binary);
        let mut findings = self.leaks.findings(t, &self.target, &self.tracebacks, &sym);
        if let Some(m) = &self.maps {
            let mut native = crate::symbols::native::NativeSymbols::new(&self.target);
            for (stack, evidence) in self.cgo_leaks.growing() {
                let Ok(trace) = m.stacks.get(&(stack as u32), 0) else {
                    continue;
                };
                let frames: Vec<_> = trace
                    .frames()
                    .iter()
                    .flat_map(|f| native.frames(&self.target, &sym, f.ip))
                    .collect();
                findings.push(cgo_malloc_leak::finding(frames, evidence));
            }
        }
        let ages = self.ages.by_bucket();
        findings.extend(self.growth.findings(&self.heap_series, &sym, &ages));
        findings.extend(self.pool_misuse.findings(&self.heap_series, &sym));
        findings.extend(self.pool_misuse.oversized(&self.target, &sym));
        findings.extend(self.closure_retention.findings(
            &self.heap_series,
            &ages,
            &self.leaks.long_lived(t),
            &self.target.binary,
            &sym,
        ));
        findings.extend(self.chan_backlog.findings(&self.target, &sym));
        findings.extend(self.finalizer_abuse.findings(
            t,
            self.started.elapsed().as_secs_f64(),
            &self.finalizer_sites(&sym),
            &self.target,
            &self.tracebacks,
            &sym,
        ));
        findings.retain(|f| self.options.detect.enabled(f.pattern));
        self.findings = findings;
    }

    /// Walks the heap's specials for object ages. On a heap with millions of specials (every
    /// object with a finalizer has one) a walk takes a while, and the CPU it uses is the one
    /// the target's GC wants too: walks are spaced so that they use at most
    /// [`READ_BUDGET`] of one CPU.
    fn scan_specials(&mut self, cycle: u32) {
        let Some(r) = &self.readers.specials else {
            return;
        };
        if self
            .next_specials_scan
            .is_some_and(|next| Instant::now() < next)
        {
            return;
        }
        let begin = Instant::now();
        match r.scan(&self.target) {
            Ok(scan) => {
                self.ages.update(cycle, &scan.profiled);
                self.finalizers_pending = Some(scan.finalizers);
            }
            Err(e) => log::debug!("walking the heap specials: {e}"),
        }
        let took = begin.elapsed();
        self.next_specials_scan = Some(Instant::now() + took.div_f64(READ_BUDGET));
    }

    fn capture_goroutine_stacks(&mut self) {
        let Some(a) = &self.readers.allgs else {
            return;
        };
        if !self.target.is_alive() {
            return;
        }
        let Ok(snapshot) = a.snapshot(&self.target) else {
            return;
        };
        let pcln = self.target.binary.pclntab();
        let user: Vec<_> = snapshot
            .iter()
            .filter(|g| g.is_live())
            .filter(|g| {
                let start = pcln
                    .func_for_pc(g.startpc)
                    .map(|f| f.name)
                    .unwrap_or_default();
                !crate::goruntime::allgs::is_system_goroutine(&start)
            })
            .collect();
        let Ok(stacks) = self.tracebacks.unwind(&self.target, &user) else {
            return;
        };
        let mut counts: std::collections::HashMap<Vec<u64>, u64> = Default::default();
        for s in stacks {
            *counts.entry(s).or_default() += 1;
        }
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        self.goroutine_stacks = Some(v);
    }

    fn read_heap(&mut self) {
        let (Some(h), Some(s)) = (&self.readers.heap, &self.sampler) else {
            return;
        };
        if s.rate == 0 {
            return;
        }
        match h.read(&self.target, s.rate, self.started_wall) {
            Ok(p) => self.heap = Some(p),
            Err(e) => log::debug!("reading the heap profile: {e}"),
        }
    }

    /// Processes events until `stop` resolves, the duration elapses or the target exits.
    /// `on_tick` receives the session and a summary every `options.tick`.
    pub async fn run(
        &mut self,
        stop: impl Future<Output = ()>,
        mut on_tick: impl FnMut(&Session, &Summary),
    ) -> Result<StopReason> {
        let exit_fd = readable(self.target.exit_fd()?)
            .map_err(|e| Error::Other(format!("watching process {}: {e}", self.target.pid)))?;
        let mut ring = match self.maps.as_mut().and_then(|m| m.events.take()) {
            Some(r) => Some(
                readable(r).map_err(|e| Error::Other(format!("polling the ring buffer: {e}")))?,
            ),
            None => None,
        };
        let deadline = self
            .options
            .duration
            .map(|d| tokio::time::Instant::now() + d);
        let mut ticker = tokio::time::interval(self.options.tick);
        ticker.tick().await;
        let mut last_hits = self.hit_snapshot();
        let mut last_created = self.goroutines_created();
        let mut last_tick = Instant::now();
        tokio::pin!(stop);
        let reason = loop {
            tokio::select! {
                _ = ring_ready(ring.as_mut(), &mut self.model) => {}
                _ = ticker.tick() => {
                    self.observe();
                    let hits = self.hit_snapshot();
                    let secs = last_tick.elapsed().as_secs_f64().max(1e-3);
                    let mut rates: Vec<(&'static str, f64)> = self
                        .enabled_probes()
                        .map(|p| (p.name, (hits[p.kind as usize] - last_hits[p.kind as usize]) as f64 / secs))
                        .collect();
                    let created = self.goroutines_created();
                    if let (false, Some(now), Some(before)) = (
                        self.options.probes.contains(ProbeKind::GoroutineCreate),
                        created,
                        last_created,
                    ) {
                        rates.insert(0, ("goroutines started", now.saturating_sub(before) as f64 / secs));
                    }
                    last_created = created;
                    last_hits = hits;
                    last_tick = Instant::now();
                    let summary = Summary {
                        elapsed: self.started.elapsed(),
                        rates,
                        live_goroutines: self.live_goroutines(),
                        stack_in_use: self.census.map(|c| c.stack_bytes),
                        gc: self.gc.latest,
                        events_lost: self.events_lost(),
                    };
                    on_tick(self, &summary);
                }
                _ = exit_fd.readable() => break StopReason::TargetExited,
                _ = &mut stop => break StopReason::Stopped,
                _ = sleep_until(deadline) => break StopReason::Duration,
            }
        };
        // The final look at the runtime, then give the sampler back as it was.
        self.observe();
        self.read_heap();
        self.capture_goroutine_stacks();
        self.restore_sampler();
        // Removing uprobes takes the kernel ~0.1 s each (an RCU grace period), while the other
        // probes keep firing: keep reading meanwhile, then take what is left.
        let begin = Instant::now();
        if let Some(probes) = self.probes.take() {
            let mut detach = tokio::task::spawn_blocking(move || drop(probes));
            loop {
                tokio::select! {
                    _ = &mut detach => break,
                    _ = ring_ready(ring.as_mut(), &mut self.model) => {}
                }
            }
        }
        if let Some(mut ring) = ring {
            drain(ring.get_mut(), &mut self.model);
            if let Some(m) = self.maps.as_mut() {
                m.events = Some(ring.into_inner());
            }
        }
        log::debug!("detached in {:?}", begin.elapsed());
        Ok(reason)
    }

    /// Removes every probe and unloads the programs (the maps stay readable) and restores the
    /// heap sampler. Idempotent; `run` does it on its way out.
    pub fn detach(&mut self) {
        self.restore_sampler();
        self.probes.take();
    }

    fn restore_sampler(&mut self) {
        if let (Some(h), Some(s)) = (&self.readers.heap, &self.sampler) {
            if self.target.is_alive() {
                if let Err(e) = h.restore(&self.target, s) {
                    log::warn!("could not restore MemProfileRate: {e}");
                }
            }
        }
    }

    fn hit_snapshot(&self) -> [u64; tracer_common::PROBE_KINDS] {
        ProbeKind::ALL.map(|k| self.hits(k))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Waits until the ring buffer has records, then takes them all; never resolves without one.
async fn ring_ready(
    ring: Option<&mut AsyncFd<aya::maps::RingBuf<aya::maps::MapData>>>,
    model: &mut Model,
) {
    let Some(ring) = ring else {
        return std::future::pending().await;
    };
    if let Ok(mut guard) = ring.readable_mut().await {
        // Clear first, then empty the buffer: the kernel notifies only when a record is
        // committed while the consumer is caught up, so a notification that came in while
        // draining must not be cleared away, or the reader would sleep while the buffer fills.
        guard.clear_ready();
        drain(guard.get_inner_mut(), model);
    }
}

fn drain(ring: &mut aya::maps::RingBuf<aya::maps::MapData>, model: &mut Model) {
    while let Some(item) = ring.next() {
        if let Some(event) = Event::decode(&item) {
            model.apply(&event);
        }
    }
}

fn readable<T: std::os::fd::AsRawFd>(inner: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: both users (a pidfd we own, aya's ring buffer map) keep their descriptor open and
    // unchanged for as long as they live, which is at least as long as the AsyncFd.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
