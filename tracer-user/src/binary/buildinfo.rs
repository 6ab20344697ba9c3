//! `.go.buildinfo`: the Go version (with GOEXPERIMENTs), the main module and the build settings
//! that the Go linker writes into every binary, stripped or not (what `go version -m` prints).

use std::fmt;

use serde::Serialize;

const MAGIC: &[u8] = b"\xff Go buildinf:";
/// Flag bit: the version and module strings follow the header inline (Go 1.18+); before that the
/// header held pointers to string headers.
const FLAG_INLINE: u8 = 0x2;
const FLAG_BIG_ENDIAN: u8 = 0x1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BuildInfo {
    /// As written by the toolchain, e.g. `go1.26.6` or `go1.26.6 X:goroutineleakprofile`.
    pub version_string: String,
    pub version: GoVersion,
    /// GOEXPERIMENTs that differ from the toolchain's defaults (`X:` suffix of the version and
    /// the `GOEXPERIMENT` build setting).
    pub experiments: Vec<String>,
    /// Main module path (`path` line), when built in module mode.
    pub path: Option<String>,
    pub main_module: Option<String>,
    /// `build` settings: `-ldflags`, `CGO_ENABLED`, `GOARCH`, `vcs.revision`, ...
    pub settings: Vec<(String, String)>,
}

