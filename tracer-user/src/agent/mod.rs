//! `gotrace agent`: every Go process on the host watched continuously, in the probe-free
//! default mode, its profiles served as Go serves them, its metrics scraped, pushed to
//! Pyroscope and kept in a local history.
//!
//! Two threads of control: the scheduler (`Scheduler::run`, a plain thread: reading another
//! process's memory blocks) finds targets, attaches a [`Session`] to each, takes their looks
//! within one CPU budget and hands each interval's snapshot to the history and the pusher; the
//! HTTP server ([`server`], tokio) answers from the same sessions, each behind its own lock.

pub mod config;
pub mod discover;
pub mod history;
mod metrics;
mod page;
pub mod pressure;
pub mod push;
mod server;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    future::Future,
    sync::{mpsc, Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use crate::{
    detect::Finding,
    error::{Error, Result},
    model::heap::AllocBaseline,
    pprof,
    probes::ProbeSelection,
    session::{AttachOptions, Session},
    snapshot::StopReason,
};
pub use config::AgentConfig;
use discover::{Candidate, Discovery, Labels, TargetKey};
use history::{History, Kind};
use pressure::PressureWatch;
use push::{PushProfile, PushStats, Pusher};

/// How often each target's memory use is compared with its limits, up to this many targets;
/// beyond, the checks are spread out so that they stay at this many a second.
const PRESSURE_CHECK: Duration = Duration::from_secs(1);
const PRESSURE_CHECKS_PER_SECOND: u32 = 20;
/// How often /proc is listed for processes started since (see `Discovery::scan_new`).
const NEW_PROCESSES: Duration = Duration::from_secs(1);
/// How much unspent CPU budget may be saved up for a burst (seconds of wall time's worth).
const BURST: f64 = 30.0;
/// How long the pusher may take to send what is queued when the agent stops.
const PUSH_FLUSH: Duration = Duration::from_secs(5);

/// One watched process.
pub(crate) struct Watched {
    pub key: TargetKey,
    pub labels: Labels,
    pub exe_id: (u64, u64),
    exec_mark: u64,
    pub since: SystemTime,
    pub session: Session,
    /// godeltaprof's baselines: one per consumer, so that a scrape does not steal the
    /// allocations a push would report.
    pub delta_http: AllocBaseline,
    delta_push: AllocBaseline,
    next_look: Instant,
    /// CPU the latest looks cost (moving average), which spaces them out.
    look_cpu: Duration,
    next_record: Instant,
    next_pressure: Instant,
    pressure: PressureWatch,
    /// Findings already logged (pattern and site), so that each is logged once.
    logged: HashSet<String>,
    /// What the target's live page shows beyond the session (filled when it is asked for).
    pub view: crate::web::LiveView,
}

impl Watched {
    pub fn id(&self) -> String {
        self.key.id()
    }

    fn push_labels(&self) -> Vec<(String, String)> {
        self.labels
            .pairs()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }
}

/// The agent's own counters, for /metrics.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AgentStats {
    pub looks: u64,
    pub look_cpu: Duration,
    pub snapshot_cpu: Duration,
    pub read_errors: u64,
    pub attach_errors: u64,
    pub targets_exited: u64,
    pub history_errors: u64,
    pub snapshots_recorded: u64,
    pub pressure_snapshots: u64,
    pub over_limit: usize,
    pub scans: u64,
    pub scan_time: Duration,
}

/// What the scheduler and the server share.
pub(crate) struct Shared {
    targets: Mutex<BTreeMap<TargetKey, Arc<Mutex<Watched>>>>,
    stats: Mutex<AgentStats>,
    push_stats: Mutex<Option<PushStats>>,
    pub config: AgentConfig,
}

impl Shared {
    pub fn targets(&self) -> Vec<Arc<Mutex<Watched>>> {
        lock(&self.targets).values().cloned().collect()
    }

    pub fn target(&self, id: &str) -> Option<Arc<Mutex<Watched>>> {
        lock(&self.targets).get(&TargetKey::parse(id)?).cloned()
    }

