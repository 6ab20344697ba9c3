//! A session: the pipeline's stages put together for one process — attach, then tick after
//! tick observe → model → detect, events flowing into the model meanwhile, until the caller's
//! stop signal, the duration or the target's exit; snapshots can be taken at any moment.

use std::{
    future::Future,
    time::{Duration, Instant, SystemTime},
};

use tokio::io::unix::AsyncFd;
use tracer_common::ProbeKind;

use crate::{
    attach::{Attachment, SamplerRequest},
    detect::{self, Context, Detector, Finding},
    error::{Error, Result},
    events::Event,
    goruntime::allgs::GSnapshot,
    model::Model,
    observe::{Budget, GoroutineProfile, Look, Observer},
    probes::ProbeSelection,
    snapshot::{Parts, Snapshot, StopReason},
};

#[derive(Clone, Debug)]
pub struct AttachOptions {
    pub probes: ProbeSelection,
    /// Stop after this long (`None`: until stopped or the target exits).
    pub duration: Option<Duration>,
    /// How often the runtime's state is read and the live summary produced.
    pub tick: Duration,
    /// `runtime.MemProfileRate` to set (`None`: Go's default, 512 KiB, if the sampler is off).
    pub sample_rate: Option<u64>,
    /// Never write into the target: the heap profile is then only available when the program
    /// already samples.
    pub read_only: bool,
    /// The detectors' thresholds and the patterns switched off.
    pub detect: detect::DetectConfig,
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

/// What the live view shows each tick.
#[derive(Clone, Debug)]
pub struct Summary {
    pub elapsed: Duration,
    /// Probe hits per second over the last interval, for every enabled probe.
    pub rates: Vec<(&'static str, f64)>,
    /// The program's goroutines alive now (what `runtime.NumGoroutine` counts), and the
    /// runtime's own, when gotrace can tell.
    pub live_goroutines: Option<i64>,
    pub system_goroutines: Option<u64>,
    pub stack_in_use: Option<u64>,
    pub gc: Option<crate::goruntime::gcstats::GcSnapshot>,
    pub events_lost: u64,
}

/// When the session started, by both clocks.
#[derive(Clone, Copy, Debug)]
struct Clock {
    started: Instant,
    started_wall: SystemTime,
    /// What the latest look at every goroutine took (seconds, at a million goroutines).
    full_look: Duration,
}

pub struct Session {
    attachment: Attachment,
    observer: Observer,
    model: Model,
    detectors: Vec<Box<dyn Detector>>,
    /// The detectors' verdicts as of the latest look, and every goroutine it saw.
    findings: Vec<Finding>,
    goroutines: Vec<GSnapshot>,
    /// The goroutine profile taken at the end of `run`, while the target still ran
    /// (`Some(None)`: it could not be read in time, or the target exec'd).
    goroutine_profile: Option<Option<GoroutineProfile>>,
    /// The goroutines grouped as `gotrace dump` groups them, read at the end of `run` with the
    /// goroutine profile (for the report's page).
    final_groups: Option<Vec<crate::dump::Group>>,
    options: AttachOptions,
    clock: Clock,
}

impl Session {
    /// Attaches (see [`Attachment::new`]) and takes the first look.
    pub fn attach(pid: u32, options: AttachOptions) -> Result<Session> {
        let attachment = Attachment::new(
            pid,
            &options.probes,
            SamplerRequest {
                rate: options.sample_rate,
                read_only: options.read_only,
            },
        )?;
        let clock = Clock {
            started: Instant::now(),
            started_wall: SystemTime::now(),
            full_look: Duration::ZERO,
        };
        let observer = Observer::new(&attachment, clock.started_wall);
        let model = Model::new(
            observer.census(&attachment),
            observer.goids_created(&attachment),
        );
        let mut session = Session {
            detectors: detect::build(&options.detect),
            attachment,
            observer,
            model,
            findings: Vec::new(),
            goroutines: Vec::new(),
            goroutine_profile: None,
            final_groups: None,
            options,
            clock,
        };
        // The duration counts from here, this first look included.
        let until = session.options.duration.map(|d| session.clock.started + d);
        session.tick(Budget::Spaced, until);
        Ok(session)
    }

    pub fn attachment(&self) -> &Attachment {
        &self.attachment
    }

    pub fn target(&self) -> &crate::target::Target {
        &self.attachment.target
    }

