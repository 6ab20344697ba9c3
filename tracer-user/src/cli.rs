//! Command-line definitions and the glue from arguments to library calls.

use std::{io::Write, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use gotrace::{
    agent::history::{self, HistoryReader},
    attach::Handover,
    detect::DetectConfig,
    export::{self, flamegraph::HeapValue},
    files::{OutDir, OutFile, Sink},
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
    after_help = "Examples:\n  sudo gotrace attach 4242                 trace until Ctrl-C, write gotrace-4242-<time>/\n  sudo gotrace attach 4242 --duration 30s --out /tmp/leak\n  sudo gotrace attach $(pidof mysvc) --json > report.json\n  gotrace inspect ./mysvc                  what gotrace can see and probe in a binary\n\n\
Exit codes: 0 success, 1 error (one line naming the problem and the fix), 2 usage error (an
unknown option, a bad value), 3 a check that failed."
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
    /// A live terminal view of a running Go process, like top: allocation sites by bytes in
    /// use with their growth, `go` statements by live goroutines, the findings (`q` quits).
    #[command(after_help = TOP_EXAMPLES)]
    Top(TopArgs),
    /// Record a heap profile of a running Go process into a pprof file (no eBPF needed).
    #[command(after_help = RECORD_EXAMPLES)]
    Record(RecordArgs),
    /// CI gate: trace a running process or a command, then exit 0, or 3 with the reasons when a
    /// leak pattern is found or a threshold is crossed.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
    /// Watch every Go process on this host continuously: heap, allocation and goroutine
    /// profiles served as Go serves them, Prometheus metrics, pushes to Pyroscope, a local
    /// history and leak findings, with no probe and no change to the programs.
    #[command(after_help = AGENT_EXAMPLES, args_override_self = true)]
    Agent(AgentArgs),
    /// The history `gotrace agent` keeps: list its targets and snapshots, copy one out as an
    /// output directory. Needs only read access to the state directory.
    #[command(after_help = HISTORY_EXAMPLES)]
    History(HistoryArgs),
    /// Compare two heap profiles: the functions whose heap grew most, and a differential
    /// flamegraph. Needs no privileges (only read access to the files or the history).
    #[command(after_help = DIFF_EXAMPLES)]
    Diff(DiffArgs),
}

const DIFF_EXAMPLES: &str = "\
Examples:
  gotrace diff before/heap.pb.gz after/heap.pb.gz            the table of what grew
  gotrace diff gotrace-4242-0900/ gotrace-4242-1000/ --out grew.svg
  curl -so a.pb.gz localhost:6060/debug/pprof/heap; sleep 600; curl -so b.pb.gz localhost:6060/debug/pprof/heap
  gotrace diff a.pb.gz b.pb.gz --sample-index alloc_space --top 10
  gotrace diff --target 4242-1234567 --since 1h --out grew.svg   from the agent's history

BASE and NEW are heap profiles in pprof's format (gzipped or not: gotrace's heap.pb.gz, Go's
own /debug/pprof/heap) or gotrace output directories (their heap.pb.gz). With --target, NEW is
the target's newest snapshot in the agent's history and BASE the newest one taken at least
--since ago. Each row is the change of a function's flat value (allocated in the function
itself), as `go tool pprof -top -diff_base BASE NEW` counts it, with the line in it that
changed most; the one that grew most comes first, what shrank most last. The totals are the
same as pprof's. In the flamegraph (NEW's stacks), red grew, blue shrank.";

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The earlier profile: a heap profile file or a gotrace output directory.
    #[arg(value_name = "BASE", required_unless_present = "target")]
    pub base: Option<PathBuf>,
    /// The later profile.
    #[arg(value_name = "NEW", required_unless_present = "target")]
    pub new: Option<PathBuf>,
    /// Compare snapshots of this agent target (PID-STARTTIME, see `gotrace history list`)
    /// instead of two files.
    #[arg(long, value_name = "TARGET_ID", conflicts_with_all = ["base", "new"], requires = "since")]
    pub target: Option<String>,
    /// With --target: how far back BASE is (e.g. 1h, 30m).
    #[arg(long, value_name = "DUR", value_parser = parse_duration, requires = "target")]
    pub since: Option<Duration>,
    /// The agent's state directory (its --state-dir), for --target.
    #[arg(long, value_name = "DIR", default_value = history::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Which value to compare: inuse_space, inuse_objects, alloc_space or alloc_objects.
    #[arg(long, default_value = "inuse_space", value_parser = parse_sample_index)]
    pub sample_index: HeapValue,
    /// How many functions to list (0: all).
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Also write the differential flamegraph (SVG) to this file (its directory must exist;
    /// a file there is replaced atomically, never written through a symlink).
    #[arg(short, long, value_name = "FILE.svg")]
    pub out: Option<PathBuf>,
    /// Print the comparison as JSON (every function that changed) instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn parse_sample_index(s: &str) -> std::result::Result<HeapValue, String> {
    HeapValue::from_sample_type(s).ok_or_else(|| {
        let names: Vec<&str> = HeapValue::ALL.iter().map(|v| v.sample_type()).collect();
        format!("not a heap sample type; one of {}", names.join(", "))
    })
}