    pub fn stats(&self) -> AgentStats {
        *lock(&self.stats)
    }

    pub fn push_stats(&self) -> Option<PushStats> {
        *lock(&self.push_stats)
    }
}

/// A poisoned lock means a panic elsewhere already reported; the data stays usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the agent until `stop` resolves: then every target's sampler is restored, a last
/// snapshot of each goes to the history and the pusher sends what it holds.
pub async fn run(config: AgentConfig, stop: impl Future<Output = ()>) -> Result<()> {
    let token = server::token(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            Error::Config(format!(
                "cannot listen on {}: {e} (choose another --listen address)",
                config.listen
            ))
        })?;
    let history = if config.history.no_history {
        None
    } else {
        Some(History::open(&config.history)?)
    };
    let pusher = Pusher::start(&config.push)?;
    let shared = Arc::new(Shared {
        targets: Mutex::default(),
        stats: Mutex::default(),
        push_stats: Mutex::new(pusher.as_ref().map(Pusher::stats)),
        config,
    });
    let local = listener.local_addr().unwrap_or(shared.config.listen);
    log::info!("agent listening on http://{local}");
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let scheduler = Scheduler {
        credit: Credit::new(shared.config.cpu_budget / 100.0),
        discovery: Discovery::new(shared.config.selection.clone()),
        shared: shared.clone(),
        history,
        pusher,
        failed: HashMap::new(),
    };
    let worker = std::thread::Builder::new()
        .name("gotrace-scheduler".into())
        .spawn(move || scheduler.run(stop_rx))
        .map_err(|e| Error::Other(format!("starting the agent's scheduler: {e}")))?;
    let (server_stop_tx, server_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = server::router(shared.clone(), token);
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = server_stop_rx.await;
            })
            .await
    });
    stop.await;
    log::info!("agent stopping: restoring every target's sampler");
    let _ = stop_tx.send(());
    let joined = tokio::task::spawn_blocking(move || worker.join()).await;
    let _ = server_stop_tx.send(());
    let _ = server.await;
    match joined {
        Ok(Ok(())) => Ok(()),
        _ => Err(Error::Other("the agent's scheduler failed".into())),
    }
}

/// The CPU the scheduler may spend: `share` of the wall-clock time, of which at most
/// [`BURST`] seconds' worth may be saved up. Looks and snapshots wait while the account is
/// overdrawn, so that over any stretch longer than the burst all the agent's reading,
/// snapshotting and writing stays within `--cpu-budget` (a snapshot every `--interval` per
/// target then comes later than that when there are too many targets for the budget).
struct Credit {
    share: f64,
    /// CPU seconds available (negative: owed).
    balance: f64,
    at: Instant,
}

impl Credit {
    fn new(share: f64) -> Credit {
        Credit {
            share,
            balance: 0.0,
            at: Instant::now(),
        }
    }

    fn allows(&mut self, now: Instant) -> bool {
        let earned = self.share * now.saturating_duration_since(self.at).as_secs_f64();
        self.balance = (self.balance + earned).min(self.share * BURST);
        self.at = self.at.max(now);
        self.balance > 0.0
    }

    fn spend(&mut self, cpu: Duration) {
        self.balance -= cpu.as_secs_f64();
    }

    /// When the account is in credit again.
    fn ready_at(&self) -> Instant {
        self.at + Duration::from_secs_f64((-self.balance).max(0.0) / self.share)
    }
}

struct Scheduler {
    credit: Credit,
    discovery: Discovery,
    shared: Arc<Shared>,
    history: Option<History>,
    pusher: Option<Pusher>,
    /// Targets that could not be attached (unsupported release, say): tried once, logged once.
    failed: HashMap<(TargetKey, (u64, u64)), String>,
}

