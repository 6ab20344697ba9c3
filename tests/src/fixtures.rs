//! Building the Go fixture programs of `tests/fixtures/` with a given toolchain and link mode.

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::{bail, Context, Result};

use crate::go::Toolchain;

/// How a fixture is linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// `go build`: symbol table and DWARF.
    Default,
    /// `-ldflags="-s -w"`: no symbol table, no DWARF (what production binaries look like).
    Stripped,
    /// `-buildmode=pie`.
    Pie,
    /// `-buildmode=pie -ldflags="-s -w"`.
    StrippedPie,
}

impl Variant {
    pub const ALL: [Variant; 4] = [
        Variant::Default,
        Variant::Stripped,
        Variant::Pie,
        Variant::StrippedPie,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Default => "default",
            Variant::Stripped => "stripped",
            Variant::Pie => "pie",
            Variant::StrippedPie => "stripped-pie",
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            Variant::Default => &[],
            Variant::Stripped => &["-ldflags=-s -w"],
            Variant::Pie => &["-buildmode=pie"],
            Variant::StrippedPie => &["-buildmode=pie", "-ldflags=-s -w"],
        }
    }
}

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A fresh empty directory for one test's files, named by `tag` and this test process.
pub fn scratch_dir(tag: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("gotrace-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("tests/fixtures")
}

/// Builds fixture `name` (a directory of `tests/fixtures/`) and returns the executable.
/// Rebuilt only when a source is newer than the binary; concurrent builds are safe.
pub fn build(name: &str, toolchain: Toolchain, variant: Variant) -> Result<PathBuf> {
    let src = fixtures_dir().join(name);
    if !src.is_dir() {
        bail!("no fixture {name} in {}", fixtures_dir().display());
    }
    let out_dir = workspace_root()
        .join("target/fixtures")
        .join(format!("go{}", toolchain.release))
        .join(variant.name());
    let out = out_dir.join(name);
    if is_fresh(&out, &src)? {
        return Ok(out);
    }
    toolchain.ensure()?;
    std::fs::create_dir_all(&out_dir)?;
    let tmp = out_dir.join(format!(".{name}.{}", std::process::id()));
    let mut cmd = toolchain.command();
    if uses_cgo(&src)? {
        cmd.env("CGO_ENABLED", "1");
    }
    let output = crate::children::output(
        cmd.current_dir(fixtures_dir())
            .args(["build", "-o"])
            .arg(&tmp)
            .args(variant.flags())
            .arg(format!("./{name}")),
    )
    .with_context(|| format!("running {}", toolchain.go().display()))?;
    if !output.status.success() {
        bail!(
            "building fixture {name} with Go {} ({}) failed:\n{}",
            toolchain.release,
            variant.name(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::rename(&tmp, &out)?;
    Ok(out)
}

/// A fixture with `import "C"` is built with cgo (and needs gcc).
fn uses_cgo(dir: &Path) -> Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "go")
            && std::fs::read_to_string(&path)?.contains("import \"C\"")
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn is_fresh(out: &Path, src: &Path) -> Result<bool> {
    let Ok(built) = std::fs::metadata(out).and_then(|m| m.modified()) else {
        return Ok(false);
    };
    let newest = newest_source(src)?.max(newest_source(&fixtures_dir().join("go.mod"))?);
    Ok(newest <= built)
}

fn newest_source(path: &Path) -> Result<SystemTime> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        return Ok(meta.modified()?);
    }
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(path)? {
        newest = newest.max(newest_source(&entry?.path())?);
    }
    Ok(newest)
}
