//! Before the OOM killer: says when a target's memory nears its cgroup's limit, a configured
//! RSS, or when its cgroup is under memory pressure (PSI), so that the agent takes a full
//! snapshot while there is still a process to take it of.
//!
//! The memory cgroup is found once, when the target is first seen: cgroup v1
//! (`memory.limit_in_bytes`, `memory.usage_in_bytes`; some hosts mount the v1 memory
//! controller beside an empty v2 hierarchy) or v2 (`memory.max`, `memory.current`,
//! `memory.pressure`). The limit that kills is the smallest of the target's cgroup and its
//! ancestors' (a container's processes sit in a sub-cgroup of the limited one), so that
//! cgroup's use is what is watched. Use is counted as the kernel's OOM decision sees it: the
//! charged bytes less the inactive page cache, which the kernel reclaims first (the "working
//! set" of `kubectl top` and `docker stats`), so a program that merely reads files is not
//! taken for one about to be killed.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::units::{human_bytes, parse_percent, parse_size, serialize_opt_size};

/// The memory-pressure trigger's flags (TOML section `[pressure]`).
#[derive(clap::Args, Serialize, Clone, Debug)]
#[command(next_help_heading = "Memory pressure")]
pub struct PressureConfig {
    /// Snapshot a target when its cgroup's memory use reaches this fraction of the cgroup's
    /// limit (0 < F <= 1).
    #[arg(long, value_name = "F", default_value = "0.9", value_parser = parse_fraction)]
    #[serde(rename = "limit_fraction")]
    pub pressure_limit_fraction: f64,

    /// Snapshot a target when its resident memory (RSS) reaches this size (e.g. 2GiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    #[serde(
        rename = "rss",
        serialize_with = "serialize_opt_size",
        skip_serializing_if = "Option::is_none"
    )]
    pub pressure_rss: Option<u64>,

    /// Snapshot a target when its cgroup's memory pressure ("some avg10" of PSI, the share of
    /// the last 10 s some of its tasks stalled on memory) reaches this percentage, where the
    /// kernel provides PSI.
    #[arg(long, value_name = "PCT", default_value = "50", value_parser = parse_percent)]
    #[serde(rename = "psi")]
    pub pressure_psi: f64,
}

crate::detect::config_defaults!(PressureConfig);

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(format!(
            "{s:?} is not a fraction above 0 and at most 1 (e.g. 0.9)"
        )),
    }
}

/// v1 reports "no limit" as the largest page-aligned counter (2^63 less a page); anything
/// this large is no limit a machine has.
const UNLIMITED: u64 = 1 << 60;

/// The cgroup whose limit applies to the target.
#[derive(Debug)]
struct Limited {
    /// As the kernel names it (`/docker/ab12...`), for the reason.
    name: String,
    dir: PathBuf,
    v2: bool,
}

impl Limited {
    fn limit(&self) -> Option<u64> {
        read_limit(&self.dir, self.v2)
    }

    /// Charged bytes less the inactive page cache.
    fn usage(&self) -> Option<u64> {
        let (current, inactive) = if self.v2 {
            ("memory.current", "inactive_file")
        } else {
            // The hierarchical count: the cgroup's descendants are charged to it too.
            ("memory.usage_in_bytes", "total_inactive_file")
        };
        let charged = read_u64(&self.dir.join(current))?;
        let stat = std::fs::read_to_string(self.dir.join("memory.stat")).ok()?;
        let cache = stat
            .lines()
            .find_map(|l| l.strip_prefix(inactive)?.trim().parse::<u64>().ok())
            .unwrap_or(0);
        Some(charged.saturating_sub(cache))
    }
}

/// Watches one target's memory.
#[derive(Debug)]
pub struct PressureWatch {
    pid: u32,
    config: PressureConfig,
    limited: Option<Limited>,
    /// The `memory.pressure` of the target's own cgroup, where the kernel has PSI.
    psi: Option<(String, PathBuf)>,
    /// Per condition (limit, RSS, PSI): crossed at the last check, so not told again until
    /// it falls back below.
    crossed: [bool; 3],
}

impl PressureWatch {
    /// Finds the target's memory cgroup (once).
    pub fn new(config: &PressureConfig, pid: u32) -> PressureWatch {
        let cgroup = memory_cgroup(pid);
        let psi = cgroup.as_ref().and_then(|(name, dir, _, _)| {
            let file = dir.join("memory.pressure");
            file.exists().then(|| (name.clone(), file))
        });
        PressureWatch {
            pid,
            config: config.clone(),
            limited: cgroup.and_then(|(name, dir, mount, v2)| limited(&name, &dir, &mount, v2)),
            psi,
            crossed: [false; 3],
        }
    }

    /// The cgroup whose limit is watched (as the kernel names it) and that limit, if any.
    pub fn limit(&self) -> Option<(&str, u64)> {
        let l = self.limited.as_ref()?;
        Some((&l.name, l.limit()?))
    }