    /// What gotrace did to Go's heap sampler (`None`: not found in this binary).
    pub fn sampler(&self) -> Option<&crate::attach::SamplerState> {
        self.attachment.sampler().state()
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn options(&self) -> &AttachOptions {
        &self.options
    }

    /// The detectors' current verdicts.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The program's goroutines as `runtime.NumGoroutine` counts them, at the latest look.
    pub fn live_goroutines(&self) -> Option<i64> {
        self.parts(None).live_goroutines()
    }

    pub fn elapsed(&self) -> Duration {
        self.clock.started.elapsed()
    }

    /// Kernel-side count of hits of one probe (exact even when events were dropped).
    pub fn hits(&self, kind: ProbeKind) -> u64 {
        self.attachment.hits(kind)
    }

    pub fn events_lost(&self) -> u64 {
        self.attachment.events_lost()
    }

    /// The results as of now. While the session runs the goroutine profile is read afresh
    /// (a walk of every goroutine's stack); after `run`, it is the one taken at the end.
    pub fn snapshot(&self, reason: Option<StopReason>) -> Result<Snapshot> {
        let fresh;
        let stacks = match &self.goroutine_profile {
            Some(p) => p.as_deref(),
            None => {
                fresh = self.observer.goroutine_profile(&self.attachment, None);
                fresh.as_deref()
            }
        };
        let parts = Parts {
            full: true,
            groups: self.final_groups.as_deref(),
            ..self.parts(reason)
        };
        Snapshot::take(&parts, stacks)
    }

    /// The results without the goroutine profile: cheap enough for every tick (the live
    /// flamegraph).
    pub fn heap_snapshot(&self) -> Result<Snapshot> {
        Snapshot::take(&self.parts(None), None)
    }

    /// The heap profile with the allocations since `baseline` was last advanced (in-use values
    /// absolute), as godeltaprof serves it; `None` before a GC cycle published a profile.
    pub fn delta_heap_profile(
        &self,
        baseline: &mut crate::model::heap::AllocBaseline,
    ) -> Result<Option<crate::pprof::proto::Profile>> {
        let Some(heap) = &self.model.heap else {
            return Ok(None);
        };
        let delta = baseline.advance(heap);
        crate::snapshot::with_executable(&self.attachment, |exe| {
            crate::pprof::heap_profile_with(heap, exe, |r| {
                delta.get(&r.bucket).copied().unwrap_or(0)
            })
        })
        .map(Some)
    }

    /// Every user goroutine with its state, wait and stack, as `gotrace dump` gives them.
    pub fn dump(&self) -> Result<crate::dump::Dump> {
        let att = &self.attachment;
        let (gs, tracebacks) = self.observer.all_goroutines(att).ok_or_else(|| {
            Error::Other(format!(
                "process {}: its goroutine list cannot be read",
                att.target.pid
            ))
        })?;
        crate::dump::build(&att.target, gs, tracebacks, &att.symbols, false)
    }

    /// One pass of the pipeline driven by the caller (the agent's own schedule, no probes):
    /// `Some` when the target is gone (exited, or exec'd another program) and nothing was read.
    pub fn step(&mut self) -> Result<Option<StopReason>> {
        let target = &self.attachment.target;
        if !target.is_alive() {
            return Ok(Some(StopReason::TargetExited));
        }
        if execed(target, &target.exit_fd()?) {
            return Ok(Some(StopReason::TargetExeced));
        }
        self.tick(Budget::Spaced, None);
        Ok(None)
    }

    fn parts(&self, reason: Option<StopReason>) -> Parts<'_> {
        Parts {
            att: &self.attachment,
            model: &self.model,
            findings: &self.findings,
            goroutines: &self.goroutines,
            started_wall: self.clock.started_wall,
            elapsed: self.clock.started.elapsed(),
            reason,
            groups: None,
            full: false,
        }
    }

    /// One pass of the pipeline: look, take it into the model, let the detectors judge.
    /// Reads stop at `until` (what was cut short is left out and counted).
    fn tick(&mut self, budget: Budget, until: Option<Instant>) {
        let t = self.clock.started.elapsed().as_secs_f64();
        let known = self.model.known_channels();
        let begin = Instant::now();
        let look: Look = self
            .observer
            .look(&self.attachment, t, &known, budget, until);
        self.model.observe(&look);
        if look.goroutines.is_some() {
            self.clock.full_look = begin.elapsed();
        }
        let att = &self.attachment;
        let cx = Context {
            t,
            model: &self.model,
            binary: &att.target.binary,
            offsets: &att.runtime.offsets,
            load_bias: att.target.load_bias,
            sym: &att.symbols,
        };
        for d in &mut self.detectors {
            d.observe(&look, &cx);
        }
        self.findings = self
            .detectors
            .iter()
            .flat_map(|d| d.findings(&cx))
            .collect();
        if let Some(g) = look.goroutines {
            self.goroutines = g.gs.into_iter().map(|g| g.g).collect();
        }
    }

