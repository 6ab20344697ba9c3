//! Test kit for gotrace's integration tests: Go toolchains, fixture builds, fixture processes,
//! background tracing sessions, kernel hygiene checks, an HTTP receiver for pushes, a headless browser (`browser`) and the accounting of every child
//! process a test starts (`children`). The tests live in `tests/it/`.

pub mod agent;
pub mod bpf;
pub mod browser;
pub mod children;
pub mod fixtures;
pub mod go;
pub mod process;
pub mod receiver;
pub mod trace;

pub use fixtures::Variant;
pub use go::Toolchain;
pub use process::GoProcess;

/// The `gotrace` executable for CLI-level tests: `$GOTRACE_BIN`, else the workspace's debug
/// build (built here if missing).
pub fn gotrace_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("GOTRACE_BIN") {
        return p.into();
    }
    let bin = fixtures::workspace_root().join("target/debug/gotrace");
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let mut cargo = std::process::Command::new(env!("CARGO"));
        cargo
            .args(["build", "-q", "-p", "gotrace", "--bin", "gotrace"])
            .current_dir(fixtures::workspace_root());
        // What cargo set for this test binary is no setting of the build: left in, it makes
        // the build scripts that watch these names (ring's does) dirty, and every build from
        // here and from the shell then rebuilds gotrace.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || ["CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE", "OUT_DIR"].contains(&&*name)
            {
                cargo.env_remove(&*name);
            }
        }
        let status = children::status(&mut cargo).expect("running cargo build");
        assert!(status.success(), "building gotrace failed");
    });
    bin
}
