//! The library's error type. Every variant renders as one line that names the problem and, where
//! there is one, the fix: the CLI prints it as is.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no process with pid {pid} (it may have exited; check the pid with `ps -p {pid}`)")]
    NoSuchProcess { pid: u32 },

    #[error("process {pid} has exec'd another program since gotrace attached: nothing more was read from or written into it (attach again to trace the new program)")]
    Replaced { pid: u32 },

    #[error("process {pid} is a zombie or a kernel thread: it has no executable to trace")]
    NoExecutable { pid: u32 },

    #[error(
        "cannot read {what} of process {pid}: {source} (run gotrace as root: `sudo gotrace ...`)"
    )]
    ProcAccess {
        pid: u32,
        what: &'static str,
        source: std::io::Error,
    },

    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "{path} is not a Go program ({reason}); gotrace traces binaries built by the Go toolchain"
    )]
    NotGo { path: String, reason: String },

    #[error("{path}: {reason}")]
    BadBinary { path: String, reason: String },

    #[error("{path} was built with {version}, which gotrace does not support: {reason}")]
    UnsupportedGoVersion {
        path: String,
        version: String,
        reason: String,
    },

    #[error("{path}: cannot place the {probe} probe: {reason}")]
    ProbePlacement {
        path: String,
        probe: &'static str,
        reason: String,
    },

    #[error("missing privileges: uid {uid} lacks {missing}; run as root (`sudo gotrace ...`) or grant the capabilities: `sudo setcap {grant}+ep {exe}`")]
    Privileges {
        uid: u32,
        missing: String,
        grant: &'static str,
        exe: String,
    },

    #[error("this kernel cannot place uprobes ({detail}); gotrace needs Linux 5.8+ with CONFIG_UPROBE_EVENTS=y and BPF ring buffers")]
    NoUprobeSupport { detail: String },

    #[error(
        "loading the eBPF programs failed: {0} (is the kernel 5.8+ with BTF, and are you root?)"
    )]
    Load(String),

    #[error("attaching the {probe} probe to process {pid} failed: {reason}")]
    Attach {
        probe: &'static str,
        pid: u32,
        reason: String,
    },

    #[error("reading memory of process {pid} at {addr:#x} failed: {source}")]
    Memory {
        pid: u32,
        addr: u64,
        source: std::io::Error,
    },

    #[error("writing {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot write to {path}: {problem}")]
    OutputPath { path: PathBuf, problem: String },

    #[error("{error}; gotrace wrote its files to {to} instead")]
    OutputMoved { error: Box<Error>, to: PathBuf },

    #[error(
        "{path} is {kind}, not an executable file: give the path of a Go program, or a process id"
    )]
    NotAFile { path: PathBuf, kind: &'static str },

    /// A credential for pushing to Pyroscope that cannot be used; the text names its file or
    /// environment variable.
    #[error("push credentials: {0}")]
    PushCredentials(String),

    #[error("cannot export the profile: {0}")]
    Export(String),

    #[error("agent configuration: {0}")]
    Config(String),

    #[error("{0}")]
    Other(String),
}
