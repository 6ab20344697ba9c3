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

/// A percentage above 0 and at most 100, with or without its `%`: `50`, `0.5%`.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches('%').parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!(
            "{s:?} is not a percentage above 0 and at most 100 (e.g. 50)"
        )),
    }
}

/// `1.5 MiB`, `512 B`.
pub fn human_bytes(b: u64) -> String {
    ByteSize(b).display().iec().to_string()
}

/// A duration as [`parse_duration`] reads it back, exactly: `7d`, `90s`, `1500ms`, in the
/// largest unit that divides it (for `--print-config`).
pub fn duration_string(d: Duration) -> String {
    const UNITS: [(&str, u128); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let ms = d.as_millis();
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{}ns", d.as_nanos());
    }
    let (unit, n) = UNITS
        .iter()
        .find(|(_, n)| ms.is_multiple_of(*n))
        .expect("milliseconds divide");
    format!("{}{unit}", ms / n)
}

/// A size as [`parse_size`] reads it back, exactly: `1GiB`, `512KiB`, `1000`.
pub fn size_string(b: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    match UNITS.iter().find(|(_, n)| b > 0 && b.is_multiple_of(*n)) {
        Some((unit, n)) => format!("{}{unit}", b / n),
        None => b.to_string(),
    }
}

/// `#[serde(serialize_with)]` for a duration flag: [`duration_string`].
pub fn serialize_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&duration_string(*d))
}

/// `#[serde(serialize_with)]` for a size flag: [`size_string`].
pub fn serialize_size<S: serde::Serializer>(b: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&size_string(*b))
}

/// `#[serde(serialize_with)]` for an optional size flag (none: left out of the TOML).
pub fn serialize_opt_size<S: serde::Serializer>(b: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match b {
        Some(b) => serialize_size(b, s),
        None => s.serialize_none(),
    }
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
        assert_eq!(parse_percent("50%"), Ok(50.0));
        assert!(parse_percent("-1").is_err() && parse_percent("pct").is_err());
        for d in ["7d", "90s", "1500ms", "2h", "5m"] {
            assert_eq!(duration_string(parse_duration(d).unwrap()), d);
        }
        for b in ["1GiB", "512KiB", "1000", "3MiB"] {
            assert_eq!(size_string(parse_size(b).unwrap()), b);
        }
        for d in ["10s", "7days", "1h 30m"] {
            let shown = serde_json::to_value(Shown(parse_duration(d).unwrap())).unwrap();
            assert_eq!(parse_duration(shown.as_str().unwrap()), parse_duration(d));
        }
    }
}
