//! `gotrace check`: the CI gate. After a traced run (of a smoke test, a `go test` binary, a
//! staging service), decide pass or fail from the findings and thresholds, with a reason a
//! person can act on.

use serde::Serialize;

use crate::{snapshot::Report, units::human_bytes};

/// What makes a run fail.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    /// Patterns that fail the run when found (`goroutine-leak`, `heap-growth`, ...); `None`
    /// means every pattern.
    pub fail_on: Option<Vec<String>>,
    /// Most bytes of heap in use (as the runtime counts it, `HeapInuse`) allowed at any look.
    pub max_inuse: Option<u64>,
    /// Most goroutines (as `runtime.NumGoroutine` counts them) allowed at any look.
    pub max_goroutines: Option<u64>,
}

/// The gate's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub passed: bool,
    /// One line per reason to fail.
    pub reasons: Vec<String>,
}

impl Gate {
    /// Judges a finished session's report, given the peaks the session saw.
    pub fn judge(
        &self,
        report: &Report,
        peak_inuse: Option<u64>,
        peak_goroutines: Option<u64>,
    ) -> Verdict {
        let mut reasons = Vec::new();
        for f in &report.findings {
            let listed = match &self.fail_on {
                None => true,
                Some(list) => list.iter().any(|p| p == f.pattern),
            };
            if listed {
                reasons.push(format!("{} at {}: {}", f.pattern, f.site, f.hint));
            }
        }
        if let (Some(max), Some(peak)) = (self.max_inuse, peak_inuse) {
            if peak > max {
                reasons.push(format!(
                    "heap in use reached {} (limit {})",
                    human_bytes(peak),
                    human_bytes(max)
                ));
            }
        }
        if let (Some(max), Some(peak)) = (self.max_goroutines, peak_goroutines) {
            if peak > max {
                reasons.push(format!("{peak} goroutines at the peak (limit {max})"));
            }
        }
        Verdict {
            passed: reasons.is_empty(),
            reasons,
        }
    }
}

/// Waits until process `pid` runs a Go program whose runtime has started (its main goroutine
/// exists), for a command gotrace has just started itself. Attaching earlier would race with
/// the runtime's own start-up (which, for one, resets `MemProfileRate`).
pub fn wait_for_go_runtime(pid: u32, timeout: std::time::Duration) -> crate::Result<()> {
    use crate::{
        goruntime::{allgs::AllGs, Runtime},
        target::Target,
    };
    let deadline = std::time::Instant::now() + timeout;
    let mut last = None;
    while std::time::Instant::now() < deadline {
        let ready = Target::open(pid).and_then(|t| {
            let rt = Runtime::for_process(&t)?;
            let gs = AllGs::new(&t, &rt)
                .ok_or_else(|| crate::Error::Other("runtime.allgs not found".into()))?;
            Ok(gs.snapshot(&t)?.iter().any(|g| g.is_live()))
        });
        match ready {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e @ crate::Error::NoSuchProcess { .. }) => return Err(e),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Err(last.unwrap_or_else(|| {
        crate::Error::Other(format!(
            "process {pid} did not start a Go runtime within {timeout:?}"
        ))
    }))
}
