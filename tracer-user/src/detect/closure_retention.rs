//! `closure-retention`: a long-lived goroutine whose closure captured a large object, which
//! therefore stays live as long as the goroutine. Seen from outside as: a site in function F
//! holds a lot of old memory (sampled objects that survived several GC cycles), while a
//! goroutine running a closure of that same F (`F.funcN`) has been alive all along.

use serde_json::json;

use super::{heap_stack, site_of, Finding};
use crate::{
    binary::GoBinary,
    goruntime::traceback::goroutine_function,
    model::{heap::AgeHistogram, heap_series::HeapSeries},
    symbols::Symbolizer,
};

#[derive(Clone, Debug)]
pub struct Config {
    /// Retained bytes in use at the allocation site.
    pub min_bytes: u64,
    /// GC cycles the oldest retained object must have survived.
    pub min_age_cycles: u32,
    /// How long the goroutine must have been alive (seconds).
    pub min_alive_s: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_bytes: 1 << 20,
            min_age_cycles: 3,
            min_alive_s: 5.0,
        }
    }
}

/// A goroutine creation site alive for a while: (`go` statement PC, start PC, live, alive_s).
pub type LongLived = (u64, u64, u64, f64);

#[derive(Debug, Default)]
pub struct ClosureRetention {
    pub config: Config,
}

impl ClosureRetention {
    pub fn findings(
        &self,
        series: &HeapSeries,
        ages: &std::collections::HashMap<u64, AgeHistogram>,
        goroutines: &[LongLived],
        binary: &GoBinary,
        sym: &Symbolizer,
    ) -> Vec<Finding> {
        let c = &self.config;
        let mut out = Vec::new();
        for (bucket, points) in series.sites() {
            let Some(last) = points.back() else { continue };
            let Some(age) = ages.get(&bucket) else {
                continue;
            };
            if last.inuse_bytes < c.min_bytes || age.oldest < c.min_age_cycles {
                continue;
            }
            let stack = heap_stack(series, bucket, sym);
            let allocated_in = site_of(&stack).function;
            // A closure of F is named F.func1, F.func2, ... (nested: F.func1.2).
            let closure_prefix = format!("{allocated_in}.func");
            for &(gopc, startpc, live, alive_s) in goroutines {
                let function = goroutine_function(binary, startpc);
                if alive_s < c.min_alive_s || !function.starts_with(&closure_prefix) {
                    continue;
                }
                out.push(Finding {
                    pattern: "closure-retention",
                    site: sym.caller_frame(gopc),
                    stack: stack.clone(),
                    evidence: json!({
                        "retained_bytes": last.inuse_bytes,
                        "retained_objects": last.inuse_objects,
                        "allocated_in": allocated_in,
                        "object_age": age,
                        "goroutine_function": function,
                        "goroutines": live,
                        "goroutine_alive_s": alive_s.round(),
                    }),
                    hint: "this long-lived goroutine's closure captures a variable of the enclosing function that holds a large object: pass the goroutine only what it needs (copy the small fields) so the large value can be collected".into(),
                });
            }
        }
        out
    }
}
