//! The agent's settings: flags, each defined once (clap), and a TOML file whose keys are the
//! same flags — `interval = "30s"` is `--interval 30s`, `[push] url = "…"` is `--push-url …` —
//! so the file, `--help` and `--print-config` cannot disagree. Flags given on the command line
//! override the file.

use std::{
    ffi::OsString,
    net::SocketAddr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Serialize, Serializer};

use super::{
    discover::Selection, history::HistoryConfig, pressure::PressureConfig, push::PushConfig,
};
use crate::{
    error::{Error, Result},
    units::{parse_duration, parse_size},
};

/// Where the agent looks for its file when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/gotrace/agent.toml";

#[derive(clap::Args, Serialize, Clone, Debug)]
pub struct AgentConfig {
    /// Address of the HTTP server (/targets, the pprof endpoints, /metrics). Loopback unless
    /// another address is given here.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// A file holding a token every HTTP request must present (`Authorization: Bearer …`);
    /// /healthz excepted.
    #[arg(long, value_name = "FILE")]
    pub listen_token_file: Option<PathBuf>,
    /// How often each target's profiles, findings and GC series go to the history and to
    /// Pyroscope.
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration")]
    pub interval: Duration,
    /// How often /proc is scanned for Go processes started or gone.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration")]
    pub scan_interval: Duration,
    /// The CPU the agent spends reading its targets, in percent of one core, all targets
    /// together: looks are spaced out to stay within it.
    #[arg(long, value_name = "PERCENT", default_value_t = 1.0, value_parser = parse_percent)]
    pub cpu_budget: f64,
    /// The shortest time between two looks at one target (the detectors' resolution).
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration")]
    pub look_interval: Duration,
    /// `runtime.MemProfileRate` set in a target whose sampler is off (Go's default 512 KiB;
    /// restored when the target is dropped or the agent stops).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub sample_rate: Option<u64>,
    /// Never write into a target: heap profiles only from programs that already sample.
    #[arg(long)]
    pub read_only: bool,
    #[command(flatten)]
    #[serde(flatten)]
    pub selection: Selection,
    #[command(flatten)]
    #[serde(flatten)]
    pub history: HistoryConfig,
    #[command(flatten)]
    pub push: PushConfig,
    #[command(flatten)]
    pub pressure: PressureConfig,
}

fn duration<S: Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

fn parse_percent(s: &str) -> std::result::Result<f64, String> {
    match s.trim().trim_end_matches('%').parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!("{s:?} is not a percentage in (0, 100]")),
    }
}

impl AgentConfig {
    /// The settings in force as the TOML file that would give them.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot show the settings: {e}\n"))
    }
}

/// The config file as command-line arguments, to be parsed before the real ones. `known` are
/// the long flags the agent takes: a key that is none of them is an error naming it.
/// `None` when `explicit` is not given and the default file does not exist.
pub fn file_args(explicit: Option<&Path>, known: &[String]) -> Result<Option<Vec<OsString>>> {
    let path = explicit.unwrap_or(Path::new(DEFAULT_CONFIG));
    let text = match read_trusted(path) {
        Ok(t) => t,
        Err(e) if explicit.is_none() && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(e) => return Err(Error::Config(format!("{}: {e}", path.display()))),
    };
    toml_args(&text, known)
        .map(Some)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// Reads a file that decides what gotrace does as root: it must belong to root (or to the
/// user running gotrace) and be writable by nobody else, as sshd and sudo require of theirs.
fn read_trusted(path: &Path) -> std::io::Result<String> {
    use std::io::{Error as IoError, ErrorKind, Read};
    let mut f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_file() {
        return Err(IoError::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    if meta.uid() != 0 && meta.uid() != me {
        return Err(IoError::new(
            ErrorKind::PermissionDenied,
            format!(
                "belongs to uid {}, not to root: chown root {}",
                meta.uid(),
                path.display()
            ),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(IoError::new(
            ErrorKind::PermissionDenied,
            format!("is writable by others: chmod go-w {}", path.display()),
        ));
    }
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    Ok(text)
}

fn toml_args(text: &str, known: &[String]) -> std::result::Result<Vec<OsString>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        e.to_string().lines().next().unwrap_or_default().to_string()
    })?;
    let mut args = Vec::new();
    for (key, value) in &table {
        match value {
            toml::Value::Table(section) => {
                for (k, v) in section {
                    push_setting(&mut args, &format!("{key}-{k}"), v, known)?;
                }
            }
            v => push_setting(&mut args, key, v, known)?,
        }
    }
    Ok(args)
}

fn push_setting(
    args: &mut Vec<OsString>,
    key: &str,
    value: &toml::Value,
    known: &[String],
) -> std::result::Result<(), String> {
    let flag = key.replace('_', "-");
    if !known.iter().any(|k| *k == flag) || flag == "config" {
        return Err(format!(
            "unknown setting `{key}` (the settings are the long flags of `gotrace agent --help`)"
        ));
    }
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        other => Err(format!(
            "`{key}`: {} is not a value for it",
            other.type_str()
        )),
    };
    match value {
        toml::Value::Boolean(true) => args.push(format!("--{flag}").into()),
        toml::Value::Boolean(false) => {}
        toml::Value::Array(items) => {
            for item in items {
                args.push(format!("--{flag}={}", scalar(item)?).into());
            }
        }
        v => args.push(format!("--{flag}={}", scalar(v)?).into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        ["interval", "push-url", "include", "read-only"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn keys_become_flags() {
        let args = toml_args(
            "interval = \"30s\"\nread_only = true\ninclude = [\"api*\", \"worker\"]\n[push]\nurl = \"http://p:4040\"\n",
            &known(),
        )
        .unwrap();
        let args: Vec<String> = args.into_iter().map(|a| a.into_string().unwrap()).collect();
        assert_eq!(
            args,
            [
                "--include=api*",
                "--include=worker",
                "--interval=30s",
                "--push-url=http://p:4040",
                "--read-only"
            ]
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = toml_args("intervl = \"30s\"\n", &known()).unwrap_err();
        assert!(e.contains("`intervl`"), "{e}");
        let e = toml_args("interval = {a = 1}\n[push]\nurl = [[1]]\n", &known()).unwrap_err();
        assert!(e.contains("not a value") || e.contains("unknown"), "{e}");
        assert!(toml_args("interval = \n", &known()).is_err());
    }
}
