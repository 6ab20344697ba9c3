//! Builds gotrace's eBPF object from `tracer-ebpf/` so that `cargo build` works on a fresh machine
//! with only stable Rust: it adds `rust-src` if missing, installs a `bpf-linker` built against
//! this toolchain's own LLVM into `~/.cache/gotrace` (once, ~1-2 min), then builds the BPF crate
//! with `RUSTC_BOOTSTRAP=1 -Z build-std=core`. The object is embedded by `probes::object`.

use std::{env, path::PathBuf, process::Command};

/// bpf-linker 0.13 links with LLVM 20-22 through a feature per version; it must use the same
/// LLVM major as rustc, or bitcode from rustc will not load.
const BPF_LINKER_VERSION: &str = "0.13.0";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    compile_protos(&root);
    build_page(&manifest_dir.join("web"));
    let ebpf_dir = root.join("tracer-ebpf");
    for p in [
        "tracer-ebpf/src",
        "tracer-ebpf/Cargo.toml",
        "tracer-ebpf/Cargo.lock",
        "tracer-ebpf/.cargo/config.toml",
        "tracer-common/src",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=GOTRACE_BPF_LINKER");

    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let toolchain = Toolchain::of(&rustc);
    toolchain.ensure_rust_src();
    let linker = env::var_os("GOTRACE_BPF_LINKER")
        .map(PathBuf::from)
        .unwrap_or_else(|| toolchain.bpf_linker());

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("bpf");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&ebpf_dir)
        .args(["build", "--release", "--target", "bpfel-unknown-none"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER", &linker)
        .env("RUSTC", &rustc);
    // What the outer build sets for host code must not leak into the BPF build (clippy, for one,
    // installs itself as a workspace wrapper).
    for var in [
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    run(&mut cmd, "building the eBPF programs (tracer-ebpf)");

    let built = target_dir.join("bpfel-unknown-none/release/tracer-ebpf");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("tracer-ebpf.o");
    std::fs::copy(&built, &out)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), out.display()));
    println!("cargo:rustc-env=GOTRACE_EBPF_OBJECT={}", out.display());
}

/// Generates the Rust types of the schemas in `proto/` into `OUT_DIR`, one file per package:
/// the pprof profile format, and Pyroscope's push API (with the label type it imports).
/// protox parses the schema in Rust, so no system `protoc` is needed.
fn compile_protos(root: &std::path::Path) {
    let dir = root.join("proto");
    println!("cargo:rerun-if-changed={}", dir.display());
    let files = ["profile.proto", "push/v1/push.proto"];
    let fds = protox::compile(files, [&dir])
        .unwrap_or_else(|e| panic!("parsing {files:?} in {}: {e}", dir.display()));
    prost_build::Config::new()
        // The pusher's queued profiles go into each attempt's request shared, not copied.
        .bytes([".push.v1.RawSample.raw_profile"])
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("generating Rust code for {files:?}: {e}"));
}

