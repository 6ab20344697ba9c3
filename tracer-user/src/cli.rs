//! Command-line definitions and the glue from arguments to library calls.

use std::{io::Write, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use gotrace::{
    attach::Handover,
    detect::DetectConfig,
    export,
    probes::ProbeSelection,
    session::{AttachOptions, Session},
    snapshot::{Report, StopReason},
    ui,
    units::{human_bytes, parse_duration, parse_size},
};
use tracer_common::ProbeKind;

#[derive(Parser, Debug)]
#[command(
    name = "gotrace",
    version,
    about = "Find memory and goroutine leaks in running Go programs with eBPF",
    long_about = "gotrace attaches uprobes to the Go runtime of a running process — no code change, \
                  no restart, no pprof endpoint — and reports goroutines, finalizers, channel \
                  backlogs and Go's own heap samples.\n\nNeeds root (or CAP_BPF, CAP_PERFMON and \
                  CAP_SYS_PTRACE) and a Linux kernel with uprobes and BPF ring buffers (5.8+).",
    after_help = "Examples:\n  sudo gotrace attach 4242                 trace until Ctrl-C, write gotrace-4242-<time>/\n  sudo gotrace attach 4242 --duration 30s --out /tmp/leak\n  sudo gotrace attach $(pidof mysvc) --json > report.json\n  gotrace inspect ./mysvc                  what gotrace can see and probe in a binary"
)]
pub struct Cli {
    /// Print debug logs (probe sites, timings).
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Attach to a running Go process, show live activity, write a report on exit.
    #[command(after_help = ATTACH_EXAMPLES)]
    Attach(AttachArgs),
    /// Show what gotrace knows about a Go binary or process: version, symbols, struct offsets,
    /// every probe point and whether it can be placed. Needs no privileges for a file.
    #[command(after_help = INSPECT_EXAMPLES)]
    Inspect(InspectArgs),
    /// Print every goroutine of a running Go process with its state, wait time, stack and
    /// creation site, grouped by identical stacks — like SIGQUIT, but the process keeps running.
    #[command(after_help = DUMP_EXAMPLES)]
    Dump(DumpArgs),
    /// Record a heap profile of a running Go process into a pprof file (no eBPF needed).
    #[command(after_help = RECORD_EXAMPLES)]
    Record(RecordArgs),
    /// CI gate: trace a running process or a command, then exit 0, or 3 with the reasons when a
    /// leak pattern is found or a threshold is crossed.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
}

const CHECK_EXAMPLES: &str = "\
Examples:
  sudo gotrace check --duration 60s -- ./myservice --smoke-test
  sudo gotrace check --pid $(pidof mysvc) --duration 2m --max-inuse 512MiB --max-goroutines 5000
  sudo gotrace check --fail-on goroutine-leak,heap-growth -- ./pkg.test -test.run TestLoad

Exit codes: 0 pass, 3 fail (reasons printed, one per line), 1 error. With a command, a non-zero
exit of the command also fails the check. By default any finding fails it (--fail-on none to
only enforce the thresholds). The report and profiles are written to --out as with attach.";

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Trace this running process instead of starting a command.
    #[arg(long, conflicts_with = "command")]
    pub pid: Option<u32>,

    /// How long to trace (default: until the command exits; required with --pid).
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Patterns that fail the check: `all` (default), `none` (only the thresholds), or a list
    /// of goroutine-leak, heap-growth, syncmap-growth, syncpool-misuse, closure-retention,
    /// chan-backlog, finalizer-abuse, cgo-malloc-leak.
    #[arg(long, value_delimiter = ',', default_value = "all", value_name = "PATTERN,...", value_parser = parse_fail_on)]
    pub fail_on: Vec<String>,

    /// Fail when the heap in use exceeds this at any point (e.g. 512MiB).
    #[arg(long, value_parser = parse_size)]
    pub max_inuse: Option<u64>,

    /// Fail when more goroutines than this are alive at any point.
    #[arg(long)]
    pub max_goroutines: Option<u64>,

    /// Output directory for the report and profiles (default: gotrace-<pid>-<time>).
    #[arg(short, long)]
    pub out: Option<PathBuf>,

    /// The command to start and trace (after `--`).
    #[arg(last = true, value_name = "CMD ARGS")]
    pub command: Vec<String>,

    #[command(flatten)]
    pub detect: DetectConfig,
}