impl Scheduler {
    fn run(mut self, stop: mpsc::Receiver<()>) {
        let mut next_scan = Instant::now();
        let mut next_new = Instant::now() + NEW_PROCESSES;
        loop {
            let now = Instant::now();
            if now >= next_new && now < next_scan {
                let cpu = thread_cpu();
                let found = self.discovery.scan_new();
                let limit = self.shared.config.selection.max_targets;
                for c in found {
                    if lock(&self.shared.targets).len() >= limit {
                        break;
                    }
                    if !lock(&self.shared.targets).contains_key(&c.key)
                        && !self.failed.contains_key(&(c.key, c.exe_id))
                    {
                        self.attach(c);
                    }
                }
                self.credit.spend(thread_cpu().saturating_sub(cpu));
                if let Some(d) = self.discovery.matures_in() {
                    next_scan = next_scan.min(now + d + Duration::from_millis(20));
                }
            }
            if now >= next_new {
                next_new = now + NEW_PROCESSES;
            }
            if now >= next_scan {
                let cpu = thread_cpu();
                self.scan();
                self.credit.spend(thread_cpu().saturating_sub(cpu));
                // A Go process skipped as too young is looked at again as soon as it is old
                // enough, not an interval later.
                let soon = self
                    .discovery
                    .matures_in()
                    .map(|d| d + Duration::from_millis(20));
                next_scan = now
                    + soon.map_or(self.shared.config.scan_interval, |s| {
                        s.min(self.shared.config.scan_interval)
                    });
            }
            let mut wake = next_scan.min(next_new);
            let mut budgeted = None::<Instant>;
            for target in self.shared.targets() {
                let mut w = lock(&target);
                if let Some(reason) = self.serve(&mut w) {
                    self.drop_target(&mut w, reason);
                    let key = w.key;
                    drop(w);
                    lock(&self.shared.targets).remove(&key);
                    continue;
                }
                wake = wake.min(w.next_pressure);
                let due = w.next_look.min(w.next_record);
                budgeted = Some(budgeted.map_or(due, |b| b.min(due)));
                drop(w);
                // Many snapshots due at once take a while: a new process is not kept waiting.
                if Instant::now() >= next_scan {
                    break;
                }
            }
            if let Some(b) = budgeted {
                wake = wake.min(b.max(self.credit.ready_at()));
            }
            self.publish_push_stats();
            match stop.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => break,
            }
        }
        self.stop();
    }

    /// Whatever is due for one target; `Some` when it is gone.
    fn serve(&mut self, w: &mut Watched) -> Option<StopReason> {
        let now = Instant::now();
        if now >= w.next_pressure {
            // Never deferred (it is what comes before the OOM killer), but paid for.
            let cpu = thread_cpu();
            let targets = lock(&self.shared.targets).len() as u32;
            w.next_pressure =
                now + PRESSURE_CHECK.max(PRESSURE_CHECK * targets / PRESSURE_CHECKS_PER_SECOND);
            let why = w.pressure.check();
            self.credit.spend(thread_cpu().saturating_sub(cpu));
            if let Some(why) = why {
                log::warn!(
                    "target={} service={} event=memory-pressure snapshot=taken reason={why:?}",
                    w.id(),
                    w.labels.service_name
                );
                lock(&self.shared.stats).pressure_snapshots += 1;
                self.record(w, Kind::Pressure(why));
            }
        }
        if now >= w.next_look && self.credit.allows(now) {
            if let Some(reason) = self.look(w) {
                return Some(reason);
            }
        }
        if now >= w.next_record && self.credit.allows(Instant::now()) {
            w.next_record = now + self.shared.config.interval;
            self.record(w, Kind::Interval);
        }
        None
    }

    fn scan(&mut self) {
        let begin = Instant::now();
        let candidates = self.discovery.scan();
        let seen: HashSet<TargetKey> = candidates.iter().map(|c| c.key).collect();
        {
            let mut stats = lock(&self.shared.stats);
            stats.scans += 1;
            stats.scan_time += begin.elapsed();
            stats.over_limit = self.discovery.over_limit();
        }
        self.failed.retain(|(k, _), _| seen.contains(k));
        for c in candidates {
            let known = lock(&self.shared.targets).get(&c.key).cloned();
            if let Some(t) = known {
                let mut w = lock(&t);
                if (w.exe_id, w.exec_mark) == (c.exe_id, c.exec_mark) {
                    continue;
                }
                // The same process runs another program now: a new target.
                self.drop_target(&mut w, StopReason::TargetExeced);
                drop(w);
                lock(&self.shared.targets).remove(&c.key);
            }
            if self.failed.contains_key(&(c.key, c.exe_id)) {
                continue;
            }
            self.attach(c);
        }
    }

    fn attach(&mut self, c: Candidate) {
        let config = &self.shared.config;
        let options = AttachOptions {
            probes: ProbeSelection::none(),
            duration: None,
            tick: config.look_interval,
            sample_rate: config.sample_rate,
            read_only: config.read_only,
            detect: Default::default(),
        };
        let begin = Instant::now();
        let session = match Session::attach(c.key.pid, options) {
            Ok(s) => s,
            Err(e) => {
                log::warn!(
                    "target={} exe={} event=attach-failed error={:?}",
                    c.key.id(),
                    c.labels.exe,
                    e.to_string()
                );
                lock(&self.shared.stats).attach_errors += 1;
                self.failed.insert((c.key, c.exe_id), e.to_string());
                return;
            }
        };
        let sampler = session
            .sampler()
            .map(|s| format!("{}", s.rate))
            .unwrap_or_else(|| "none".into());
        log::info!(
            "target={} service={} exe={} go={} event=attached sampler_rate={sampler} attach_ms={}",
            c.key.id(),
            c.labels.service_name,
            c.labels.exe,
            c.labels.go_version,
            begin.elapsed().as_millis()
        );
        let now = Instant::now();
        let watched = Watched {
            key: c.key,
            exe_id: c.exe_id,
            exec_mark: c.exec_mark,
            since: SystemTime::now(),
            pressure: PressureWatch::new(&config.pressure, c.key.pid),
            labels: c.labels,
            session,
            delta_http: AllocBaseline::default(),
            delta_push: AllocBaseline::default(),
            view: Default::default(),
            next_look: now + config.look_interval,
            look_cpu: Duration::ZERO,
            // The first interval's snapshot comes one interval after attach, like the rest.
            next_record: now + config.interval,
            next_pressure: now,
            logged: HashSet::new(),
        };
        lock(&self.shared.targets).insert(c.key, Arc::new(Mutex::new(watched)));
    }

    /// A look within the budget: the next one waits until the CPU it took, shared with every
    /// other target, fits in `--cpu-budget`.
    fn look(&mut self, w: &mut Watched) -> Option<StopReason> {
        let cpu = thread_cpu();
        let step = w.session.step();
        let cost = thread_cpu().saturating_sub(cpu);
        self.credit.spend(cost);
        {
            let mut stats = lock(&self.shared.stats);
            stats.looks += 1;
            stats.look_cpu += cost;
        }
        match step {
            Ok(Some(reason)) => return Some(reason),
            Ok(None) => {}
            Err(e) => {
                lock(&self.shared.stats).read_errors += 1;
                log::warn!(
                    "target={} event=read-failed error={:?}",
                    w.id(),
                    e.to_string()
                );
                return Some(StopReason::TargetExited);
            }
        }
        w.look_cpu = if w.look_cpu.is_zero() {
            cost
        } else {
            (w.look_cpu * 3 + cost) / 4
        };
        let targets = lock(&self.shared.targets).len().max(1) as u32;
        let share = self.shared.config.cpu_budget / 100.0;
        let spacing = (w.look_cpu * targets).div_f64(share);
        w.next_look = Instant::now() + spacing.max(self.shared.config.look_interval);
        log_new_findings(w);
        None
    }

    /// The interval's snapshot into the history and to Pyroscope.
    fn record(&mut self, w: &mut Watched, kind: Kind) {
        let cpu = thread_cpu();
        self.record_now(w, kind);
        let cost = thread_cpu().saturating_sub(cpu);
        self.credit.spend(cost);
        lock(&self.shared.stats).snapshot_cpu += cost;
    }

    fn record_now(&mut self, w: &mut Watched, kind: Kind) {
        let snapshot = match w.session.snapshot(None) {
            Ok(s) => s,
            Err(e) => {
                log::warn!(
                    "target={} event=snapshot-failed error={:?}",
                    w.id(),
                    e.to_string()
                );
                return;
            }
        };
        self.keep(w, &snapshot, kind);
        if let Some(pusher) = &self.pusher {
            let labels = w.push_labels();
            match w.session.delta_heap_profile(&mut w.delta_push) {
                Ok(Some(p)) => match pprof::gzip(&p) {
                    Ok(gz) => pusher.push(PushProfile {
                        name: "memory",
                        labels: labels.clone(),
                        pprof_gz: gz,
                    }),
                    Err(e) => log::warn!(
                        "target={} event=push-skipped error={:?}",
                        w.id(),
                        e.to_string()
                    ),
                },
                Ok(None) => {}
                Err(e) => log::warn!(
                    "target={} event=push-skipped error={:?}",
                    w.id(),
                    e.to_string()
                ),
            }
            if let Some(Ok(gz)) = snapshot.goroutines.as_ref().map(pprof::gzip) {
                pusher.push(PushProfile {
                    name: "goroutine",
                    labels,
                    pprof_gz: gz,
                });
            }
        }
    }

    fn keep(&mut self, w: &Watched, snapshot: &crate::Snapshot, kind: Kind) {
        let Some(history) = &mut self.history else {
            return;
        };
        let mut stats = lock(&self.shared.stats);
        match history.record(&w.id(), &w.labels.pairs(), snapshot, kind) {
            Ok(()) => stats.snapshots_recorded += 1,
            Err(e) => {
                stats.history_errors += 1;
                log::warn!(
                    "target={} event=history-failed error={:?}",
                    w.id(),
                    e.to_string()
                );
            }
        }
    }

    /// A target gone (or the agent stopping): its last snapshot goes to the history — a full
    /// one while it still runs, else what was read before it went; dropping the session then
    /// restores its sampler.
    fn drop_target(&mut self, w: &mut Watched, reason: StopReason) {
        if reason == StopReason::Stopped && w.session.target().is_alive() {
            self.record(w, Kind::Interval);
        } else if let Ok(snapshot) = w.session.heap_snapshot() {
            self.keep(w, &snapshot, Kind::Interval);
        }
        if reason != StopReason::Stopped {
            lock(&self.shared.stats).targets_exited += 1;
        }
        log::info!(
            "target={} service={} event=dropped reason={}",
            w.id(),
            w.labels.service_name,
            serde_json::to_string(&reason)
                .unwrap_or_default()
                .trim_matches('"')
        );
    }

    fn publish_push_stats(&self) {
        if let Some(p) = &self.pusher {
            *lock(&self.shared.push_stats) = Some(p.stats());
        }
    }

    fn stop(mut self) {
        let targets = std::mem::take(&mut *lock(&self.shared.targets));
        for (_, t) in targets {
            self.drop_target(&mut lock(&t), StopReason::Stopped);
        }
        // Every session is dropped by now (the map held the last reference): samplers restored.
        if let Some(p) = self.pusher.take() {
            let stats = p.shutdown(PUSH_FLUSH);
            if stats.dropped > 0 {
                log::warn!("push: {} profile(s) could not be sent", stats.dropped);
            }
        }
    }
}

fn log_new_findings(w: &mut Watched) {
    let new: Vec<&Finding> = w
        .session
        .findings()
        .iter()
        .filter(|f| !w.logged.contains(&finding_key(f)))
        .collect();
    let keys: Vec<String> = new.iter().map(|f| finding_key(f)).collect();
    for f in new {
        log::warn!(
            "target={} service={} event=finding pattern={} site={:?} hint={:?}",
            w.key.id(),
            w.labels.service_name,
            f.pattern,
            format!("{} ({}:{})", f.site.function, f.site.file, f.site.line),
            f.hint
        );
    }
    w.logged.extend(keys);
}

pub(crate) fn finding_key(f: &Finding) -> String {
    format!("{} {}", f.pattern, f.site.function)
}

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