/// Builds the web page (`web/`, see `export/page.rs`) into `OUT_DIR/page.html`: the npm packages
/// of the lockfile installed into `web/node_modules` when it is missing or older than the
/// lockfile, then `web/build.mjs` (esbuild) bundles and inlines everything into one file.
fn build_page(web: &std::path::Path) {
    for p in ["src", "package.json", "package-lock.json", "build.mjs"] {
        println!("cargo:rerun-if-changed={}", web.join(p).display());
    }
    // One cargo run may build this crate twice at once (the library for tests, the binary):
    // one installation at a time, and no bundling from a node_modules being replaced. The lock
    // goes with the file when this function returns.
    let lock_path = web.join(".build.lock");
    let lock = std::fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", lock_path.display()));
    let npm = |args: &[&str]| {
        let mut cmd = Command::new("npm");
        cmd.current_dir(web).args(args);
        cmd
    };
    let have_npm = || {
        npm(&["--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    // `cargo xtask` builds this crate before its own set-up could install anything, so a fresh
    // machine gets Node.js here, as it gets rust-src and bpf-linker below.
    if !have_npm() && is_root() && Command::new("apt-get").arg("--version").output().is_ok() {
        println!("cargo:warning=installing Node.js and npm (apt-get install nodejs npm) to build the web page");
        let install = || {
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args([
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    "nodejs",
                    "npm",
                ])
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install() {
            // The package lists of a fresh machine may be missing or stale.
            let _ = Command::new("apt-get").args(["update", "-q"]).status();
            install();
        }
    }
    if !have_npm() {
        panic!(
            "building gotrace's web page needs Node.js and npm, which were not found: \
             install them (`apt install nodejs npm`) or run `cargo xtask setup` as root"
        );
    }
    let mtime = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    // npm writes node_modules/.package-lock.json at each install: its age is the install's.
    let installed = mtime(&web.join("node_modules/.package-lock.json"));
    let locked = mtime(&web.join("package-lock.json"));
    if installed.is_none() || installed < locked {
        run(
            &mut npm(&["ci", "--prefer-offline", "--no-audit", "--no-fund"]),
            "installing the web page's npm packages (npm ci in tracer-user/web)",
        );
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("page.html");
    let mut build = Command::new("node");
    build.current_dir(web).arg("build.mjs").arg(&out);
    run(
        &mut build,
        "building the web page (node build.mjs in tracer-user/web)",
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().nth(1))
            == Some("0")
    })
}

struct Toolchain {
    sysroot: PathBuf,
    /// e.g. "1.95.0": the libLLVM file name carries it.
    release: String,
    llvm_major: String,
}

impl Toolchain {
    fn of(rustc: &str) -> Self {
        let sysroot = PathBuf::from(output(Command::new(rustc).args(["--print", "sysroot"])));
        let vv = output(Command::new(rustc).arg("-vV"));
        let field = |name: &str| {
            vv.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("`rustc -vV` has no `{name}` line:\n{vv}"))
        };
        let release = field("release:");
        let llvm_major = field("LLVM version:")
            .split('.')
            .next()
            .unwrap()
            .to_string();
        Toolchain {
            sysroot,
            release,
            llvm_major,
        }
    }

    fn ensure_rust_src(&self) {
        let core = self.sysroot.join("lib/rustlib/src/rust/library/core");
        if !core.exists() {
            println!("cargo:warning=installing rust-src (needed to build `core` for BPF)");
            run(
                Command::new("rustup").args(["component", "add", "rust-src"]),
                "rustup component add rust-src",
            );
        }
    }

    /// Returns a bpf-linker linked against this toolchain's libLLVM, installing it if needed.
    fn bpf_linker(&self) -> PathBuf {
        let home = env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        let cache = env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".cache"))
            .join("gotrace/bpf-linker")
            .join(format!("{BPF_LINKER_VERSION}-rust-{}", self.release));
        let bin = cache.join("bin/bpf-linker");
        if bin.exists() {
            return bin;
        }
        println!(
            "cargo:warning=installing bpf-linker {BPF_LINKER_VERSION} for LLVM {} into {} (once, 1-2 min)",
            self.llvm_major,
            cache.display()
        );
        // llvm-sys wants `<prefix>/lib/libLLVM.so`; rustup ships only the versioned file, so
        // give it a prefix of symlinks. The linker's RUNPATH points here, so the prefix stays.
        let lib = self.sysroot.join("lib");
        let libllvm = std::fs::read_dir(&lib)
            .unwrap_or_else(|e| panic!("reading {}: {e}", lib.display()))
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libLLVM.so."))
            })
            .unwrap_or_else(|| panic!("no libLLVM.so.* in {}", lib.display()));
        let prefix = cache.join("llvm");
        let prefix_lib = prefix.join("lib");
        std::fs::create_dir_all(&prefix_lib).unwrap();
        for name in [
            "libLLVM.so".into(),
            libllvm.file_name().unwrap().to_os_string(),
        ] {
            let link = prefix_lib.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&libllvm, &link).unwrap();
        }
        let staging = cache.with_extension("partial");
        let _ = std::fs::remove_dir_all(&staging);
        let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(
            Command::new(cargo)
                .args(["install", "--locked", "--no-default-features"])
                .arg(format!("bpf-linker@{BPF_LINKER_VERSION}"))
                .arg("--features")
                .arg(format!("llvm-{}", self.llvm_major))
                .arg("--root")
                .arg(&staging)
                .env("LLVM_PREFIX", &prefix)
                .env_remove("RUSTC_WORKSPACE_WRAPPER")
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("CARGO_TARGET_DIR"),
            "cargo install bpf-linker",
        );
        std::fs::create_dir_all(cache.join("bin")).unwrap();
        std::fs::rename(staging.join("bin/bpf-linker"), &bin).unwrap();
        let _ = std::fs::remove_dir_all(&staging);
        bin
    }
}

fn output(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        status.success(),
        "{what} failed ({status}); command: {cmd:?}"
    );
}
