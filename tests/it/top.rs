//! `gotrace top` as a user sees it: run in a real terminal (a tmux pane, driven with
//! `send-keys` and read with `capture-pane`) against leaking programs — the leaking heap site
//! with its growth, the leaking `go` statement with its goroutines, the findings — and left
//! with `q` or Ctrl-C: the terminal restored, the heap sampler given back, the program still
//! running. A stdout that is no terminal is refused.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use gotrace::{probes::ProbeSelection, AttachOptions, Session};
use gotrace_tests::{bpf, children, fixtures, go, gotrace_bin, GoProcess, Toolchain};

/// The detectors judge within ~10 s (heap-growth: a few GC cycles, goroutine-leak: a 10 s
/// window); this leaves room on a busy machine.
const FINDING_WITHIN: Duration = Duration::from_secs(60);
const SCREEN_WITHIN: Duration = Duration::from_secs(20);

/// A tmux server of its own (a private socket) with one 160x45 pane running `gotrace top`,
/// then, once gotrace exits, the exit status and the terminal's settings (`stty -a`).
struct Pane {
    socket: PathBuf,
}

impl Pane {
    fn start(pid: u32) -> Result<Pane> {
        let socket = fixtures::scratch_dir("top")?.join("tmux.sock");
        let pane = Pane { socket };
        let script = format!(
            "'{}' top {pid}; echo \"gotrace exited $?\"; stty -a; echo end of stty; sleep 600",
            gotrace_bin().display()
        );
        pane.tmux(&["new-session", "-d", "-x", "160", "-y", "45", &script])?;
        Ok(pane)
    }