    /// Cheap (a few small file reads): call every second. Some(one-line reason) once per
    /// crossing; re-arms when usage falls below the threshold again.
    pub fn check(&mut self) -> Option<String> {
        let checks = [self.limit_reason(), self.rss_reason(), self.psi_reason()];
        let mut told = Vec::new();
        for (crossed, now) in self.crossed.iter_mut().zip(checks) {
            if let Some(reason) = &now {
                if !*crossed {
                    told.push(reason.clone());
                }
            }
            *crossed = now.is_some();
        }
        (!told.is_empty()).then(|| told.join("; "))
    }

    fn limit_reason(&self) -> Option<String> {
        let l = self.limited.as_ref()?;
        let limit = l.limit()?;
        let usage = l.usage()?;
        (usage as f64 >= limit as f64 * self.config.pressure_limit_fraction).then(|| {
            format!(
                "memory {} is {:.0}% of the cgroup limit {} ({})",
                human_bytes(usage),
                usage as f64 * 100.0 / limit as f64,
                human_bytes(limit),
                l.name
            )
        })
    }

    fn rss_reason(&self) -> Option<String> {
        let threshold = self.config.pressure_rss?;
        let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.pid)).ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        let rss = pages * rustix::param::page_size() as u64;
        (rss >= threshold).then(|| {
            format!(
                "RSS {} reached --pressure-rss {}",
                human_bytes(rss),
                human_bytes(threshold)
            )
        })
    }

    fn psi_reason(&self) -> Option<String> {
        let (name, file) = self.psi.as_ref()?;
        let text = std::fs::read_to_string(file).ok()?;
        let some = text.lines().find_map(|l| l.strip_prefix("some "))?;
        let avg10: f64 = some
            .split_whitespace()
            .find_map(|f| f.strip_prefix("avg10="))?
            .parse()
            .ok()?;
        (avg10 >= self.config.pressure_psi).then(|| {
            format!(
                "memory pressure {avg10:.0}% (some avg10) reached --pressure-psi {:.0}% ({name})",
                self.config.pressure_psi
            )
        })
    }
}

/// The target's memory cgroup: its name, its directory, the hierarchy's mount point, and
/// whether it is v2. The v1 memory controller first: where both exist, the empty v2
/// hierarchy beside it has no memory files.
fn memory_cgroup(pid: u32) -> Option<(String, PathBuf, PathBuf, bool)> {
    let groups = procfs::process::Process::new(pid as i32)
        .ok()?
        .cgroups()
        .ok()?;
    let mounts = procfs::process::Process::myself().ok()?.mountinfo().ok()?;
    let v1 = groups
        .0
        .iter()
        .find(|g| g.controllers.iter().any(|c| c == "memory"))
        .and_then(|g| {
            let m = mounts
                .0
                .iter()
                .find(|m| m.fs_type == "cgroup" && m.super_options.contains_key("memory"))?;
            Some((g, m, false))
        });
    let v2 = || {
        let g = groups.0.iter().find(|g| g.hierarchy == 0)?;
        let m = mounts.0.iter().find(|m| m.fs_type == "cgroup2")?;
        Some((g, m, true))
    };
    let (group, mount, is_v2) = v1.or_else(v2)?;
    // The path is relative to the hierarchy's root, the mount shows the part under its root.
    let rel = Path::new(&group.pathname)
        .strip_prefix(&mount.root)
        .ok()?
        .to_path_buf();
    let dir = mount.mount_point.join(rel);
    let probe = if is_v2 {
        "memory.current"
    } else {
        "memory.usage_in_bytes"
    };
    dir.join(probe).exists().then(|| {
        (
            group.pathname.clone(),
            dir,
            mount.mount_point.clone(),
            is_v2,
        )
    })
}

/// Of `dir` and its ancestors up to the hierarchy's root, the cgroup with the smallest limit.
fn limited(name: &str, dir: &Path, mount: &Path, v2: bool) -> Option<Limited> {
    let mut best: Option<(u64, Limited)> = None;
    let mut name = Some(Path::new(name));
    for dir in dir.ancestors().take_while(|d| d.starts_with(mount)) {
        let here = name.map_or_else(|| "/".to_string(), |n| n.display().to_string());
        name = name.and_then(Path::parent);
        let Some(limit) = read_limit(dir, v2) else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| limit < *b) {
            let l = Limited {
                name: here,
                dir: dir.to_path_buf(),
                v2,
            };
            best = Some((limit, l));
        }
    }
    best.map(|(_, l)| l)
}

/// The cgroup's limit; `None` when it has none.
fn read_limit(dir: &Path, v2: bool) -> Option<u64> {
    let file = if v2 {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    read_u64(&dir.join(file)).filter(|l| *l < UNLIMITED)
}

/// A file holding one number (`max` is no number).
fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse() {
        assert_eq!(parse_fraction("0.9"), Ok(0.9));
        assert!(parse_fraction("0").is_err() && parse_fraction("1.5").is_err());
        let d = PressureConfig::default();
        assert_eq!((d.pressure_limit_fraction, d.pressure_rss), (0.9, None));
    }
}
