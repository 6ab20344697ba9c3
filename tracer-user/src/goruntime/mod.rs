//! What gotrace knows about the Go runtime of a target: which releases it supports, the struct
//! offsets of this binary's release, and the probe configuration derived from them.

pub mod allgs;
pub mod channels;
pub mod datasyms;
pub mod finalizers;
pub mod gcstats;
pub mod heapprof;
pub mod pools;
pub mod sched;
pub mod spans;
pub mod specials;
pub mod traceback;
pub mod types;
pub mod verify;

/// Where `cargo xtask gen-offsets` writes the generated table.
pub const OFFSETS_TABLE_SOURCE: &str = "tracer-user/src/binary/offsets_table.rs";

use tracer_common::ProbeConfig;

pub use crate::binary::offsets::{Field, Offsets, OffsetsSource};

use crate::{
    binary::{GoBinary, GoVersion},
    error::{Error, Result},
    target::Target,
};

/// The oldest release gotrace reads: register ABI (1.17+), pclntab 1.18+ layout, and the oldest
/// toolchain the test matrix covers (Debian 12's Go 1.19).
pub const OLDEST_SUPPORTED: GoVersion = GoVersion::new(1, 19, 0);

/// The runtime of one traced binary.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub version: GoVersion,
    pub offsets: Offsets,
}

impl Runtime {
    pub fn of(binary: &GoBinary) -> Result<Self> {
        let version = binary.version();
        let unsupported = |reason: String| Error::UnsupportedGoVersion {
            path: binary.path.clone(),
            version: binary.buildinfo.version_string.clone(),
            reason,
        };
        if version < OLDEST_SUPPORTED {
            return Err(unsupported(format!(
                "the oldest supported release is Go {}.{}; rebuild the program with a newer Go",
                OLDEST_SUPPORTED.major, OLDEST_SUPPORTED.minor
            )));
        }
        let offsets = binary
            .elf
            .has_dwarf
            .then(|| Offsets::from_dwarf(binary.data()))
            .flatten()
            .or_else(|| Offsets::from_table(version))
            .or_else(|| Offsets::nearest_below(version))
            .ok_or_else(|| {
                unsupported(format!(
                    "the binary has no DWARF and gotrace has no struct offsets for Go {}.{} \
                     (it knows {}); rebuild without `-ldflags=-w`, or use a gotrace release that knows this Go",
                    version.major,
                    version.minor,
                    Offsets::known_releases()
                ))
            })?;
        Ok(Runtime { version, offsets })
    }

    /// The runtime of a running process: for a release gotrace has no table for, the nearest
    /// older release's offsets are proven against the live goroutines first (see [`verify`]).
    pub fn for_process(target: &Target) -> Result<Self> {
        let mut runtime = Self::of(&target.binary)?;
        verify::verify(target, &mut runtime)?;
        Ok(runtime)
    }

    /// Where a runtime variable lives in this process (load bias applied).
    pub fn variable(&self, target: &Target, sym: datasyms::DataSymbol) -> Option<u64> {
        datasyms::locate(&target.binary, Some(&self.offsets), sym)
            .map(|l| l.address() + target.load_bias)
    }

    /// The offsets the eBPF programs need.
    pub fn probe_config(&self, binary: &GoBinary) -> Result<ProbeConfig> {
        let get = |f: Field| {
            self.offsets
                .get(f)
                .ok_or_else(|| Error::UnsupportedGoVersion {
                    path: binary.path.clone(),
                    version: binary.buildinfo.version_string.clone(),
                    reason: match &self.offsets.source {
                        OffsetsSource::Nearest {
                            release,
                            for_release,
                            ..
                        } => format!(
                            "the probes need {}.{}, whose offset gotrace cannot prove for Go \
                         {for_release} (its table stops at Go {release}); attach without probe \
                         flags, or rebuild without `-ldflags=-w`",
                            f.dwarf_names()[0].0,
                            f.dwarf_names()[0].1
                        ),
                        _ => format!(
                            "its runtime has no {:?} field ({:?})",
                            f,
                            f.dwarf_names()[0]
                        ),
                    },
                })
        };
        Ok(ProbeConfig {
            g_goid: get(Field::GGoid)?,
            g_m: get(Field::GM)?,
            m_curg: get(Field::MCurg)?,
            g_gopc: get(Field::GGopc)?,
            g_startpc: get(Field::GStartpc)?,
            hchan_qcount: get(Field::HchanQcount)?,
            hchan_dataqsiz: get(Field::HchanDataqsiz)?,
        })
    }
}