const RECORD_EXAMPLES: &str = "\
Examples:
  sudo gotrace record 4242 --duration 30s -o heap.pb.gz
  go tool pprof -top heap.pb.gz
  go tool pprof -http=: -sample_index=alloc_space heap.pb.gz

Turns Go's heap sampler on if the program has it off (MemProfileRate = 512 KiB, restored at the
end), waits, and writes what the runtime sampled as of the last GC cycle, in the same format
as Go's own heap profile.";

#[derive(Args, Debug)]
pub struct RecordArgs {
    /// Process id of the Go program.
    pub pid: u32,
    /// How long to record.
    #[arg(short, long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// The pprof file to write (gzipped profile.proto).
    #[arg(short, long, default_value = "heap.pb.gz")]
    pub output: PathBuf,
    #[command(flatten)]
    pub heap: HeapArgs,
    /// Do not print the live summary.
    #[arg(short, long)]
    pub quiet: bool,
}

const DUMP_EXAMPLES: &str = "\
Examples:
  sudo gotrace dump 4242                 groups, largest first
  sudo gotrace dump 4242 --all           every goroutine, like Go's debug=2 dump
  sudo gotrace dump 4242 --json | jq '.groups[0]'

Reads memory only (process_vm_readv): the process is never stopped or signalled. A goroutine
that is running at that instant has no stack to show.";

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Process id of the Go program.
    pub pid: u32,
    /// Every goroutine on its own instead of groups.
    #[arg(long)]
    pub all: bool,
    /// Include the runtime's own goroutines (GC workers, finalizer goroutine...).
    #[arg(long)]
    pub system: bool,
    /// Print JSON (goroutines and groups).
    #[arg(long)]
    pub json: bool,
}

const INSPECT_EXAMPLES: &str = "\
Examples:
  gotrace inspect ./myservice
  sudo gotrace inspect 4242
  gotrace inspect --json /usr/bin/someprog | jq .probes";

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A process id, or the path of a Go executable.
    pub target: String,

    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

const ATTACH_EXAMPLES: &str = "\
Examples:
  sudo gotrace attach 4242
  sudo gotrace attach 4242 --duration 30s --out /tmp/leak
  sudo gotrace attach 4242 --chan-sends --duration 10s --json

Stops on Ctrl-C, SIGTERM, --duration, or when the process exits; the probes are removed and the
report is written in every case.

Cost: by default gotrace places no probe at all. It reads goroutines, the heap profile, GC
state, channels and the finalizer queue from the runtime's memory, and turns Go's own heap
sampler on at 512 KiB if it is off. Each probe flag makes every call of its runtime function
trap into the kernel (~4 µs): --goroutine-events costs every `go` statement, --finalizer-sites
every SetFinalizer, --chan-sends every channel send (60x slower for a tight send loop),
--chan-make every make(chan), --exact-alloc every allocation (20x slower allocation). Use them
for short, targeted runs.";

/// How gotrace treats the target's heap sampler, and the live flamegraph.
#[derive(Args, Debug)]
pub struct HeapArgs {
    /// Heap sampling rate to set in the target, in bytes (e.g. 512KiB, 64KiB, 1MiB). Default:
    /// Go's own 512 KiB when the program's sampler is off; left alone when it is on.
    #[arg(long, value_parser = parse_size)]
    pub sample_rate: Option<u64>,

    /// Never write into the target. The heap profile is then only available if the program
    /// already samples (it links runtime/pprof or net/http/pprof, or sets MemProfileRate).
    #[arg(long, conflicts_with = "sample_rate")]
    pub read_only: bool,