    fn summary(&self, rates: Vec<(&'static str, f64)>) -> Summary {
        Summary {
            elapsed: self.clock.started.elapsed(),
            rates,
            live_goroutines: self.parts(None).live_goroutines(),
            system_goroutines: self.model.census.map(|c| c.system()),
            stack_in_use: self.model.census.map(|c| c.stack_bytes),
            gc: self.model.gc.latest,
            events_lost: self.events_lost(),
        }
    }

    /// Processes events until `stop` resolves, the duration elapses or the target exits.
    /// `on_tick` receives the session and a summary every `options.tick`. On the way out: a
    /// last look, the goroutine profile, the sampler restored and the probes removed.
    pub async fn run(
        &mut self,
        stop: impl Future<Output = ()>,
        mut on_tick: impl FnMut(&Session, &Summary),
    ) -> Result<StopReason> {
        let target = &self.attachment.target;
        let exit_fd = readable(target.exit_fd()?)
            .map_err(|e| Error::Other(format!("watching process {}: {e}", target.pid)))?;
        let mut ring = match self.attachment.maps_mut().and_then(|m| m.events.take()) {
            Some(r) => Some(
                readable(r).map_err(|e| Error::Other(format!("polling the ring buffer: {e}")))?,
            ),
            None => None,
        };
        let deadline = self
            .options
            .duration
            .map(|d| tokio::time::Instant::from_std(self.clock.started + d));
        let mut ticker = tokio::time::interval(self.options.tick);
        ticker.tick().await;
        let mut last_hits = self.hit_snapshot();
        let mut last_created = self.parts(None).goroutines_created();
        let mut last_tick = Instant::now();
        tokio::pin!(stop);
        let reason = loop {
            tokio::select! {
                _ = ring_ready(ring.as_mut(), &mut self.model) => {}
                _ = ticker.tick() => {
                    // Before reading anything: addresses learnt from the program gotrace
                    // attached to mean nothing in the one a process has exec'd since.
                    if execed(&self.attachment.target, exit_fd.get_ref()) {
                        break StopReason::TargetExeced;
                    }
                    self.tick(Budget::Spaced, deadline.map(|d| d.into_std()));
                    let hits = self.hit_snapshot();
                    let secs = last_tick.elapsed().as_secs_f64().max(1e-3);
                    let mut rates: Vec<(&'static str, f64)> = self
                        .attachment
                        .enabled_probes()
                        .map(|p| (p.name, (hits[p.kind as usize] - last_hits[p.kind as usize]) as f64 / secs))
                        .collect();
                    let created = self.parts(None).goroutines_created();
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
                    on_tick(self, &self.summary(rates));
                }
                _ = exit_fd.readable() => break StopReason::TargetExited,
                _ = &mut stop => break StopReason::Stopped,
                // The last look begins as long before the deadline as a full one took, so
                // that the session ends on time with every goroutine read.
                _ = sleep_until(deadline.map(|d| d.checked_sub(self.clock.full_look).unwrap_or(d))) => break StopReason::Duration,
            }
        };
        // The final look at the runtime, then give the sampler back as it was.
        // The last look and the goroutine profile get a tick between them, whatever reading a
        // million goroutines would cost: the session ends when it was told to.
        self.goroutine_profile = Some(if reason == StopReason::TargetExeced {
            None
        } else {
            // At most a tick past the deadline (or past now, when stopped otherwise).
            let now = Instant::now();
            let until = deadline.map_or(now, |d| d.into_std().max(now)) + self.options.tick;
            self.tick(Budget::Final, Some(until));
            self.observer
                .goroutine_profile(&self.attachment, Some(until))
        });
        // The groups for the report's page: another walk of every stack, so only while there
        // are few enough for it to take a fraction of a second; a million are left to
        // `gotrace dump`.
        let few = self
            .live_goroutines()
            .is_some_and(|n| n <= MAX_GROUPED_GOROUTINES);
        if reason != StopReason::TargetExeced && few {
            self.final_groups = self.dump().ok().map(|d| d.groups);
        }
        self.attachment.restore_sampler();
        // Removing uprobes takes the kernel ~0.1 s each (an RCU grace period), while the other
        // probes keep firing: keep reading meanwhile, then take what is left.
        let begin = Instant::now();
        if let Some(probes) = self.attachment.take_probes() {
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
            if let Some(m) = self.attachment.maps_mut() {
                m.events = Some(ring.into_inner());
            }
        }
        log::debug!("detached in {:?}", begin.elapsed());
        Ok(reason)
    }

    fn hit_snapshot(&self) -> [u64; tracer_common::PROBE_KINDS] {
        ProbeKind::ALL.map(|k| self.hits(k))
    }
}

/// The most goroutines whose stacks are walked again at the end to group them.
const MAX_GROUPED_GOROUTINES: i64 = 20_000;

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

/// Whether the target runs another program than the one gotrace attached to. An exiting
/// process loses its address space too, before its pidfd says so: it is exec'd only if it
/// still has an executable (a process past `exit_mm` has none) and has not exited.
fn execed(target: &crate::target::Target, pidfd: &std::os::fd::OwnedFd) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    if target.memory.same_program() || std::fs::read_link(&target.exe_handle).is_err() {
        return false;
    }
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    poll(&mut fds, Some(&rustix::time::Timespec::default())).is_ok_and(|n| n == 0)
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
