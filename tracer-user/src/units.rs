//! Sizes and durations as people write and read them (`512KiB`, `1.5 MiB`, `30s`, `5m`),
//! through `bytesize` and `humantime`, checked when the flags are parsed.

use std::time::Duration;

use bytesize::ByteSize;

/// The longest duration a flag takes: beyond it, deadlines computed from now overflow.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A duration such as `30s`, `5m`, `1h30m`: more than zero, at most 100 years.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration (e.g. 500ms, 30s, 5m, 2h): {e}"))?;
    if d.is_zero() {
        return Err(format!("{s:?}: the duration must be more than zero"));
    }
    if d > MAX_DURATION {
        return Err(format!("{s:?} is too long (at most 100 years)"));
    }
    Ok(d)
}

/// Bytes with an optional unit: 524288, 512KiB, 64 MiB, 1GiB (IEC units are powers of 1024,
/// SI units such as `MB` powers of 1000).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let size: ByteSize = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size in bytes (e.g. 524288, 512KiB, 64MiB)"))?;
    // bytesize saturates on overflow: a size that large is a typo, not a limit.
    if size.0 == u64::MAX {
        return Err(format!("{s:?} is too large"));
    }
    Ok(size.0)
}

/// A duration as the flags take it back (`10s`, `7days`): `--print-config` shows what is in
/// force in the form it is written in.
pub fn serialize_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

/// `1.5 MiB`, `512 B`.
pub fn human_bytes(b: u64) -> String {
    ByteSize(b).display().iec().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Shown(#[serde(serialize_with = "serialize_duration")] Duration);

    #[test]
    fn sizes_round_trip() {
        assert_eq!(parse_size("524288"), Ok(524288));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("18446744073709551615s").is_err());
        assert!(parse_duration("soon").is_err());
        for d in ["10s", "7days", "1h 30m"] {
            let shown = serde_json::to_value(Shown(parse_duration(d).unwrap())).unwrap();
            assert_eq!(parse_duration(shown.as_str().unwrap()), parse_duration(d));
        }
    }
}
