//! A fixture process driven over stdin/stdout: fixtures print `ready` when set up, then wait
//! for commands, so that tests attach at a known moment.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};

pub struct GoProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Every stdout line seen so far.
    pub output: Vec<String>,
}

impl GoProcess {
    /// Starts `exe args...` and waits for its `ready` line.
    pub fn start(exe: &Path, args: &[&str]) -> Result<Self> {
        Self::start_with(Command::new(exe).args(args))
    }

    pub fn start_with(cmd: &mut Command) -> Result<Self> {
        let mut child = crate::children::spawn(
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .with_context(|| format!("starting {cmd:?}"))?;
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut p = GoProcess {
            stdin: child.stdin.take(),
            child,
            lines,
            output: Vec::new(),
        };
        p.expect_line("ready", Duration::from_secs(30))?;
        Ok(p)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Discards the lines printed so far but not yet read.
    pub fn skip_queued(&mut self) {
        while self.lines.try_recv().is_ok() {}
    }

    /// Waits for a line starting with `prefix` and returns it.
    pub fn expect_line(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.output.push(line.clone());
                    if line.starts_with(prefix) {
                        return Ok(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "no line starting with {prefix:?} within {timeout:?}; output so far: {:?}",
                        self.output
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!(
                        "process exited before printing {prefix:?}; output: {:?}",
                        self.output
                    )
                }
            }
        }
    }

    /// Waits for the process to exit and collects the rest of its output.
    pub fn wait(mut self, timeout: Duration) -> Result<(ExitStatus, Vec<String>)> {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                // The reader thread ends at EOF; collect what it read.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.output.push(line);
                }
                return Ok((status, std::mem::take(&mut self.output)));
            }
            if Instant::now() > deadline {
                return Err(anyhow!(
                    "process {} did not exit within {timeout:?}",
                    self.pid()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for GoProcess {
    /// Kills the fixture's whole process group: the fixture and anything it started.
    fn drop(&mut self) {
        crate::children::kill_group(&mut self.child);
    }
}