    /// Keep an SVG flamegraph of the heap in use up to date in this file while attached
    /// (rewritten atomically every few seconds: open it in a browser and reload).
    #[arg(long, value_name = "FILE.svg")]
    pub flamegraph: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Process id of the Go program.
    pub pid: u32,

    /// Stop after this long (e.g. 30s, 5m); default: until Ctrl-C or the process exits.
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Output directory [default: gotrace-<pid>-<time>].
    #[arg(short, long)]
    pub out: Option<PathBuf>,

    /// Also print report.json on stdout.
    #[arg(long)]
    pub json: bool,

    /// Do not print the live summary.
    #[arg(short, long)]
    pub quiet: bool,

    /// Probe every goroutine start and exit (runtime.newproc1, runtime.goexit1): exact
    /// per-goroutine events with parent and creation site, at ~4 µs per `go` statement.
    /// Without it, gotrace counts goroutines from the runtime's memory at no cost.
    #[arg(long)]
    pub goroutine_events: bool,

    /// Probe runtime.SetFinalizer, to name the call sites that set finalizers and their
    /// rates (~4 µs per SetFinalizer call).
    #[arg(long)]
    pub finalizer_sites: bool,

    /// Probe libc malloc/calloc/realloc/free to find C memory (cgo, C libraries) that is never
    /// freed: costs every C allocation two traps and every free one (~4 µs each).
    #[arg(long)]
    pub cgo_malloc: bool,

    /// Probe every channel send (runtime.chansend): costly on send-heavy programs.
    #[arg(long)]
    pub chan_sends: bool,

    /// Probe the returns of runtime.makechan, to name the `make` of each buffered channel
    /// that backs up: ~17 µs per channel made (nothing for programs that make their channels
    /// at start; 7x slower for a loop making a channel per request).
    #[arg(long)]
    pub chan_make: bool,

    /// Probe every allocation (mallocgc and its variants): very costly, short runs only.
    #[arg(long)]
    pub exact_alloc: bool,

    #[command(flatten)]
    pub heap: HeapArgs,

    /// Seconds between live summary lines.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,