const AGENT_EXAMPLES: &str = "\
Examples:
  sudo gotrace agent                                  every Go process; http://127.0.0.1:7070
  sudo gotrace agent --include 'api-*' --push-url http://pyroscope:4040
  sudo gotrace agent --config /etc/gotrace/agent.toml --print-config
  curl -s 127.0.0.1:7070/targets
  go tool pprof http://127.0.0.1:7070/targets/<ID>/debug/pprof/heap

Settings come from /etc/gotrace/agent.toml when it exists (or --config FILE): its keys are the
long flags below (`interval = \"30s\"`; a section prefixes its keys: `[push] url = ...` is
--push-url); flags on the command line override it, and lists add up. The file must belong to
root and be writable by no one else. Credentials for Pyroscope come from files or the
environment, never from a flag. SIGTERM or Ctrl-C stops the agent: every target's heap sampler
is restored and a last snapshot of each goes to the history.";

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The settings file (TOML); default /etc/gotrace/agent.toml when it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the settings in force (file and flags together) as TOML, then exit.
    #[arg(long)]
    pub print_config: bool,
    #[command(flatten)]
    pub settings: gotrace::agent::AgentConfig,
}

const HISTORY_EXAMPLES: &str = "\
Examples:
  gotrace history list                           every target, with its labels and snapshots
  gotrace history list 4242-1234567              the snapshots of one target
  gotrace history copy 4242-1234567 --out /tmp/s the latest snapshot, as `attach` writes it
  gotrace history copy 4242-1234567 2026-12-02T03:19:18.123Z --out /tmp/s
  go tool pprof -http=: /tmp/s/heap.pb.gz

A target is PID-STARTTIME (its start time in clock ticks since boot, as in /proc/PID/stat), so
that a pid the kernel reuses is another target. Snapshots are named by the time they were taken
(UTC); a pressure snapshot was taken because memory neared a limit.";

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// The agent's state directory (its --state-dir).
    #[arg(long, value_name = "DIR", default_value = history::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    #[command(subcommand)]
    pub command: HistoryCommand,
}

#[derive(Subcommand, Debug)]
pub enum HistoryCommand {
    /// The targets with snapshots; with TARGET_ID, that target's snapshots.
    List {
        #[arg(value_name = "TARGET_ID")]
        target: Option<String>,
    },
    /// Writes one snapshot as an output directory: the files `gotrace attach` writes.
    Copy {
        #[arg(value_name = "TARGET_ID")]
        target: String,
        /// The snapshot's name (see `list TARGET_ID`), or `latest`.
        #[arg(value_name = "SNAPSHOT", default_value = "latest")]
        snapshot: String,
        /// Output directory, created if missing; an existing one must be yours (or root's) and
        /// writable by nobody else.
        #[arg(short, long)]
        out: PathBuf,
    },
}

const CHECK_EXAMPLES: &str = "\
Examples:
  sudo gotrace check --duration 60s -- ./myservice --smoke-test
  sudo gotrace check --pid $(pidof mysvc) --duration 2m --max-inuse 512MiB --max-goroutines 5000
  sudo gotrace check --fail-on goroutine-leak,heap-growth -- ./pkg.test -test.run TestLoad

