//! Running a gotrace session in the background while a test drives the traced fixture.

use std::thread::JoinHandle;

use anyhow::{anyhow, Result};
use gotrace::{AttachOptions, Session, StopReason};

use tokio::sync::oneshot;

pub struct Tracing {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(Session, StopReason)>>,
}

/// Attaches to `pid` (synchronously: when this returns, the probes are in place) and processes
/// events on a background thread until [`Tracing::finish`] or the target's exit.
pub fn start(pid: u32, options: AttachOptions) -> Result<Tracing> {
    let mut session = Session::attach(pid, options)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let reason = rt.block_on(session.run(
            async {
                let _ = stopped.await;
            },
            |_, _| {},
        ))?;
        Ok((session, reason))
    });
    Ok(Tracing {
        stop: Some(stop),
        handle,
    })
}

impl Tracing {
    /// Stops the session (if the target has not ended it already) and returns it, detached.
    pub fn finish(mut self) -> Result<(Session, StopReason)> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle
            .join()
            .map_err(|_| anyhow!("the tracing thread panicked"))?
    }
}

/// One traced run of a fixture: start `fixture args...` built with `release` and `variant`,
/// attach with `options`, optionally tell it "go", let it run `run_for`, and build the report.
pub struct Run<'a> {
    pub fixture: &'a str,
    pub args: &'a [&'a str],
    pub release: &'a str,
    pub variant: crate::Variant,
    pub options: AttachOptions,
    pub send_go: bool,
    pub run_for: std::time::Duration,
}

impl Run<'_> {
    pub fn report(self) -> Result<gotrace::snapshot::Report> {
        let exe = crate::fixtures::build(
            self.fixture,
            crate::Toolchain::find(self.release)?,
            self.variant,
        )?;
        let mut proc = crate::GoProcess::start(&exe, self.args)?;
        let tracing = start(proc.pid(), self.options)?;
        if self.send_go {
            proc.send("go")?;
        }
        std::thread::sleep(self.run_for);
        let (session, reason) = tracing.finish()?;
        Ok(session.snapshot(Some(reason))?.report)
    }
}

/// The report's first finding of `pattern`, or an error listing what was found.
pub fn finding<'r>(
    report: &'r gotrace::snapshot::Report,
    pattern: &str,
) -> Result<&'r gotrace::detect::Finding> {
    report
        .findings
        .iter()
        .find(|f| f.pattern == pattern)
        .ok_or_else(|| anyhow!("no {pattern} finding: {:#?}", report.findings))
}

/// Fails if the report has a finding of any of `patterns`.
pub fn assert_no_finding(report: &gotrace::snapshot::Report, patterns: &[&str]) {
    let found: Vec<_> = report
        .findings
        .iter()
        .filter(|f| patterns.contains(&f.pattern))
        .collect();
    assert!(found.is_empty(), "{found:#?}");
}