    fn tmux(&self, args: &[&str]) -> Result<String> {
        let out = children::output(
            Command::new("tmux")
                .arg("-S")
                .arg(&self.socket)
                .args(["-f", "/dev/null"])
                .args(args),
        )
        .context("running tmux (apt-get install tmux)")?;
        if !out.status.success() {
            bail!(
                "tmux {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    fn screen(&self) -> Result<String> {
        self.tmux(&["capture-pane", "-p"])
    }

    fn keys(&self, keys: &str) -> Result<()> {
        self.tmux(&["send-keys", keys]).map(drop)
    }

    /// Polls the screen until `found` picks something out of it.
    fn wait_for<T>(
        &self,
        what: &str,
        within: Duration,
        found: impl Fn(&str) -> Option<T>,
    ) -> Result<T> {
        let begin = Instant::now();
        loop {
            let screen = self.screen()?;
            if let Some(t) = found(&screen) {
                return Ok(t);
            }
            if begin.elapsed() > within {
                bail!("no {what} within {within:?}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// After `q` or Ctrl-C: gotrace exited 0 and printed its end line (`gotrace: <how>
    /// after`); the pane is back on its main screen with the terminal out of raw mode.
    /// Returns the end line.
    fn assert_left_cleanly(&self, how: &str) -> Result<String> {
        let screen = self.wait_for("exit", SCREEN_WITHIN, |s| {
            s.contains("end of stty").then(|| s.to_string())
        })?;
        assert!(screen.contains("gotrace exited 0"), "{screen}");
        let alternate = self.tmux(&["display-message", "-p", "#{alternate_on}"])?;
        assert_eq!(alternate.trim(), "0", "still on the alternate screen");
        let settings: Vec<&str> = screen.split_whitespace().collect();
        for mode in ["icanon", "echo", "isig"] {
            assert!(
                settings.contains(&mode),
                "{mode} not restored (the terminal is left raw):\n{screen}"
            );
        }
        let end = screen
            .lines()
            .find(|l| l.starts_with(&format!("gotrace: {how} after")))
            .with_context(|| format!("no end line:\n{screen}"))?;
        Ok(end.to_string())
    }
}

impl Drop for Pane {
    /// Also ends gotrace if a check failed first: the pane's SIGHUP stops it as a signal would.
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// `26.6 MiB` → bytes.
fn bytes(number: &str, unit: &str) -> Option<f64> {
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// A heap view row of `function`: its bytes in use and growth per minute.
fn heap_row(screen: &str, function: &str) -> Option<(f64, f64)> {
    let line = screen
        .lines()
        .find(|l| l.contains(&format!(" {function} (")))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let inuse = bytes(f.first()?, f.get(1)?)?;
    let growth = bytes(f.get(2)?.strip_prefix('+')?, f.get(3)?)?;
    Some((inuse, growth))
}

/// A go-statement row of `site` (`main.handle (goleak/main.go:12)`): live, blocked, growth.
fn go_row(screen: &str, site: &str) -> Option<(u64, u64, f64)> {
    let line = screen.lines().find(|l| l.contains(site))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    Some((f[0].parse().ok()?, f[1].parse().ok()?, f[2].parse().ok()?))
}

/// What the program's `runtime.MemProfileRate` is now, read without writing anything.
fn memprofilerate(pid: u32) -> Result<u64> {
    let look = Session::attach(
        pid,
        AttachOptions {
            probes: ProbeSelection::none(),
            read_only: true,
            ..AttachOptions::default()
        },
    )?;
    Ok(look.sampler().context("the sampler located")?.rate)
}

/// The growing cache, its heap sampler off as in most programs: gotrace turns it on and must
/// turn it off again.
fn heapgrow() -> Result<GoProcess> {
    let exe = fixtures::build(
        "heapgrow",
        Toolchain::find(go::NEWEST)?,
        gotrace_tests::Variant::Default,
    )?;
    GoProcess::start_with(
        Command::new(&exe)
            .args(["-mode", "leak"])
            .env("GODEBUG", "memprofilerate=0"),
    )
}

/// Alive, not a zombie.
fn running(pid: u32) -> Result<bool> {
    Ok(procfs::process::Process::new(pid as i32)?.stat()?.state != 'Z')
}

#[test]
fn heap_view_growth_findings_and_q() -> Result<()> {
    let _children = children::guard();
    let lock = bpf::exclusive();
    let proc = heapgrow()?;
    let pid = proc.pid();
    let pane = Pane::start(pid)?;
    let header = pane.wait_for("header", SCREEN_WITHIN, |s| {
        s.lines()
            .next()
            .filter(|l| l.contains("gotrace top"))
            .map(str::to_string)
    })?;
    assert!(
        header.contains(&format!("pid {pid} ")) && header.contains("heapgrow"),
        "{header}"
    );
    assert!(header.contains("MemProfileRate 0 → 524288"), "{header}");
    // The cache grows by 1 MiB every ~200 ms: hundreds of MiB a minute.
    let (inuse, growth) = pane.wait_for("main.handle growing", SCREEN_WITHIN, |s| {
        heap_row(s, "main.handle").filter(|(_, g)| *g > 0.0)
    })?;
    assert!(inuse >= 1024.0 * 1024.0, "{inuse}");
    assert!(growth >= 10.0 * 1024.0 * 1024.0, "{growth} B/min");
    let screen = pane.screen()?;
    assert!(
        screen.contains("heap ") && screen.contains("goal "),
        "{screen}"
    );
    // The sort moves to the growth column, and back.
    pane.keys("s")?;
    pane.wait_for("sort by growth", SCREEN_WITHIN, |s| {
        s.contains("GROWTH/MIN▼").then_some(())
    })?;
    pane.keys("<")?;
    pane.wait_for("sort by in use", SCREEN_WITHIN, |s| {
        s.contains("IN USE▼").then_some(())
    })?;
    // A smaller terminal: redrawn to its size.
    pane.tmux(&["resize-window", "-x", "100", "-y", "30"])?;
    pane.wait_for("a redraw at 100x30", SCREEN_WITHIN, |s| {
        let lines: Vec<&str> = s.lines().collect();
        (lines.len() == 30 && lines[29].starts_with("q quit") && lines[0].contains("gotrace top"))
            .then_some(())
    })?;
    pane.keys("3")?;
    pane.wait_for("the heap-growth finding", FINDING_WITHIN, |s| {
        s.contains("FINDING heap-growth at main.handle")
            .then_some(())
    })?;
    pane.keys("q")?;
    let end = pane.assert_left_cleanly("stopped")?;
    assert!(end.contains("sampler restored (MemProfileRate 0)"), "{end}");
    assert_eq!(memprofilerate(pid)?, 0, "the program's own rate restored");
    assert!(running(pid)?, "the program was left running");
    drop(proc);
    lock.assert_nothing_loaded()
}

#[test]
fn go_statements_view_and_ctrl_c() -> Result<()> {
    let _children = children::guard();
    let lock = bpf::exclusive();
    let exe = fixtures::build(
        "goleak",
        Toolchain::find(go::NEWEST)?,
        gotrace_tests::Variant::Default,
    )?;
    let proc = GoProcess::start(&exe, &["-mode", "leak"])?;
    let pid = proc.pid();
    // The `go` statement inside handle(), wherever it sits in the source.
    let src = std::fs::read_to_string(fixtures::fixtures_dir().join("goleak/main.go"))?;
    let handle = src.find("func handle(").context("handle")?;
    let go_line = src[..handle + src[handle..].find("go func()").context("go func")?]
        .lines()
        .count();
    let site = format!("main.handle (goleak/main.go:{go_line})");
    let pane = Pane::start(pid)?;
    pane.wait_for("header", SCREEN_WITHIN, |s| {
        s.contains("gotrace top").then_some(())
    })?;
    pane.keys("2")?;
    // One goroutine leaked per request, every ~20 ms: blocked on its send forever.
    let (live, blocked, growth) =
        pane.wait_for("the leaking go statement", SCREEN_WITHIN, |s| {
            go_row(s, &site).filter(|(live, _, growth)| *live >= 20 && *growth > 0.0)
        })?;
    assert!(blocked * 10 >= live * 9, "{blocked} of {live} blocked");
    assert!(growth >= 60.0, "{growth}/min");
    pane.keys("Tab")?;
    pane.wait_for("the goroutine-leak finding", FINDING_WITHIN, |s| {
        s.contains("FINDING goroutine-leak at main.handle")
            .then_some(())
    })?;
    pane.keys("C-c")?;
    pane.assert_left_cleanly("stopped")?;
    assert!(running(pid)?, "the program was left running");
    drop(proc);
    lock.assert_nothing_loaded()
}

#[test]
fn no_terminal_is_refused() -> Result<()> {
    let _children = children::guard();
    let exe = fixtures::build(
        "sampler",
        Toolchain::find(go::NEWEST)?,
        gotrace_tests::Variant::Default,
    )?;
    let mut proc = GoProcess::start(&exe, &["-rate", "0"])?;
    let out = children::output(
        Command::new(gotrace_bin())
            .args(["top", &proc.pid().to_string()])
            .stdin(Stdio::null()),
    )?;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8(out.stderr)?;
    assert_eq!(
        stderr,
        "gotrace top needs a terminal; use gotrace attach for a report\n"
    );
    assert!(out.stdout.is_empty());
    // Refused before attaching: the program's sampler was never touched.
    proc.send("rate")?;
    let rate = proc.expect_line("rate ", Duration::from_secs(10))?;
    assert_eq!(rate, "rate 0");
    Ok(())
}

/// The terminal going away (an ssh connection closed: SIGHUP) ends the session as `q` does.
#[test]
fn a_hangup_restores_the_sampler() -> Result<()> {
    let _children = children::guard();
    let lock = bpf::exclusive();
    let proc = heapgrow()?;
    let pid = proc.pid();
    let pane = Pane::start(pid)?;
    pane.wait_for("the heap view", SCREEN_WITHIN, |s| {
        heap_row(s, "main.handle").map(drop)
    })?;
    let shell: i32 = pane
        .tmux(&["display-message", "-p", "#{pane_pid}"])?
        .trim()
        .parse()?;
    let gotrace = procfs::process::Process::new(shell)?
        .task_main_thread()?
        .children()?
        .first()
        .copied()
        .context("gotrace is not running in the pane")?;
    assert_eq!(memprofilerate(pid)?, 512 * 1024, "turned on while watched");
    pane.tmux(&["kill-server"])?;
    let begin = Instant::now();
    while running(gotrace as u32).unwrap_or(false) {
        if begin.elapsed() > SCREEN_WITHIN {
            bail!("gotrace did not exit on SIGHUP");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(memprofilerate(pid)?, 0, "the program's own rate restored");
    assert!(running(pid)?, "the program was left running");
    drop(proc);
    lock.assert_nothing_loaded()
}

#[test]
fn target_exit_keeps_the_last_picture_until_q() -> Result<()> {
    let _children = children::guard();
    let lock = bpf::exclusive();
    let exe = fixtures::build(
        "goleak",
        Toolchain::find(go::NEWEST)?,
        gotrace_tests::Variant::Default,
    )?;
    let proc = GoProcess::start(&exe, &["-mode", "leak", "-for", "5s"])?;
    let pane = Pane::start(proc.pid())?;
    pane.wait_for("header", SCREEN_WITHIN, |s| {
        s.contains("gotrace top").then_some(())
    })?;
    pane.keys("2")?;
    let screen = pane.wait_for("the target's exit", SCREEN_WITHIN, |s| {
        s.contains("target exited — q to leave")
            .then(|| s.to_string())
    })?;
    assert!(screen.contains("main.handle (goleak/main.go:"), "{screen}");
    // Still up until asked to leave.
    std::thread::sleep(Duration::from_secs(1));
    assert!(pane.screen()?.contains("target exited — q to leave"));
    pane.keys("q")?;
    let end = pane.assert_left_cleanly("target exited")?;
    // When it exited (within its 5 s, counted from before gotrace attached), not when the user
    // left.
    let after: f64 = end
        .trim_start_matches("gotrace: target exited after ")
        .split('s')
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| end.clone())?;
    assert!(after <= 5.0, "{end}");
    drop(proc);
    lock.assert_nothing_loaded()
}
