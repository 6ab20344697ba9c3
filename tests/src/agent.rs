//! A `gotrace agent` started by a test: the real binary on a free loopback port (it prints
//! the address it listens on), requests to it through curl, and its end with SIGTERM.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{children, gotrace_bin};

pub struct Agent {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// Every line the agent logged so far.
    log: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    /// `gotrace agent --listen 127.0.0.1:0 ARGS...`, fast looks and scans, no history unless
    /// `args` name a --state-dir; waits until it listens.
    pub fn start(args: &[&str]) -> Result<Agent> {
        let mut all = vec!["--scan-interval", "1s", "--look-interval", "1s"];
        if !args.iter().any(|a| a.starts_with("--state-dir")) {
            all.push("--no-history");
        }
        all.extend(args);
        Agent::launch(&gotrace_bin(), &all, true)
    }

    /// `BIN agent --listen 127.0.0.1:0 ARGS...` (the agent's defaults otherwise), its log
    /// echoed to stderr if `echo`; waits until it listens.
    pub fn launch(bin: &Path, args: &[&str], echo: bool) -> Result<Agent> {
        let mut cmd = Command::new(bin);
        cmd.args(["agent", "--listen", "127.0.0.1:0"]).args(args);
        Agent::serving(cmd, "listening on ", echo)
    }

    /// `BIN attach PID --web 127.0.0.1:0 ARGS...`, the live page's server: waits until it
    /// prints the page's URL (then attached). `stop` ends the session as Ctrl-C would.
    pub fn attach_web(bin: &Path, pid: u32, args: &[&str]) -> Result<Agent> {
        let mut cmd = Command::new(bin);
        cmd.args(["attach", &pid.to_string(), "--web", "127.0.0.1:0"])
            .args(args);
        Agent::serving(cmd, "live page at ", true)
    }

    /// Starts `cmd` and waits for the line that gives its address after `marker`.
    fn serving(mut cmd: Command, marker: &'static str, echo: bool) -> Result<Agent> {
        cmd.stdin(Stdio::null()).stderr(Stdio::piped());
        let mut child = children::spawn(&mut cmd).with_context(|| format!("starting {cmd:?}"))?;
        let (tx, rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                if echo {
                    eprintln!("agent: {line}");
                }
                if let Some(addr) = line.split(marker).nth(1) {
                    let _ = tx.send(addr.trim().trim_end_matches('/').to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .with_context(|| format!("{cmd:?} never listened: {:?}", log.lock().unwrap()))?;
        Ok(Agent {
            child: Some(child),
            url,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// GET `path`: the status and the body.
    pub fn get(&self, path: &str) -> Result<(u16, Vec<u8>)> {
        curl(&format!("{}{path}", self.url))
    }

    /// GET `path`, which must answer 200.
    pub fn ok(&self, path: &str) -> Result<Vec<u8>> {
        let (status, body) = self.get(path)?;
        if status != 200 {
            bail!("GET {path}: {status} {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }

    /// `/targets`, parsed.
    pub fn targets(&self) -> Result<Vec<serde_json::Value>> {
        Ok(serde_json::from_slice(&self.ok("/targets")?)?)
    }

    /// Waits until `/targets` lists the process `pid`; its entry.
    pub fn wait_for(&self, pid: u32, within: Duration) -> Result<serde_json::Value> {
        let begin = Instant::now();
        loop {
            if let Some(t) = self.targets()?.into_iter().find(|t| t["pid"] == pid) {
                return Ok(t);
            }
            if begin.elapsed() > within {
                bail!(
                    "pid {pid} not among the agent's targets after {within:?}: {:?}",
                    self.targets()?
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Downloads `path` into `dir/name`.
    pub fn save(&self, path: &str, dir: &Path, name: &str) -> Result<PathBuf> {
        let file = dir.join(name);
        std::fs::write(&file, self.ok(path)?)?;
        Ok(file)
    }

    /// SIGTERM, then its exit (within 30 s; past that it is killed).
    pub fn stop(mut self) -> Result<ExitStatus> {
        let child = self
            .child
            .as_mut()
            .context("the agent was stopped already")?;
        rustix::process::kill_process(
            rustix::process::Pid::from_child(child),
            rustix::process::Signal::TERM,
        )?;
        let begin = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if begin.elapsed() > Duration::from_secs(30) {
                bail!("the agent did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// GET `url` with curl: the status and the body.
pub fn curl(url: &str) -> Result<(u16, Vec<u8>)> {
    let out = children::output(
        Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "120",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
            ])
            .arg(url),
    )
    .context("running curl (installed by `cargo xtask setup`)")?;
    if !out.status.success() {
        bail!("curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut body = out.stdout;
    let nl = body
        .iter()
        .rposition(|b| *b == b'\n')
        .context("curl's status")?;
    let status = String::from_utf8_lossy(&body[nl + 1..]).trim().parse()?;
    body.truncate(nl);
    Ok((status, body))
}