/// A Go release: `go1.26.6` is 1.26.6; pre-releases and devel builds keep their base version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GoVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl GoVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        GoVersion {
            major,
            minor,
            patch,
        }
    }

    /// Parses `go1.26.6`, `go1.21rc2`, `devel go1.27-abcdef ...`, with or without ` X:...`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let s = s.strip_prefix("devel ").unwrap_or(s);
        let rest = s.strip_prefix("go")?;
        let digits_end = |t: &str| t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let mut nums = [0u32; 3];
        let mut t = rest;
        for (i, n) in nums.iter_mut().enumerate() {
            let end = digits_end(t);
            if end == 0 {
                if i < 2 {
                    return None;
                }
                break;
            }
            *n = t[..end].parse().ok()?;
            t = &t[end..];
            match t.strip_prefix('.') {
                Some(next) if i < 2 => t = next,
                _ => break,
            }
        }
        Some(GoVersion::new(nums[0], nums[1], nums[2]))
    }

    /// `1.26` for 1.26.6: struct layouts change only between minor releases.
    pub fn minor_release(&self) -> (u32, u32) {
        (self.major, self.minor)
    }
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildInfoError {
    #[error("no Go build information (.go.buildinfo) found")]
    Missing,
    #[error("Go build information is truncated or corrupt: {0}")]
    Corrupt(&'static str),
    #[error("Go build information predates Go 1.18 (pointer format); only Go 1.19+ is supported")]
    PointerFormat,
}

impl BuildInfo {
    /// Parses the build-info blob starting at its magic (the `.go.buildinfo` section's bytes).
    pub fn parse(blob: &[u8]) -> Result<Self, BuildInfoError> {
        if !blob.starts_with(MAGIC) {
            return Err(BuildInfoError::Missing);
        }
        let flags = *blob.get(15).ok_or(BuildInfoError::Corrupt("header"))?;
        if flags & FLAG_INLINE == 0 {
            return Err(BuildInfoError::PointerFormat);
        }
        if flags & FLAG_BIG_ENDIAN != 0 {
            return Err(BuildInfoError::Corrupt("big-endian build info on x86_64"));
        }
        let mut rest = blob.get(32..).ok_or(BuildInfoError::Corrupt("header"))?;
        let version_string = read_varint_bytes(&mut rest)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .ok_or(BuildInfoError::Corrupt("version"))?;
        let modinfo = read_varint_bytes(&mut rest).unwrap_or_default();
        let version =
            GoVersion::parse(&version_string).ok_or(BuildInfoError::Corrupt("version string"))?;
        Ok(Self::from_strings(version_string, version, modinfo))
    }

    /// Finds the build-info blob: the `.go.buildinfo` section, or the magic on a 16-byte
    /// boundary in the data (as `go version` does when section headers are gone).
    pub fn find(data: &[u8], section: Option<&[u8]>) -> Result<Self, BuildInfoError> {
        if let Some(s) = section {
            return Self::parse(s);
        }
        let pos = data
            .chunks(16)
            .position(|c| c.starts_with(MAGIC))
            .ok_or(BuildInfoError::Missing)?;
        Self::parse(&data[pos * 16..])
    }

    fn from_strings(version_string: String, version: GoVersion, modinfo: &[u8]) -> Self {
        // The module info is framed by 16-byte binary sentinels.
        let modinfo = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
            &modinfo[16..modinfo.len() - 16]
        } else {
            modinfo
        };
        let modinfo = String::from_utf8_lossy(modinfo);
        let mut info = BuildInfo {
            experiments: experiments_of(&version_string),
            version_string,
            version,
            path: None,
            main_module: None,
            settings: Vec::new(),
        };
        for line in modinfo.lines() {
            let mut fields = line.split('\t');
            match fields.next() {
                Some("path") => info.path = fields.next().map(str::to_string),
                Some("mod") => info.main_module = fields.next().map(str::to_string),
                Some("build") => {
                    if let Some((k, v)) = fields.next().and_then(|kv| kv.split_once('=')) {
                        info.settings
                            .push((k.to_string(), v.trim_matches('"').to_string()));
                    }
                }
                _ => {}
            }
        }
        if let Some(exp) = info.setting("GOEXPERIMENT").map(str::to_string) {
            for e in exp.split(',').filter(|e| !e.is_empty()) {
                if !info.experiments.iter().any(|x| x == e) {
                    info.experiments.push(e.to_string());
                }
            }
        }
        info
    }

    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn experiments_of(version_string: &str) -> Vec<String> {
    version_string
        .split_whitespace()
        .find_map(|w| w.strip_prefix("X:"))
        .map(|x| x.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

fn read_varint_bytes<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut len: u64 = 0;
    let mut shift = 0;
    let mut i = 0;
    loop {
        let b = *buf.get(i)?;
        i += 1;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let end = i.checked_add(usize::try_from(len).ok()?)?;
    let s = buf.get(i..end)?;
    *buf = &buf[end..];
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(GoVersion::parse("go1.26.6"), Some(GoVersion::new(1, 26, 6)));
        assert_eq!(
            GoVersion::parse("go1.21rc2"),
            Some(GoVersion::new(1, 21, 0))
        );
        assert_eq!(GoVersion::parse("go1.22"), Some(GoVersion::new(1, 22, 0)));
        assert_eq!(
            GoVersion::parse("go1.26.6 X:goroutineleakprofile"),
            Some(GoVersion::new(1, 26, 6))
        );
        assert_eq!(
            GoVersion::parse("devel go1.28-1a2b3c Tue"),
            Some(GoVersion::new(1, 28, 0))
        );
        assert_eq!(GoVersion::parse("gcc"), None);
        assert_eq!(GoVersion::parse("go"), None);
    }

    #[test]
    fn truncated_blobs_are_errors_not_panics() {
        let mut blob = MAGIC.to_vec();
        assert!(BuildInfo::parse(&blob).is_err());
        blob.extend_from_slice(&[8, FLAG_INLINE]);
        blob.resize(32, 0);
        blob.push(0x80); // varint that never ends
        assert_eq!(
            BuildInfo::parse(&blob),
            Err(BuildInfoError::Corrupt("version"))
        );
    }

    #[test]
    fn experiments_from_version_and_settings() {
        assert_eq!(
            experiments_of("go1.26.6 X:goroutineleakprofile,greenteagc"),
            vec!["goroutineleakprofile", "greenteagc"]
        );
    }
}
