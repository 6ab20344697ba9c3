//! Proving a nearest-release offset table against a running process. For a Go release newer
//! than gotrace's table (and a binary without DWARF), the newest older release's `g` layout is
//! tried on the live goroutines: every goroutine must have a distinct id, a valid state, a
//! start PC that is exactly a function's entry, a `go` statement inside a function, a stack
//! whose bounds make sense, and the main goroutine must be goid 1 running `runtime.main`.
//! Wrong offsets read unrelated words and fail these at once. Only fields proven this way are
//! used; the probes and readers that need others are refused.

use std::collections::HashSet;

use super::{allgs::AllGs, traceback::Tracebacks, Field, OffsetsSource, Runtime};
use crate::{
    error::{Error, Result},
    target::Target,
};

/// The `g` fields the checks below prove.
const G_FIELDS: [Field; 12] = [
    Field::GGoid,
    Field::GAtomicstatus,
    Field::GStartpc,
    Field::GGopc,
    Field::GStack,
    Field::StackHi,
    Field::GSched,
    Field::GobufSp,
    Field::GobufPc,
    Field::GobufBp,
    Field::GWaitreason,
    Field::GWaitsince,
];

/// Checks the nearest-release offsets of `runtime` against `target`'s goroutines and marks
/// the proven fields. An error says which check failed.
pub fn verify(target: &Target, runtime: &mut Runtime) -> Result<()> {
    let OffsetsSource::Nearest {
        release,
        for_release,
        ..
    } = runtime.offsets.source.clone()
    else {
        return Ok(());
    };
    let fail = |what: &str| {
        Error::UnsupportedGoVersion {
        path: target.binary.path.clone(),
        version: target.binary.buildinfo.version_string.clone(),
        reason: format!(
            "gotrace has no struct offsets for Go {for_release} and those of Go {release} do not fit \
             this program ({what}); rebuild without `-ldflags=-w` so gotrace can read DWARF"
        ),
    }
    };
    let mut trial = runtime.clone();
    trial.offsets.mark_verified(&G_FIELDS);
    let allgs = AllGs::new(target, &trial).ok_or_else(|| fail("runtime.allgs not found"))?;
    let gs = allgs
        .snapshot(target)
        .map_err(|_| fail("allgs unreadable"))?;
    let live: Vec<_> = gs.iter().filter(|g| g.is_live()).collect();
    if live.len() < 2 {
        return Err(fail("fewer than two live goroutines"));
    }
    let pcln = target.binary.pclntab();
    let tb = Tracebacks::new(target, &trial);
    let mut goids = HashSet::new();
    for g in &live {
        let entry = pcln.func_for_pc(g.startpc).map(|f| f.entry);
        let size = g.stack_hi.wrapping_sub(g.stack_lo);
        let checks = [
            (g.status <= 10, "goroutine states out of range"),
            (goids.insert(g.goid), "goroutine ids repeat"),
            (
                entry == Some(g.startpc),
                "goroutine start PCs are not function entries",
            ),
            (
                g.goid == 1 || pcln.func_for_pc(g.gopc.saturating_sub(1)).is_some(),
                "goroutine creation PCs are not in functions",
            ),
            (
                size >= 2048 && size.is_power_of_two(),
                "goroutine stack bounds are not stacks",
            ),
            (
                g.status != 4
                    || (g.sched_sp >= g.stack_lo && g.sched_sp < g.stack_hi)
                        && pcln
                            .func_for_pc(g.sched_pc.wrapping_sub(target.load_bias))
                            .is_some(),
                "saved stack pointers or PCs of waiting goroutines are off",
            ),
            (
                g.status != 4 || tb.wait_reason(target, g.waitreason).is_some(),
                "wait reasons are not the runtime's",
            ),
        ];
        if let Some((_, what)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(fail(what));
        }
    }
    let main = live
        .iter()
        .find(|g| g.goid == 1)
        .ok_or_else(|| fail("no goroutine 1"))?;
    let main_fn = pcln.func_for_pc(main.startpc).map(|f| f.name);
    if main_fn.as_deref() != Some("runtime.main") {
        return Err(fail("goroutine 1 does not run runtime.main"));
    }
    runtime.offsets.mark_verified(&G_FIELDS);
    log::debug!(
        "offsets of Go {release} verified for Go {for_release} on {} goroutines",
        live.len()
    );
    Ok(())
}
