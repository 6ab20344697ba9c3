//! A real browser for the web page's tests: headless Chromium driven over W3C WebDriver by
//! Debian's `chromedriver` (packages `chromium`, `chromium-driver`), on a free loopback port.
//! The tests load pages, read the DOM with scripts run in the page, click and type like a
//! user, collect the console's errors and keep screenshots under
//! `target/test-artefacts/<test>/`. Dropping it ends the browser session and kills the driver's
//! process group (the driver and every Chromium process it started).

use std::{
    cell::RefCell,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value};

use crate::children;

/// Debian's binaries; `$CHROMEDRIVER` and `$CHROMIUM` name others.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Browser {
    driver: Child,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    http: ureq::Agent,
    artefacts: PathBuf,
    /// Every console entry read so far (the driver hands each out once).
    console: RefCell<Vec<ConsoleEntry>>,
    /// Chromium's profile, removed with the browser.
    _profile: tempfile::TempDir,
}

/// One line of the browser's console.
#[derive(Clone, Debug)]
pub struct ConsoleEntry {
    /// `SEVERE` (errors, uncaught exceptions, failed loads), `WARNING`, `INFO`, `DEBUG`.
    pub level: String,
    pub message: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; screenshots go to
    /// `target/test-artefacts/<test>/`. Needs a children guard (the driver is a child).
    pub fn start(test: &str) -> Result<Browser> {
        let driver_bin = std::env::var_os("CHROMEDRIVER").unwrap_or_else(|| CHROMEDRIVER.into());
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
        for bin in [PathBuf::from(&driver_bin), PathBuf::from(&chromium)] {
            if !bin.exists() {
                bail!(
                    "{} is missing: install Chromium and its driver (`apt install chromium chromium-driver`, or `cargo xtask setup`)",
                    bin.display()
                );
            }
        }
        let port = crate::receiver::unused_addr()?.port();
        let mut driver = children::spawn(
            Command::new(&driver_bin)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .with_context(|| format!("starting {}", PathBuf::from(&driver_bin).display()))?;
        let http: ureq::Agent = ureq::Agent::config_builder()
            // WebDriver's errors come as 4xx/5xx with a JSON body that says what went wrong.
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let ready = Instant::now();
        loop {
            let status = http.get(format!("{base}/status")).call();
            if let Ok(mut r) = status {
                let v: Value = serde_json::from_str(&r.body_mut().read_to_string()?)?;
                if v["value"]["ready"] == true {
                    break;
                }
            }
            if let Ok(Some(exit)) = driver.try_wait() {
                bail!("chromedriver exited at start ({exit})");
            }
            if ready.elapsed() > Duration::from_secs(20) {
                children::kill_group(&mut driver);
                bail!("chromedriver did not answer on port {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir()?;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                // Root in a container: no sandbox; no GPU; a fixed size for comparable shots.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000",
                         "--no-first-run", "--no-default-browser-check",
                         format!("--user-data-dir={}", profile.path().display())],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let created = post(&http, &format!("{base}/session"), &caps);
        let session_id = match created {
            Ok(v) => v["sessionId"]
                .as_str()
                .context("a new session without an id")?
                .to_string(),
            Err(e) => {
                children::kill_group(&mut driver);
                return Err(e.context("starting a headless Chromium session"));
            }
        };
        let artefacts = crate::fixtures::workspace_root()
            .join("target/test-artefacts")
            .join(test);
        std::fs::create_dir_all(&artefacts)
            .with_context(|| format!("creating {}", artefacts.display()))?;
        Ok(Browser {
            driver,
            session: format!("{base}/session/{session_id}"),
            http,
            artefacts,
            console: RefCell::default(),
            _profile: profile,
        })
    }

    fn cmd(&self, path: &str, body: &Value) -> Result<Value> {
        post(&self.http, &format!("{}/{path}", self.session), body)
    }

    /// Loads `url` and waits for the document to be loaded.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.cmd("url", &json!({ "url": url }))
            .with_context(|| format!("loading {url}"))?;
        Ok(())
    }

    /// Runs `script` (a function body: `return …;`, with `arguments`) in the page.
    pub fn eval(&self, script: &str, args: &[Value]) -> Result<Value> {
        self.cmd("execute/sync", &json!({ "script": script, "args": args }))
            .with_context(|| format!("running in the page: {script}"))
    }

    /// Runs the `script` until it returns something other than null, false, 0 or "" and
    /// returns that; fails after `timeout` saying what was awaited and what was last seen.
    pub fn wait_for(&self, what: &str, timeout: Duration, script: &str) -> Result<Value> {
        let start = Instant::now();
        loop {
            let v = self.eval(script, &[])?;
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(v);
            }
            if start.elapsed() > timeout {
                let shot = self.screenshot(&format!("timeout-{}", slug(what)))?;
                bail!(
                    "waited {timeout:?} for {what}; last `{script}` gave {v}; page text: {}; screenshot {}",
                    self.text("body")?.chars().take(1500).collect::<String>(),
                    shot.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The rendered text of the first element matching a CSS selector ("" without one).
    pub fn text(&self, css: &str) -> Result<String> {
        let v = self.eval(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            &[json!(css)],
        )?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    fn element(&self, css: &str) -> Result<String> {
        let v = self
            .cmd("element", &json!({"using": "css selector", "value": css}))
            .with_context(|| format!("finding `{css}`"))?;
        // W3C's element reference key.
        v["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("`{css}` gave no element: {v}"))
    }

    /// Clicks the element as a user would (scrolled into view, at its centre).
    pub fn click(&self, css: &str) -> Result<()> {
        let id = self.element(css)?;
        self.cmd(&format!("element/{id}/click"), &json!({}))
            .with_context(|| format!("clicking `{css}`"))?;
        Ok(())
    }

    /// Replaces the text of an input, typed key by key (its input events fire).
    pub fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let id = self.element(css)?;
        self.cmd(&format!("element/{id}/clear"), &json!({}))?;
        self.cmd(&format!("element/{id}/value"), &json!({ "text": text }))
            .with_context(|| format!("typing into `{css}`"))?;
        Ok(())
    }

    /// Every console entry since the browser started.
    pub fn console(&self) -> Result<Vec<ConsoleEntry>> {
        // chromedriver's own endpoint (W3C has none): each call returns the entries since the
        // last one.
        let v = self.cmd("se/log", &json!({"type": "browser"}))?;
        let mut all = self.console.borrow_mut();
        for e in v.as_array().into_iter().flatten() {
            all.push(ConsoleEntry {
                level: e["level"].as_str().unwrap_or_default().to_string(),
                message: e["message"].as_str().unwrap_or_default().to_string(),
            });
        }
        Ok(all.clone())
    }

    /// The console's errors (uncaught exceptions, `console.error`, failed loads) so far.
    pub fn console_errors(&self) -> Result<Vec<String>> {
        Ok(self
            .console()?
            .into_iter()
            .filter(|e| e.level == "SEVERE")
            .map(|e| e.message)
            .collect())
    }

    /// Saves a PNG of the window as `<artefacts>/<name>.png` and prints where.
    pub fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let v = get(&self.http, &format!("{}/screenshot", self.session))?;
        let png = base64::engine::general_purpose::STANDARD.decode(
            v.as_str()
                .context("a screenshot that is no base64 string")?,
        )?;
        let path = self.artefacts.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("screenshot: {}", path.display());
        Ok(path)
    }

    /// Where this test's screenshots go.
    pub fn artefacts(&self) -> &std::path::Path {
        &self.artefacts
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium cleanly; the group kill gets whatever is left.
        let _ = self.http.delete(&self.session).call();
        children::kill_group(&mut self.driver);
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A WebDriver command: its `value`, or its error as one line.
fn post(http: &ureq::Agent, url: &str, body: &Value) -> Result<Value> {
    let r = http
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .with_context(|| format!("POST {url}"))?;
    answer(r, url)
}

fn get(http: &ureq::Agent, url: &str) -> Result<Value> {
    let r = http.get(url).call().with_context(|| format!("GET {url}"))?;
    answer(r, url)
}

fn answer(mut r: ureq::http::Response<ureq::Body>, url: &str) -> Result<Value> {
    let status = r.status();
    let text = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{url} answered {status}: {text}"))?;
    if !status.is_success() {
        bail!(
            "{url}: {status} {}: {}",
            v["value"]["error"].as_str().unwrap_or("?"),
            v["value"]["message"]
                .as_str()
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
        );
    }
    Ok(v["value"].clone())
}
