//! Small shared helpers.

use std::{collections::HashMap, ops::Deref, sync::Arc};

/// A map keyed by what the target's runtime hands out (goroutine ids, PCs, addresses), touched
/// once per goroutine per look: a fast hash, where SipHash cost most of a look at a million
/// goroutines.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Immutable bytes shared between readers of one binary (a memory map, or a buffer in tests).
#[derive(Clone)]
pub struct SharedBytes(Arc<dyn AsRef<[u8]> + Send + Sync>);

impl SharedBytes {
    pub fn new(bytes: impl AsRef<[u8]> + Send + Sync + 'static) -> Self {
        SharedBytes(Arc::new(bytes))
    }
}

impl Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

impl std::fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedBytes({} bytes)", self.len())
    }
}

pub fn read_u64(bytes: &[u8], off: usize) -> Option<u64> {
    bytes
        .get(off..off.checked_add(8)?)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
}

/// The user who ran sudo (`SUDO_UID`, `SUDO_GID`) when gotrace runs as root through it: the
/// user gotrace works for, whose commands it runs and whose directories it trusts.
pub fn sudo_user() -> Option<(u32, u32)> {
    let id = |var| std::env::var(var).ok()?.parse().ok();
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    Some((id("SUDO_UID")?, id("SUDO_GID")?))
}

/// A `&'static str` field that is read back from disk too: serde would otherwise require the
/// whole input to live forever (it borrows `&str` fields from it), whatever `deserialize_with`
/// says; spelled through this alias, the field is read by [`static_str`].
pub type StaticStr = &'static str;

/// Deserializes a `&'static str` field (a pattern id, a probe name, gotrace's version) of a
/// report read back from disk. Each distinct string is leaked once and shared after that: the
/// values come from small closed sets, so this stays bounded however many reports are read,
/// and the types keep the `&'static str` every session builds them with.
pub(crate) fn static_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    use std::{collections::HashSet, sync::Mutex};
    static SEEN: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let s = <String as serde::Deserialize>::deserialize(d)?;
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    Ok(match seen.get(s.as_str()) {
        Some(known) => known,
        None => {
            let leaked: &'static str = Box::leak(s.into_boxed_str());
            seen.insert(leaked);
            leaked
        }
    })
}