Exit codes: 0 pass, 3 fail (reasons printed, one per line), 1 error, 2 usage error. With a
command, a non-zero exit of the command also fails the check, and so does a command in which
gotrace found no Go program to trace (an error: it exited first, or ran none within --duration).
The command may be a wrapper (a shell script, say): gotrace traces the first Go program it or
its descendants run. Started through sudo, gotrace runs the command as the user who ran sudo
(SUDO_UID, SUDO_GID, no supplementary groups); --as-root keeps it root. By default any finding
fails the check (--fail-on none to only enforce the thresholds). The report and profiles are
written to --out as with attach.";

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Trace this running process instead of starting a command.
    #[arg(long, conflicts_with = "command", requires = "duration")]
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

    /// Output directory for the report and profiles, as attach's --out (default:
    /// gotrace-<pid>-<time>).
    #[arg(short, long)]
    pub out: Option<PathBuf>,

    /// Run the command as root even when gotrace was started through sudo (by default it runs
    /// as the user who ran sudo).
    #[arg(long, conflicts_with = "pid")]
    pub as_root: bool,

    /// The command to start and trace (after `--`).
    #[arg(last = true, value_name = "CMD ARGS", required_unless_present = "pid")]
    pub command: Vec<String>,

    #[command(flatten)]
    pub detect: DetectConfig,
}

const TOP_EXAMPLES: &str = "\
Examples:
  sudo gotrace top 4242
  sudo gotrace top $(pidof mysvc) --interval 2s

Keys: 1 heap sites, 2 go statements, 3 findings (or Tab); s (or < >) changes the sort column;
? explains the columns; q, Esc or Ctrl-C quits. Costs the program what `gotrace attach` does
with no probe flag: memory reads, and Go's heap sampler turned on at 512 KiB if it is off
(restored on exit). Needs a terminal; `gotrace attach` writes a report instead.";

#[derive(Args, Debug)]
pub struct TopArgs {
    /// Process id of the Go program.
    pub pid: u32,

    /// Time between refreshes (the runtime's state is read at each).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,

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
    /// (rewritten atomically every few seconds: open it in a browser and reload). Its
    /// directory must exist.
    #[arg(long, value_name = "FILE.svg")]
    pub flamegraph: Option<PathBuf>,
}

impl HeapArgs {
    /// The live flamegraph's file, checked before attaching.
    fn flamegraph_file(&self) -> Result<Option<OutFile>> {
        Ok(self.flamegraph.as_deref().map(OutFile::open).transpose()?)
    }
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Process id of the Go program.
    pub pid: u32,

    /// Stop after this long (e.g. 30s, 5m); default: until Ctrl-C or the process exits.
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Output directory, created if missing; an existing one must be yours (or root's) and
    /// writable by nobody else [default: gotrace-<pid>-<time>, which must not exist].
    #[arg(short, long)]
    pub out: Option<PathBuf>,

    /// Also print report.json on stdout.
    #[arg(long)]
    pub json: bool,

    /// Do not print the live summary.
    #[arg(short, long)]
    pub quiet: bool,

    /// Serve the live page while attached: flamegraphs of the heap in use, of the latest
    /// allocations and of the goroutines, updated every tick; timelines; findings; goroutine
    /// groups; the heap now against at attach or minutes ago. ADDR defaults to 127.0.0.1 and
    /// a free port (the URL is printed); anything but loopback lets others read the
    /// program's stacks. Costs the target nothing beyond what attach reads already.
    #[arg(long, value_name = "ADDR", num_args = 0..=1,
          default_missing_value = gotrace::web::serve::DEFAULT_ADDR)]
    pub web: Option<std::net::SocketAddr>,

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
        Command::Top(args) => top(args),
        Command::Check(args) => check(args),
        Command::History(args) => history(args),
        Command::Diff(args) => diff(args),
        Command::Agent(args) => agent(args),
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

