//! A Go release newer than gotrace's offset table, without DWARF: the nearest older release's
//! offsets are used once proven on the running process, and only for what they prove.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result};
use gotrace::{goruntime::OffsetsSource, probes::ProbeSelection, AttachOptions, Session};
use gotrace_tests::{bpf, fixtures, go, trace, GoProcess, Toolchain, Variant};

/// A copy of a stripped fixture whose build info claims another Go release (the runtime
/// itself is untouched: only gotrace's view of the version changes).
fn as_release(release: &str, fake: &str) -> Result<std::path::PathBuf> {
    let tc = Toolchain::find(release)?;
    let exe = fixtures::build("events", tc, Variant::Stripped)?;
    let mut data = std::fs::read(&exe)?;
    let real = format!("go{}", tc.release);
    assert_eq!(real.len(), fake.len());
    let magic = b"\xff Go buildinf:";
    let start = data
        .windows(magic.len())
        .position(|w| w == magic)
        .context("build info")?;
    let at = data[start..]
        .windows(real.len())
        .position(|w| w == real.as_bytes())
        .context("version")?;
    data[start + at..start + at + fake.len()].copy_from_slice(fake.as_bytes());
    let out = exe.with_file_name(format!("events-as-{fake}"));
    write_exe(&out, &data)?;
    Ok(out)
}

fn write_exe(path: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(path, data)?;
    let mut perms = std::fs::metadata(path)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(path, perms)?;
    Ok(())
}

#[test]
fn newer_release_uses_the_proven_part_of_the_nearest_table() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let exe = as_release(go::NEWEST, "go1.28.1")?;
    let mut proc = GoProcess::start(&exe, &["-goroutines", "3"])?;
    let tracing = trace::start(proc.pid(), AttachOptions::default())?;
    std::thread::sleep(Duration::from_millis(300));
    let (session, reason) = tracing.finish()?;
    let report = session.snapshot(Some(reason))?.report;
    match &report.session.offsets_source {
        OffsetsSource::Nearest {
            release,
            for_release,
            verified,
        } => {
            assert_eq!((release.as_str(), for_release.as_str()), ("1.27", "1.28"));
            assert!(verified.len() >= 10, "{verified:?}");
        }
        other => panic!("{other:?}"),
    }
    // What the proven fields give works: the census of goroutines, the goroutine dump.
    assert!(session.model().census_at_start.is_some_and(|c| c.all >= 2));
    let dump = gotrace::dump::take(proc.pid(), false)?;
    assert!(
        dump.goroutines.iter().any(|g| g.goid == 1),
        "{:?}",
        dump.goroutines
    );
    // What needs unproven fields is refused, with the reason.
    let refused = Session::attach(
        proc.pid(),
        AttachOptions {
            probes: ProbeSelection::none().with_goroutine_events(),
            ..AttachOptions::default()
        },
    );
    let msg = refused
        .err()
        .context("probes on unproven offsets must be refused")?
        .to_string();
    assert!(
        msg.contains("cannot prove for Go 1.28") && msg.contains("Go 1.27"),
        "{msg}"
    );
    proc.send("go")?;
    proc.expect_line("done", Duration::from_secs(30))?;
    drop(session);
    lock.assert_nothing_loaded()
}

#[test]
fn nearest_table_that_does_not_fit_is_refused() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    // A Go 1.21 runtime claiming to be 1.20: the nearest table (1.19) puts g.startpc elsewhere.
    let exe = as_release("1.21", "go1.20.13")?;
    let proc = GoProcess::start(&exe, &[])?;
    let err = Session::attach(proc.pid(), AttachOptions::default())
        .err()
        .context("must be refused")?
        .to_string();
    assert!(err.contains("those of Go 1.19 do not fit"), "{err}");
    Ok(())
}
