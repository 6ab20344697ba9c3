//! `.go.buildinfo` and Go version strings from arbitrary bytes.
#![no_main]

use gotrace::binary::{BuildInfo, GoVersion};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = BuildInfo::parse(data);
    let _ = BuildInfo::find(data, None);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = GoVersion::parse(s);
    }
});