fn diff(args: DiffArgs) -> Result<ExitCode> {
    use gotrace::diff::{self, Diff, Input};
    // Checked before the profiles are read, so that a bad --out fails at once.
    let mut out = args.out.as_deref().map(OutFile::open).transpose()?;
    let (base, new) = match (&args.target, args.since, &args.base, &args.new) {
        (Some(target), Some(since), _, _) => {
            let reader = HistoryReader::open(&args.state_dir)?;
            Input::from_history(&reader, target, since, std::time::SystemTime::now())?
        }
        (_, _, Some(base), Some(new)) => (Input::read(base)?, Input::read(new)?),
        // clap already refuses these.
        _ => anyhow::bail!("give BASE and NEW, or --target ID with --since DURATION"),
    };
    let table = Diff::new(&base, &new, args.sample_index)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&table)?);
    } else {
        print!("{}", table.render(args.top));
    }
    if let Some(file) = out.as_mut() {
        let path = file.write(&diff::svg(&base, &new, args.sample_index)?)?;
        eprintln!("gotrace: wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn agent(args: AgentArgs) -> Result<ExitCode> {
    if args.print_config {
        print!("{}", args.settings.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(gotrace::agent::run(args.settings, stop_signal()))?;
    Ok(ExitCode::SUCCESS)
}

/// The command line with the agent's settings file spliced in before the flags given, so
/// that those override it (the agent's arguments override themselves). The file is read
/// only for `agent`; a problem with it is an error before anything starts.
pub fn args_with_config() -> Result<Vec<std::ffi::OsString>> {
    use clap::CommandFactory;
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let Some(at) = args
        .iter()
        .skip(1)
        .position(|a| a == "agent")
        .map(|i| i + 1)
    else {
        return Ok(args);
    };
    // Only when `agent` is the subcommand: everything before it is a global flag.
    if args[1..at]
        .iter()
        .any(|a| !a.to_string_lossy().starts_with('-'))
    {
        return Ok(args);
    }
    let mut explicit = None;
    let mut rest = args[at + 1..].iter();
    while let Some(a) = rest.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if let Some(v) = a.strip_prefix("--config=") {
            explicit = Some(PathBuf::from(v));
        } else if a == "--config" {
            explicit = rest.next().map(PathBuf::from);
        }
    }
    let cmd = Cli::command();
    let known: Vec<String> = cmd
        .find_subcommand("agent")
        .map(|c| {
            c.get_arguments()
                .filter_map(|a| a.get_long().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if let Some(extra) = gotrace::agent::config::file_args(explicit.as_deref(), &known)? {
        args.splice(at + 1..at + 1, extra);
    }
    Ok(args)
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

fn history(args: HistoryArgs) -> Result<ExitCode> {
    let reader = HistoryReader::open(&args.state_dir)?;
    let time = |t| humantime::format_rfc3339_millis(t).to_string();
    let mut out = std::io::stdout().lock();
    match args.command {
        HistoryCommand::List { target: None } => {
            writeln!(
                out,
                "{:<24} {:>9}  {:<24}  {:<24}  LABELS",
                "TARGET", "SNAPSHOTS", "FIRST", "LAST"
            )?;
            for t in reader.targets()? {
                let (Some(first), Some(last)) = (t.snapshots.first(), t.snapshots.last()) else {
                    continue;
                };
                let labels: Vec<String> =
                    t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                writeln!(
                    out,
                    "{:<24} {:>9}  {:<24}  {:<24}  {}",
                    t.id,
                    t.snapshots.len(),
                    time(first.time),
                    time(last.time),
                    labels.join(" ")
                )?;
            }
        }
        HistoryCommand::List { target: Some(id) } => {
            writeln!(out, "{:<24}  {:>10}  KIND", "SNAPSHOT", "BYTES")?;
            for s in reader.target(&id)?.snapshots {
                writeln!(
                    out,
                    "{:<24}  {:>10}  {}",
                    s.name,
                    human_bytes(s.bytes),
                    s.kind
                )?;
            }
        }
        HistoryCommand::Copy {
            target,
            snapshot,
            out: dir,
        } => {
            let name = (snapshot != "latest").then_some(snapshot.as_str());
            let mut sink = Sink::new(OutDir::open(&dir)?);
            let (info, snapshot) = reader.load(&target, name)?;
            let written = export::write_all(&snapshot, &mut sink)?;
            eprintln!(
                "gotrace: snapshot {} of {target} ({})",
                info.name, info.kind
            );
            print_written(&written, sink.dir());
            sink.finish()?;
        }
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
    // Outputs are checked before attaching: a bad path fails now, not after the session.
    let mut sink = Sink::new(out_dir(args.out.as_deref(), args.pid)?);
    let mut flamegraph = args.heap.flamegraph_file()?;
    let web = args.web.map(gotrace::web::serve::bind).transpose()?;
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

    if let Some(l) = &web {
        eprintln!("gotrace: live page at http://{}/", l.local_addr()?);
    }
    let reason = run_live(&mut session, args.quiet, flamegraph.as_mut(), web)?;
    let snapshot = session.snapshot(Some(reason))?;
    let written = write_outputs(&snapshot, &mut sink, flamegraph.as_mut())?;
    let report = &snapshot.report;
    eprintln!(
        "{}",
        end_line(reason, report.session.duration_s, report, &session)
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
    print_written(&written, sink.dir());
    if args.json {
        println!("{}", report.to_json());
    }
    finish(sink, flamegraph)?;
    Ok(ExitCode::SUCCESS)
}

/// `gotrace: stopped after 12.3s; probes removed, sampler restored (...). 40 goroutines
/// started, ...`: how a session ended, when (seconds since attach) and what it left in the
/// target.
fn end_line(reason: StopReason, after_s: f64, report: &Report, session: &Session) -> String {
    format!(
        "gotrace: {} after {:.1}s; probes removed{}. {} goroutines started, {} exited{}, {} events lost",
        match reason {
            StopReason::Stopped => "stopped",
            StopReason::Duration => "done",
            StopReason::TargetExited => "target exited",
            StopReason::TargetExeced => "target exec'd another program",
        },
        after_s,
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
    )
}

/// `--out DIR`, or the default directory, made anew.
fn out_dir(out: Option<&std::path::Path>, pid: u32) -> gotrace::Result<OutDir> {
    match out {
        Some(dir) => OutDir::open(dir),
        None => OutDir::create_new(&export::default_dir(pid)),
    }
}

/// A session's files, and the live flamegraph's last picture.
fn write_outputs(
    snapshot: &gotrace::snapshot::Snapshot,
    sink: &mut Sink,
    flamegraph: Option<&mut OutFile>,
) -> gotrace::Result<Vec<&'static str>> {
    let written = export::write_all(snapshot, sink)?;
    if let Some(file) = flamegraph {
        export::write_one(snapshot, export::HEAP_INUSE_SVG, file)?;
    }
    Ok(written)
}

/// An error, naming where the files went instead, when some could not be written where asked.
fn finish(sink: Sink, flamegraph: Option<OutFile>) -> gotrace::Result<()> {
    sink.finish()?;
    flamegraph.map_or(Ok(()), |f| f.sink.finish())
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
    mut flamegraph: Option<&mut OutFile>,
    web: Option<std::net::TcpListener>,
) -> Result<StopReason> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let view = web.map(|listener| {
        let view = gotrace::web::Shared::default();
        let router = gotrace::web::serve::router(view.clone(), session.options().tick);
        let _guard = runtime.enter();
        gotrace::web::serve::spawn(listener, router).map(|()| view)
    });
    let view = view.transpose()?;
    let mut last_svg: Option<std::time::Instant> = None;
    let mut reported = std::collections::HashSet::new();
    let reason = runtime.block_on(session.run(stop_signal(), |session, s| {
        if let Some(view) = &view {
            view.refresh(session);
        }
        if !quiet {
            eprintln!("{}", ui::summary::format(s));
        }
        for f in session.findings() {
            if reported.insert((f.pattern, f.site.clone())) {
                eprintln!("{}", ui::summary::finding(f));
            }
        }
        if let Some(file) = flamegraph.as_deref_mut() {
            if last_svg.is_none_or(|t| t.elapsed() >= LIVE_FLAMEGRAPH_EVERY) {
                last_svg = Some(std::time::Instant::now());
                // Atomically: a viewer never sees half a file. The last picture is drawn from
                // the final snapshot, with the other files.
                let written = session
                    .heap_snapshot()
                    .and_then(|s| export::write_one(&s, export::HEAP_INUSE_SVG, file));
                if let Err(e) = written {
                    log::warn!("live flamegraph: {e}");
                }
            }
        }
    }))?;
    Ok(reason)
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

fn top(args: TopArgs) -> Result<ExitCode> {
    use std::io::IsTerminal;
    // Before attaching: nothing is done to a program whose view nobody could see.
    if !std::io::stdout().is_terminal() {
        eprintln!("gotrace top needs a terminal; use gotrace attach for a report");
        return Ok(ExitCode::from(2));
    }
    let options = AttachOptions {
        tick: args.interval,
        detect: args.detect.clone(),
        ..AttachOptions::default()
    };
    let mut session = Session::attach(args.pid, options)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ended = runtime.block_on(ui::top::run(&mut session, stop_signal()))?;
    let snapshot = session.snapshot(Some(ended.reason))?;
    eprintln!(
        "{}",
        end_line(
            ended.reason,
            ended.after.as_secs_f64(),
            &snapshot.report,
            &session
        )
    );
    Ok(ExitCode::SUCCESS)
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
    let mut output = OutFile::open(&args.output)?;
    let mut flamegraph = args.heap.flamegraph_file()?;
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
    let reason = run_live(&mut session, args.quiet, flamegraph.as_mut(), None)?;
    let snapshot = session.snapshot(Some(reason))?;
    if !export::write_one(&snapshot, export::HEAP, &mut output)? {
        anyhow::bail!("the process exited before a heap profile could be read");
    }
    if let Some(file) = flamegraph.as_mut() {
        export::write_one(&snapshot, export::HEAP_INUSE_SVG, file)?;
    }
    print_heap_top(&snapshot.report, 10);
    let path = output.path();
    eprintln!(
        "gotrace: wrote {} (view it with `go tool pprof -http=: {}`)",
        path.display(),
        path.display()
    );
    finish(output.sink, flamegraph)?;
    Ok(ExitCode::SUCCESS)
}

fn check(args: CheckArgs) -> Result<ExitCode> {
    use gotrace::check::{self as gate, Gate};
    // Outputs are checked before anything starts; the default directory is named after the
    // traced process, and made as soon as it is known, before attaching.
    let mut sink = args
        .out
        .as_deref()
        .map(OutDir::open)
        .transpose()?
        .map(Sink::new);
    let mut child = None;
    let pid = match (args.pid, args.command.split_first()) {
        (Some(pid), _) => pid,
        (None, Some((cmd, rest))) => {
            let mut c = gate::spawn(cmd, rest, args.as_root)?;
            let until = args.duration.map(|d| std::time::Instant::now() + d);
            match gate::wait_for_go_program(c.id(), until) {
                Ok(Some(pid)) => {
                    child = Some(c);
                    pid
                }
                Ok(None) => return nothing_traced(&mut c, None),
                Err(e) => return nothing_traced(&mut c, Some(e)),
            }
        }
        // clap requires one or the other.
        (None, None) => anyhow::bail!("give a command after `--`, or --pid PID --duration DUR"),
    };
    let mut sink = match sink.take() {
        Some(sink) => sink,
        None => Sink::new(out_dir(None, pid)?),
    };
    let options = AttachOptions {
        duration: args.duration,
        tick: std::time::Duration::from_millis(500),
        detect: args.detect.clone(),
        ..AttachOptions::default()
    };
    let mut session = match (Session::attach(pid, options), child.as_mut()) {
        (Ok(s), _) => s,
        (Err(e), Some(c)) => return nothing_traced(c, Some(e)),
        (Err(e), None) => return Err(e.into()),
    };
    eprintln!(
        "gotrace check: tracing {pid} ({}){}{}",
        session.target().binary.buildinfo.version_string,
        match &child {
            Some(c) if c.id() != pid => format!(", started by the command ({})", c.id()),
            _ => String::new(),
        },
        match args.duration {
            Some(d) => format!(" for {}", humantime::format_duration(d)),
            None => " until it exits".into(),
        }
    );
    let reason = run_live(&mut session, true, None, None)?;
    // The same snapshot and files as attach.
    let snapshot = session.snapshot(Some(reason))?;
    export::write_all(&snapshot, &mut sink)?;
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
        // Stopped by --duration or a signal, the command is killed: the check is over. When the
        // traced program exited, a wrapper still running finishes on its own.
        if reason != StopReason::TargetExited {
            gate::kill_family(c.id());
            gate::kill_family(pid);
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
    let out = sink.dir().display().to_string();
    if verdict.passed {
        eprintln!("gotrace check: PASS (report in {out})");
    } else {
        eprintln!("gotrace check: FAIL (report in {out})");
        for r in &verdict.reasons {
            eprintln!("  - {r}");
        }
    }
    sink.finish()?;
    Ok(if verdict.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// The command ended, or ran no Go program within --duration, or gotrace could not attach to
/// the one it ran: nothing was traced. That is an error, never a pass: a gate that saw nothing
/// would hide every leak.
fn nothing_traced(
    child: &mut std::process::Child,
    error: Option<gotrace::Error>,
) -> Result<ExitCode> {
    std::thread::sleep(std::time::Duration::from_millis(50));
    let status = child.try_wait()?;
    if status.is_none() {
        gotrace::check::kill_family(child.id());
        child.wait()?;
    }
    match (status, error) {
        (Some(status), _) => anyhow::bail!(
            "the command exited ({status}) before gotrace could trace a Go program in it: nothing was traced (the command must run a Go program long enough to be traced)"
        ),
        (None, Some(e)) => Err(e.into()),
        (None, None) => anyhow::bail!(
            "the command ran no Go program within --duration: nothing was traced"
        ),
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
