//! An attach session: probes placed on one process, events flowing into the model until the
//! caller's stop signal, the duration, or the target's exit; then a clean detach and a report.

use std::{
    future::Future,
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;
use tokio::io::unix::AsyncFd;
use tracer_common::ProbeKind;

use crate::{
    error::{Error, Result},
    events::Event,
    goruntime::{allgs, Runtime},
    model::Model,
    privileges,
    probes::{plan, AttachedProbes, PlannedProbe, ProbeMaps, ProbeSelection},
    target::Target,
};

#[derive(Clone, Debug)]
pub struct AttachOptions {
    pub probes: ProbeSelection,
    /// Stop after this long (`None`: until stopped or the target exits).
    pub duration: Option<Duration>,
    /// How often the live summary is produced.
    pub tick: Duration,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            probes: ProbeSelection::default_set(),
            duration: None,
            tick: Duration::from_secs(1),
        }
    }
}

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
    pub events_lost: u64,
}

pub struct Session {
    pub target: Target,
    pub runtime: Runtime,
    pub plan: Vec<PlannedProbe>,
    pub model: Model,
    pub options: AttachOptions,
    probes: Option<AttachedProbes>,
    maps: ProbeMaps,
    pub attach_time: Duration,
    pub started: Instant,
    pub started_wall: SystemTime,
    pub live_at_start: Option<allgs::Census>,
}

impl Session {
    /// Checks privileges and the target, then loads and attaches the probes.
    pub fn attach(pid: u32, options: AttachOptions) -> Result<Session> {
        let begin = Instant::now();
        privileges::check()?;
        privileges::check_kernel()?;
        let target = Target::open(pid)?;
        let runtime = Runtime::of(&target.binary)?;
        let config = runtime.probe_config(&target.binary)?;
        let plan = plan::plan(&target.binary, &options.probes);
        let mut probes = AttachedProbes::attach(pid, &target.exe_handle, config, &plan)?;
        let maps = probes.take_maps()?;
        let live_at_start = allgs::census(&target, &runtime).and_then(|r| r.ok());
        log::debug!(
            "attached {} probe sites in {:?} ({:?} in the kernel)",
            probes.sites_attached,
            begin.elapsed(),
            probes.attach_time
        );
        Ok(Session {
            target,
            runtime,
            plan,
            model: Model::default(),
            options,
            probes: Some(probes),
            maps,
            attach_time: begin.elapsed(),
            started: Instant::now(),
            started_wall: SystemTime::now(),
            live_at_start,
        })
    }

    pub fn enabled_probes(&self) -> impl Iterator<Item = &PlannedProbe> {
        self.plan.iter().filter(|p| p.enabled)
    }

    /// Kernel-side count of hits of one probe (exact even when events were dropped).
    pub fn hits(&self, kind: ProbeKind) -> u64 {
        ProbeMaps::counter(&self.maps.hits, kind)
    }

    pub fn events_lost(&self) -> u64 {
        ProbeKind::ALL
            .iter()
            .map(|k| ProbeMaps::counter(&self.maps.lost, *k))
            .sum()
    }

    /// Goroutines alive now: the census at attach plus what was created minus what exited.
    pub fn live_goroutines(&self) -> Option<i64> {
        let start = self.live_at_start?;
        Some(
            start.all as i64 + self.hits(ProbeKind::GoroutineCreate) as i64
                - self.hits(ProbeKind::GoroutineExit) as i64,
        )
    }

    /// Processes events until `stop` resolves, the duration elapses or the target exits.
    /// `on_tick` receives a summary every `options.tick`.
    pub async fn run(
        &mut self,
        stop: impl Future<Output = ()>,
        mut on_tick: impl FnMut(&Summary),
    ) -> Result<StopReason> {
        let exit_fd = readable(self.target.exit_fd()?)
            .map_err(|e| Error::Other(format!("watching process {}: {e}", self.target.pid)))?;
        let ring = self
            .maps
            .events
            .take()
            .ok_or_else(|| Error::Other("this session already ran".into()))?;
        let mut ring =
            readable(ring).map_err(|e| Error::Other(format!("polling the ring buffer: {e}")))?;
        let deadline = self
            .options
            .duration
            .map(|d| tokio::time::Instant::now() + d);
        let mut ticker = tokio::time::interval(self.options.tick);
        ticker.tick().await;
        let mut last_hits = self.hit_snapshot();
        let mut last_tick = Instant::now();
        tokio::pin!(stop);
        let reason = loop {
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = guard.map_err(|e| Error::Other(format!("ring buffer: {e}")))?;
                    // Clear first, then empty the buffer: the kernel notifies only when a record
                    // is committed while the consumer is caught up, so a notification that came
                    // in while draining must not be cleared away, or the reader would sleep
                    // while the buffer fills.
                    guard.clear_ready();
                    drain(guard.get_inner_mut(), &mut self.model);
                }
                _ = ticker.tick() => {
                    let hits = self.hit_snapshot();
                    let secs = last_tick.elapsed().as_secs_f64().max(1e-3);
                    let rates = self
                        .enabled_probes()
                        .map(|p| (p.name, (hits[p.kind as usize] - last_hits[p.kind as usize]) as f64 / secs))
                        .collect();
                    last_hits = hits;
                    last_tick = Instant::now();
                    on_tick(&Summary {
                        elapsed: self.started.elapsed(),
                        rates,
                        live_goroutines: self.live_goroutines(),
                        events_lost: self.events_lost(),
                    });
                }
                _ = exit_fd.readable() => break StopReason::TargetExited,
                _ = &mut stop => break StopReason::Stopped,
                _ = sleep_until(deadline) => break StopReason::Duration,
            }
        };
        // Removing uprobes takes the kernel ~0.1 s each (an RCU grace period), while the other
        // probes keep firing: keep reading meanwhile, then take what is left.
        let begin = Instant::now();
        if let Some(probes) = self.probes.take() {
            let mut detach = tokio::task::spawn_blocking(move || drop(probes));
            loop {
                tokio::select! {
                    _ = &mut detach => break,
                    guard = ring.readable_mut() => {
                        if let Ok(mut guard) = guard {
                            guard.clear_ready();
                            drain(guard.get_inner_mut(), &mut self.model);
                        }
                    }
                }
            }
        }
        drain(ring.get_mut(), &mut self.model);
        log::debug!("detached in {:?}", begin.elapsed());
        self.maps.events = Some(ring.into_inner());
        Ok(reason)
    }

    /// Removes every probe and unloads the programs; the maps stay readable. Idempotent.
    pub fn detach(&mut self) {
        self.probes.take();
    }

    fn hit_snapshot(&self) -> [u64; tracer_common::PROBE_KINDS] {
        ProbeKind::ALL.map(|k| self.hits(k))
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