    #[command(flatten)]
    pub detect: DetectConfig,
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Attach(args) => attach(args),
        Command::Inspect(args) => inspect(args),
        Command::Record(args) => record(args),
        Command::Check(args) => check(args),
        Command::Dump(args) => {
            let dump = gotrace::dump::take(args.pid, args.system)?;
            // Streamed: a million goroutines make half a gigabyte of JSON.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            if args.json {
                serde_json::to_writer_pretty(&mut out, &dump)?;
                writeln!(out)?;
            } else {
                out.write_all(dump.render(args.all).as_bytes())?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn inspect(args: InspectArgs) -> Result<ExitCode> {
    let path = std::path::Path::new(&args.target);
    let inspection = match args.target.parse::<u32>() {
        Ok(pid) if !path.exists() => gotrace::inspect::process(pid)?,
        _ => gotrace::inspect::file(path)?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
    } else {
        print!("{}", inspection.render());
    }
    Ok(ExitCode::SUCCESS)
}

fn attach(args: AttachArgs) -> Result<ExitCode> {
    let mut probes = ProbeSelection::default_set();
    if args.chan_sends {
        probes = probes.with(ProbeKind::ChanSend);
    }
    if args.chan_make {
        probes = probes.with(ProbeKind::ChanMake);
    }
    if args.exact_alloc {
        probes = probes.with(ProbeKind::Malloc);
    }
    if args.goroutine_events {
        probes = probes.with_goroutine_events();
    }
    if args.finalizer_sites {
        probes = probes.with(ProbeKind::SetFinalizer);
    }
    if args.cgo_malloc {
        probes = probes.with(ProbeKind::CMalloc).with(ProbeKind::CFree);
    }
    let options = AttachOptions {
        probes,
        duration: args.duration,
        tick: args.interval,
        sample_rate: args.heap.sample_rate,
        read_only: args.heap.read_only,
        detect: args.detect.clone(),
    };
    let mut session = Session::attach(args.pid, options)?;
    let att = session.attachment();
    let info = att.target.info();
    let sites: usize = att.enabled_probes().map(|p| p.sites.len()).sum();
    eprintln!(
        "gotrace: attached to {} ({}, {}{}) in {:.0} ms: {} probes on {} instructions{}",
        args.pid,
        info.exe,
        info.go_version,
        if info.stripped { ", stripped" } else { "" },
        att.attach_time.as_secs_f64() * 1e3,
        att.enabled_probes().count(),
        sites,
        match args.duration {
            Some(d) => format!("; stopping in {}", humantime::format_duration(d)),
            None => "; Ctrl-C to stop".into(),
        }
    );

    let sampler = att.sampler();
    match (sampler.state(), sampler.unavailable()) {
        (Some(s), None) if s.other_sessions > 0 => eprintln!(
            "gotrace: {} other gotrace session(s) attached: heap sampler at runtime.MemProfileRate {} (the program's own: {}; the last session out restores it)",
            s.other_sessions, s.rate, s.rate_at_attach
        ),
        (Some(s), None) if s.set_by_gotrace => eprintln!(
            "gotrace: turned Go's heap sampler on: runtime.MemProfileRate {} -> {} bytes (restored on exit; --read-only to forbid)",
            s.rate_at_attach, s.rate
        ),
        (_, Some(why)) => eprintln!("gotrace: no heap profile: {why}"),
        _ => {}
    }

    let reason = run_live(&mut session, args.quiet, args.heap.flamegraph.as_deref())?;
    let snapshot = session.snapshot(Some(reason))?;
    let out = args.out.unwrap_or_else(|| export::default_dir(args.pid));
    let written = export::write_all(&snapshot, &out)?;
    let report = &snapshot.report;
    eprintln!(
        "gotrace: {} after {:.1}s; probes removed{}. {} goroutines started, {} exited{}, {} events lost",
        match reason {
            StopReason::Stopped => "stopped",
            StopReason::Duration => "done",
            StopReason::TargetExited => "target exited",
            StopReason::TargetExeced => "target exec'd another program",
        },
        report.session.duration_s,
        match session.attachment().sampler().handover() {
            Some(Handover::Restored(r)) => format!(", sampler restored (MemProfileRate {r})"),
            Some(Handover::KeptFor { sessions, rate }) => format!(
                ", sampler left at MemProfileRate {rate} for {sessions} other gotrace session(s)"
            ),
            Some(Handover::ProgramOwn(r)) =>
                format!(", sampler left at the program's own MemProfileRate {r}"),
            _ => String::new(),
        },
        report.counters.goroutines_created,
        report.counters.goroutines_exited,
        report
            .counters
            .finalizers_set
            .map(|n| format!(", {n} finalizers set"))
            .unwrap_or_default(),
        report.counters.events_lost,
    );
    print_heap_top(report, 5);
    if !report.goroutines.live_by_site.is_empty() {
        eprintln!("  goroutines alive at the end, by go statement:");
    }
    for s in report.goroutines.live_by_site.iter().take(5) {
        eprintln!(
            "  {:>10} ({} blocked) created at {} running {}",
            s.live, s.blocked, s.site, s.function
        );
    }
    for site in report.goroutines.created_by_site.iter().take(5) {
        eprintln!(
            "  {:>8} goroutines ({} still running) created at {} running {}",
            site.created,
            site.created.saturating_sub(site.exited),
            site.site,
            site.function
        );
    }
    print_written(&written, &out);
    if args.json {
        println!("{}", report.to_json());
    }
    Ok(ExitCode::SUCCESS)
}

/// `gotrace: wrote report.json, heap.pb.gz, ... in DIR`.
fn print_written(written: &[&str], out: &std::path::Path) {
    let mut files: Vec<&str> = written
        .iter()
        .copied()
        .filter(|f| *f == export::REPORT_JSON)
        .collect();
    files.extend(written.iter().filter(|f| **f != export::REPORT_JSON));
    eprintln!("gotrace: wrote {} in {}", files.join(", "), out.display());
}

/// Runs a session until Ctrl-C/SIGTERM/duration/exit, printing the live summary and keeping
/// the live flamegraph (if asked) up to date.
fn run_live(
    session: &mut Session,
    quiet: bool,
    flamegraph: Option<&std::path::Path>,
) -> Result<StopReason> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut last_svg: Option<std::time::Instant> = None;
    let mut reported = std::collections::HashSet::new();
    let reason = runtime.block_on(session.run(stop_signal(), |session, s| {
        if !quiet {
            eprintln!("{}", ui::summary::format(s));
        }
        for f in session.findings() {
            if reported.insert((f.pattern, f.site.clone())) {
                eprintln!("{}", ui::summary::finding(f));
            }
        }
        if let Some(path) = flamegraph {
            if last_svg.is_none_or(|t| t.elapsed() >= LIVE_FLAMEGRAPH_EVERY) {
                last_svg = Some(std::time::Instant::now());
                if let Err(e) = write_live_flamegraph(session, path) {
                    log::warn!("live flamegraph: {e}");
                }
            }
        }
    }))?;
    if let Some(path) = flamegraph {
        write_live_flamegraph(session, path)?;
    }
    Ok(reason)
}

/// Rewrites the live in-use flamegraph (atomically: a viewer never sees half a file).
fn write_live_flamegraph(session: &Session, path: &std::path::Path) -> gotrace::Result<bool> {
    export::write_one(&session.heap_snapshot()?, export::HEAP_INUSE_SVG, path)
}

/// How often `--flamegraph` rewrites its SVG.
const LIVE_FLAMEGRAPH_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

fn print_heap_top(report: &Report, n: usize) {
    let h = &report.heap;
    if h.top.is_empty() {
        return;
    }
    eprintln!(
        "  heap in use {} ({} objects), {} allocated, as of the last GC; top sites:",
        human_bytes(h.inuse_bytes),
        h.inuse_objects,
        human_bytes(h.alloc_bytes)
    );
    for s in h.by_site().iter().take(n) {
        let age = s
            .oldest
            .map(|oldest| format!(", oldest {oldest} GC cycles"))
            .unwrap_or_default();
        eprintln!(
            "  {:>10} in use {:>10} allocated  {}{age}",
            human_bytes(s.inuse_bytes),
            human_bytes(s.alloc_bytes),
            s.site
        );
    }
}

fn record(args: RecordArgs) -> Result<ExitCode> {
    let options = AttachOptions {
        probes: ProbeSelection::none(),
        duration: Some(args.duration),
        tick: std::time::Duration::from_secs(1),
        sample_rate: args.heap.sample_rate,
        read_only: args.heap.read_only,
        ..AttachOptions::default()
    };
    let mut session = Session::attach(args.pid, options)?;
    eprintln!(
        "gotrace: recording the heap of {} ({}) for {}; Ctrl-C to stop early",
        args.pid,
        session.target().binary.buildinfo.version_string,
        humantime::format_duration(args.duration)
    );
    if let Some(why) = session.attachment().sampler().unavailable() {
        return Err(anyhow::anyhow!("no heap profile: {why}"));
    }
    let reason = run_live(&mut session, args.quiet, args.heap.flamegraph.as_deref())?;
    let snapshot = session.snapshot(Some(reason))?;
    if !export::write_one(&snapshot, export::HEAP, &args.output)? {
        anyhow::bail!("the process exited before a heap profile could be read");
    }
    print_heap_top(&snapshot.report, 10);
    eprintln!(
        "gotrace: wrote {} (view it with `go tool pprof -http=: {}`)",
        args.output.display(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn check(args: CheckArgs) -> Result<ExitCode> {
    use gotrace::check::{wait_for_go_runtime, Gate};
    let mut child = None;
    let pid = match (args.pid, args.command.split_first()) {
        (Some(pid), _) => {
            if args.duration.is_none() {
                anyhow::bail!("--pid needs --duration: how long to watch the process");
            }
            pid
        }
        (None, Some((cmd, rest))) => {
            let c = std::process::Command::new(cmd)
                .args(rest)
                .spawn()
                .map_err(|e| anyhow::anyhow!("cannot start {cmd}: {e}"))?;
            let pid = c.id();
            child = Some(c);
            if let Err(e) = wait_for_go_runtime(pid, std::time::Duration::from_secs(10)) {
                return finished_before_attach(child.as_mut().unwrap(), e);
            }
            pid
        }
        (None, None) => anyhow::bail!("give a command after `--`, or --pid PID --duration DUR"),
    };
    let options = AttachOptions {
        duration: args.duration,
        tick: std::time::Duration::from_millis(500),
        detect: args.detect.clone(),
        ..AttachOptions::default()
    };
    let mut session = match (Session::attach(pid, options), child.as_mut()) {
        (Ok(s), _) => s,
        (Err(e), Some(c)) => return finished_before_attach(c, e),
        (Err(e), None) => return Err(e.into()),
    };
    eprintln!(
        "gotrace check: tracing {pid} ({}){}",
        session.target().binary.buildinfo.version_string,
        match args.duration {
            Some(d) => format!(" for {}", humantime::format_duration(d)),
            None => " until it exits".into(),
        }
    );
    let reason = run_live(&mut session, true, None)?;
    // The same snapshot and files as attach.
    let snapshot = session.snapshot(Some(reason))?;
    let out = args.out.unwrap_or_else(|| export::default_dir(pid));
    export::write_all(&snapshot, &out)?;
    let report = &snapshot.report;
    let gate = Gate {
        fail_on: match args.fail_on.as_slice() {
            [all] if all == "all" => None,
            [none] if none == "none" => Some(Vec::new()),
            list => Some(list.to_vec()),
        },
        max_inuse: args.max_inuse,
        max_goroutines: args.max_goroutines,
    };
    let model = session.model();
    let mut verdict = gate.judge(report, model.peak_heap_in_use, model.peak_goroutines);
    if let Some(mut c) = child {
        // A command still running when --duration ends is stopped: the check is over.
        if c.try_wait()?.is_none() {
            let _ = c.kill();
        }
        let status = c.wait()?;
        if !status.success() && args.duration.is_none() {
            verdict.passed = false;
            verdict
                .reasons
                .push(format!("the command failed ({status})"));
        }
    }
    drop(session);
    if verdict.passed {
        eprintln!("gotrace check: PASS (report in {})", out.display());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("gotrace check: FAIL (report in {})", out.display());
        for r in &verdict.reasons {
            eprintln!("  - {r}");
        }
        Ok(ExitCode::from(3))
    }
}

/// A command that ended before gotrace could attach: nothing was traced, so the command's own
/// exit status decides; any other failure to attach is an error.
fn finished_before_attach(
    child: &mut std::process::Child,
    error: impl Into<anyhow::Error>,
) -> Result<ExitCode> {
    std::thread::sleep(std::time::Duration::from_millis(50));
    let Some(status) = child.try_wait()? else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(error.into());
    };
    eprintln!("gotrace check: the command exited ({status}) before gotrace could attach: nothing was traced");
    if status.success() {
        eprintln!("gotrace check: PASS");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("gotrace check: FAIL\n  - the command failed ({status})");
        Ok(ExitCode::from(3))
    }
}

/// Resolves on Ctrl-C (SIGINT), SIGTERM or SIGHUP.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = recv(signal(SignalKind::terminate()).ok()) => {}
        _ = recv(signal(SignalKind::hangup()).ok()) => {}
    }
}

async fn recv(signal: Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(mut s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// A pattern id, or `all` / `none`.
fn parse_fail_on(s: &str) -> Result<String, String> {
    match s {
        "all" | "none" => Ok(s.to_string()),
        _ => gotrace::detect::parse_pattern(s),
    }
}
