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
