//! The files a session leaves in its output directory besides report.json: Go's heap profile
//! as pprof (`heap.pb.gz`), in-use and allocated flamegraphs and their folded stacks.

use std::path::{Path, PathBuf};

use super::{
    flamegraph::{self, HeapValue},
    pprof::{self, proto, Executable, Mapping},
};
use crate::{error::Result, session::Session, symbols::Symbolizer};

pub const GOROUTINE_FILE: &str = "goroutine.pb.gz";
pub const HEAP_INUSE_SVG: &str = "heap-inuse.svg";
pub const HEAP_ALLOC_SVG: &str = "heap-alloc.svg";
pub const HEAP_INUSE_FOLDED: &str = "heap-inuse.folded";
pub const HEAP_ALLOC_FOLDED: &str = "heap-alloc.folded";

/// Runs `build` with the traced executable described for pprof (symbols, mapping).
fn with_executable<T>(session: &Session, build: impl FnOnce(&Executable<'_>) -> T) -> T {
    let binary = &session.target.binary;
    let symbolizer = Symbolizer::new(binary);
    let symbolize = |pc: u64| symbolizer.frames(pc);
    let bias = session.target.load_bias;
    build(&Executable {
        symbolize: &symbolize,
        load_bias: bias,
        mapping: Mapping::main_executable(binary, bias),
    })
}

/// The session's latest heap profile in pprof form (`None` when there is none).
pub fn heap_pprof(session: &Session) -> Result<Option<proto::Profile>> {
    let Some(heap) = &session.heap else {
        return Ok(None);
    };
    with_executable(session, |exe| pprof::heap_profile(heap, exe)).map(Some)
}

/// Writes the heap files into `dir`; returns the names written.
pub fn write_heap(session: &Session, dir: &Path) -> Result<Vec<&'static str>> {
    let Some(profile) = heap_pprof(session)? else {
        return Ok(Vec::new());
    };
    pprof::write(&profile, &dir.join(pprof::HEAP_FILE))?;
    let subtitle = subtitle(session);
    for (value, svg, folded) in [
        (HeapValue::InuseBytes, HEAP_INUSE_SVG, HEAP_INUSE_FOLDED),
        (HeapValue::AllocBytes, HEAP_ALLOC_SVG, HEAP_ALLOC_FOLDED),
    ] {
        flamegraph::write_heap_svg(&dir.join(svg), &profile, value, Some(&subtitle))?;
        let text = flamegraph::folded(&profile, value.sample_type())?;
        flamegraph::replace_file(&dir.join(folded), |w| w.write_all(text.as_bytes()))?;
    }
    Ok(vec![
        pprof::HEAP_FILE,
        HEAP_INUSE_SVG,
        HEAP_ALLOC_SVG,
        HEAP_INUSE_FOLDED,
        HEAP_ALLOC_FOLDED,
    ])
}

/// Go's goroutine profile (`goroutine/count` per stack) of the goroutines at the end of the
/// session, into `dir`. Returns the file name if written.
pub fn write_goroutines(session: &Session, dir: &Path) -> Result<Option<&'static str>> {
    let Some(stacks) = &session.goroutine_stacks else {
        return Ok(None);
    };
    let profile = with_executable(session, |exe| -> Result<proto::Profile> {
        let count = pprof::ValueType::new("goroutine", "count");
        let mut b = pprof::ProfileBuilder::new(exe, &[count]);
        b.period(count, 1)
            .time(session.started_wall, session.started.elapsed());
        for (stack, n) in stacks {
            b.add_go_stack(stack, false, &[i64::try_from(*n).unwrap_or(i64::MAX)], &[])?;
        }
        Ok(b.finish())
    })?;
    pprof::write(&profile, &dir.join(GOROUTINE_FILE))?;
    Ok(Some(GOROUTINE_FILE))
}

/// Rewrites a live in-use flamegraph (atomically: a viewer never sees half a file).
pub fn write_live_flamegraph(session: &Session, path: &Path) -> Result<bool> {
    let Some(profile) = heap_pprof(session)? else {
        return Ok(false);
    };
    flamegraph::write_heap_svg(
        path,
        &profile,
        HeapValue::InuseBytes,
        Some(&subtitle(session)),
    )?;
    Ok(true)
}

fn subtitle(session: &Session) -> String {
    let rate = session.heap.as_ref().map_or(0, |h| h.sample_rate);
    format!(
        "pid {} ({}), {:.0} s after attach, sampled every {} KiB",
        session.target.pid,
        session.target.binary.buildinfo.version_string,
        session.started.elapsed().as_secs_f64(),
        rate / 1024
    )
}

/// `gotrace-<pid>-<time>`: the default output directory.
pub fn default_dir(pid: u32) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
        .trim_end_matches('Z')
        .to_string();
    PathBuf::from(format!("gotrace-{pid}-{stamp}"))
}
