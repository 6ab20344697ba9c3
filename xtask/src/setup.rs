//! `cargo xtask setup`: toolchains and packages, each installed only if missing.

use anyhow::Result;
use gotrace_tests::go::{self, MATRIX};

/// Debian packages the test suite uses: gcc for the cgo fixtures, util-linux for `setpriv`
/// and `unshare` (the privilege and kernel-feature tests), curl and a real Prometheus (the
/// agent's HTTP endpoints and their scrape), systemd-analyze (the agent's unit).
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("gcc", "gcc"),
    ("setpriv", "util-linux"),
    ("unshare", "util-linux"),
    ("curl", "curl"),
    ("prometheus", "prometheus"),
    ("systemd-analyze", "systemd"),
    // gotrace's web page is built with npm (tracer-user/build.rs) ...
    ("node", "nodejs"),
    ("npm", "npm"),
    // ... and tested in a real browser over WebDriver (tests/src/browser.rs).
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
];

pub fn run() -> Result<()> {
    debian_packages()?;
    for tc in MATRIX {
        if !tc.is_installed() {
            tc.ensure()?;
        }
        println!("Go {:<8} {}", tc.release, tc.go().display());
    }
    Ok(())
}

/// The Debian packages of the commands the build and the tests run, installed if missing.
pub fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(cmd, _)| which(cmd).is_none())
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        go::install_debian(&missing)?;
    }
    Ok(())
}

pub fn which(cmd: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(cmd))
            .find(|p| p.is_file())
    })
}
