//! `/metrics`: each target's goroutines, heap and GC as of its latest look, its active findings,
//! and the agent's own work, in OpenMetrics text (prometheus-client), every series carrying its
//! target's labels. Built afresh per scrape from the sessions, so a target that is gone has no
//! series left behind.

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use super::{lock, Shared};

type Labels = Vec<(String, String)>;

/// Active findings exported per target at most: each is a series, keep their number bounded.
const MAX_FINDINGS: usize = 20;

pub(crate) fn render(shared: &Shared) -> String {
    let mut reg = Registry::with_prefix("gotrace");
    let gauge = |reg: &mut Registry, name: &str, help: &str, unit: Option<Unit>| {
        let f = Family::<Labels, Gauge>::default();
        match unit {
            Some(u) => reg.register_with_unit(name, help, u, f.clone()),
            None => reg.register(name, help, f.clone()),
        }
        f
    };
    let goroutines = gauge(
        &mut reg,
        "goroutines",
        "Goroutines of the program, as runtime.NumGoroutine counts them",
        None,
    );
    let stacks = gauge(
        &mut reg,
        "goroutine_stack",
        "Bytes of goroutine stacks in use",
        Some(Unit::Bytes),
    );
    let heap_inuse = gauge(
        &mut reg,
        "heap_inuse",
        "Heap bytes in spans in use (MemStats.HeapInuse)",
        Some(Unit::Bytes),
    );
    let heap_live = gauge(
        &mut reg,
        "heap_live",
        "Live heap as the GC pacer sees it",
        Some(Unit::Bytes),
    );
    let heap_goal = gauge(
        &mut reg,
        "heap_goal",
        "Heap size at which the next GC cycle starts",
        Some(Unit::Bytes),
    );
    let findings = gauge(
        &mut reg,
        "findings",
        "Leak patterns found and active now (1 per pattern and site)",
        None,
    );
    let gc_cycles = Family::<Labels, Counter>::default();
    reg.register(
        "gc_cycles",
        "Completed GC cycles since the program started, by kind (automatic, forced)",
        gc_cycles.clone(),
    );
    let gc_pause = Family::<Labels, Counter<f64>>::default();
    reg.register_with_unit(
        "gc_pause",
        "Stop-the-world GC pause time since the program started",
        Unit::Seconds,
        gc_pause.clone(),
    );

    let targets = shared.targets();
    for t in &targets {
        let w = lock(t);
        let labels: Labels = w
            .labels
            .pairs()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let with = |k: &str, v: &str| {
            let mut l = labels.clone();
            l.push((k.to_string(), v.to_string()));
            l
        };
        let model = w.session.model();
        if let Some(n) = w.session.live_goroutines() {
            goroutines.get_or_create(&labels).set(n);
        }
        if let Some(c) = model.census {
            stacks
                .get_or_create(&labels)
                .set(i64::try_from(c.stack_bytes).unwrap_or(i64::MAX));
        }
        if let Some(gc) = model.gc.latest {
            let v = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
            heap_inuse.get_or_create(&labels).set(v(gc.heap_in_use));
            heap_live.get_or_create(&labels).set(v(gc.heap_live));
            heap_goal.get_or_create(&labels).set(v(gc.heap_goal));
            let forced = u64::from(gc.forced);
            gc_cycles
                .get_or_create(&with("kind", "automatic"))
                .inc_by(u64::from(gc.cycles).saturating_sub(forced));
            gc_cycles
                .get_or_create(&with("kind", "forced"))
                .inc_by(forced);
            gc_pause
                .get_or_create(&labels)
                .inc_by(gc.pause_total_ns as f64 / 1e9);
        }
        for f in w.session.findings().iter().take(MAX_FINDINGS) {
            let mut l = with("pattern", f.pattern);
            l.push(("site".into(), f.site.function.clone()));
            findings.get_or_create(&l).set(1);
        }
    }

    // How late the most overdue snapshot is: above zero, --cpu-budget is too small for this
    // many targets at this --interval.
    let now = std::time::Instant::now();
    let behind = targets
        .iter()
        .map(|t| now.saturating_duration_since(lock(t).next_record))
        .max()
        .unwrap_or_default();
    let stats = shared.stats();
    let mut agent = |name: &str, help: &str, value: f64| {
        let g = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        g.get_or_create(&Vec::new()).set(value);
        reg.register(name, help, g);
    };
    agent(
        "agent_snapshots_behind_seconds",
        "How late the most overdue snapshot is (above 0: the CPU budget is short for the targets)",
        behind.as_secs_f64(),
    );
    agent(
        "agent_targets",
        "Go processes the agent watches now",
        targets.len() as f64,
    );
    agent(
        "agent_targets_over_limit",
        "Go processes left out by --max-targets",
        stats.over_limit as f64,
    );
    let counter = |reg: &mut Registry, name: &str, help: &str, value: f64| {
        let c = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        c.inc_by(value);
        reg.register(name, help, c);
    };
    counter(
        &mut reg,
        "agent_looks",
        "Looks taken at targets' memory",
        stats.looks as f64,
    );
    counter(
        &mut reg,
        "agent_read_cpu_seconds",
        "CPU time the agent spent reading targets",
        stats.look_cpu.as_secs_f64(),
    );
    counter(
        &mut reg,
        "agent_snapshot_cpu_seconds",
        "CPU time the agent spent taking, writing and pushing snapshots",
        stats.snapshot_cpu.as_secs_f64(),
    );
    counter(
        &mut reg,
        "agent_read_errors",
        "Looks that failed (the target exiting, mostly)",
        stats.read_errors as f64,
    );
    counter(
        &mut reg,
        "agent_attach_errors",
        "Go processes the agent could not attach to",
        stats.attach_errors as f64,
    );
    counter(
        &mut reg,
        "agent_targets_exited",
        "Targets dropped because they exited or exec'd",
        stats.targets_exited as f64,
    );
    counter(
        &mut reg,
        "agent_snapshots",
        "Snapshots written to the history",
        stats.snapshots_recorded as f64,
    );
    counter(
        &mut reg,
        "agent_pressure_snapshots",
        "Snapshots taken because a target neared a memory limit",
        stats.pressure_snapshots as f64,
    );
    counter(
        &mut reg,
        "agent_history_errors",
        "Snapshots the history failed to write",
        stats.history_errors as f64,
    );
    // Zero without --push-url: dashboards and alerts need not know whether it is set.
    let p = shared.push_stats().unwrap_or_default();
    counter(
        &mut reg,
        "agent_push_sent",
        "Profiles pushed to Pyroscope",
        p.sent as f64,
    );
    counter(
        &mut reg,
        "agent_push_dropped",
        "Profiles dropped: queue full, or refused by the server",
        p.dropped as f64,
    );
    counter(
        &mut reg,
        "agent_push_failed_attempts",
        "Push requests that failed (and were retried)",
        p.failed_attempts as f64,
    );
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &reg) {
        log::warn!("encoding /metrics: {e}");
    }
    out
}
