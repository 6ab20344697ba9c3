//! `SetFinalizer` call sites seen by the (opt-in) `set-finalizer` probe.

use serde::{Deserialize, Serialize};

use super::capped::Capped;
use crate::{
    binary::offsets::Offsets,
    binary::GoBinary,
    goruntime::types::TypeNames,
    symbols::{Frame, Symbolizer},
};

/// Call sites followed at once (a program has as many as it has SetFinalizer calls in code).
const MAX_SITES: usize = 4096;

/// One `SetFinalizer` call site.
#[derive(Clone, Copy, Debug, Default)]
pub struct FinalizerSite {
    pub calls: u64,
    /// Type descriptor of the objects it set finalizers on (the latest call's).
    pub obj_type: u64,
}

/// A `SetFinalizer` call site, as reported.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SetFinalizerSite {
    pub site: Frame,
    pub calls: u64,
    /// The finalized objects' Go type, e.g. `*main.conn`.
    pub object_type: Option<String>,
}

/// SetFinalizer calls per call site (return address into the caller).
#[derive(Debug)]
pub struct FinalizerSites(Capped<u64, FinalizerSite>);

impl Default for FinalizerSites {
    fn default() -> Self {
        FinalizerSites(Capped::new(MAX_SITES))
    }
}

impl FinalizerSites {
    pub fn set(&mut self, caller_pc: u64, obj_type: u64) {
        let site = self.0.entry(caller_pc, FinalizerSite::default);
        site.calls += 1;
        site.obj_type = obj_type;
    }

    pub fn followed(&self) -> usize {
        self.0.len()
    }

    pub fn evicted(&self) -> u64 {
        self.0.evicted()
    }

    /// The call sites, busiest first, with the type of the objects each one finalizes.
    pub fn named(
        &self,
        binary: &GoBinary,
        offsets: &Offsets,
        load_bias: u64,
        sym: &Symbolizer,
    ) -> Vec<SetFinalizerSite> {
        let types = TypeNames::new(binary, offsets);
        let mut sites: Vec<SetFinalizerSite> = self
            .0
            .iter()
            .map(|(pc, s)| SetFinalizerSite {
                site: sym.caller_frame(pc.wrapping_sub(load_bias)),
                calls: s.calls,
                object_type: types
                    .as_ref()
                    .and_then(|t| t.name(s.obj_type.wrapping_sub(load_bias))),
            })
            .collect();
        sites.sort_by(|a, b| {
            b.calls
                .cmp(&a.calls)
                .then(a.site.function.cmp(&b.site.function))
        });
        sites
    }
}
