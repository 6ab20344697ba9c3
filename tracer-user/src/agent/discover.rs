//! (placeholder until the discovery module lands: a minimal scan with the agreed API)
use std::path::PathBuf;

#[derive(clap::Args, serde::Serialize, Clone, Debug)]
pub struct Selection {
    #[arg(long, default_value_t = 100)]
    pub max_targets: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct TargetKey {
    pub pid: u32,
    pub start_time: u64,
}

impl TargetKey {
    pub fn id(&self) -> String {
        format!("{}-{}", self.pid, self.start_time)
    }
    pub fn parse(id: &str) -> Option<TargetKey> {
        let (p, s) = id.split_once('-')?;
        Some(TargetKey {
            pid: p.parse().ok()?,
            start_time: s.parse().ok()?,
        })
    }
}

#[derive(Clone, Debug, serde::Serialize, PartialEq, Eq)]
pub struct Labels {
    pub service_name: String,
    pub exe: String,
    pub module: Option<String>,
    pub go_version: String,
    pub pid: u32,
    pub host: String,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
}

impl Labels {
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("service_name", self.service_name.clone()),
            ("exe", self.exe.clone()),
        ];
        if let Some(m) = &self.module {
            v.push(("module", m.clone()));
        }
        v.push(("go_version", self.go_version.clone()));
        v.push(("pid", self.pid.to_string()));
        v.push(("host", self.host.clone()));
        v
    }
}

pub struct Candidate {
    pub key: TargetKey,
    pub labels: Labels,
    pub exe: PathBuf,
    pub cgroup: String,
    pub exe_id: (u64, u64),
}

pub struct Discovery {
    selection: Selection,
}

impl Discovery {
    pub fn new(selection: Selection) -> Discovery {
        Discovery { selection }
    }
    pub fn over_limit(&self) -> usize {
        0
    }
    pub fn scan(&mut self) -> Vec<Candidate> {
        use std::os::unix::fs::MetadataExt;
        let mut out = Vec::new();
        for p in procfs::process::all_processes()
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(stat) = p.stat() else { continue };
            let Ok(meta) = std::fs::metadata(format!("/proc/{}/exe", p.pid)) else {
                continue;
            };
            let Ok(bin) = crate::binary::GoBinary::open(
                std::path::Path::new(&format!("/proc/{}/exe", p.pid)),
                "exe",
            ) else {
                continue;
            };
            let exe = p.exe().unwrap_or_default();
            let name = exe
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(Candidate {
                key: TargetKey {
                    pid: p.pid as u32,
                    start_time: stat.starttime,
                },
                labels: Labels {
                    service_name: name.clone(),
                    exe: name,
                    module: bin.buildinfo.path.clone(),
                    go_version: bin.buildinfo.version_string.clone(),
                    pid: p.pid as u32,
                    host: "localhost".into(),
                    container_id: None,
                    pod_uid: None,
                },
                exe,
                cgroup: String::new(),
                exe_id: (meta.dev(), meta.ino()),
            });
            if out.len() >= self.selection.max_targets {
                break;
            }
        }
        out
    }
}
