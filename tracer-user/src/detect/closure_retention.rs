//! `closure-retention`: a long-lived goroutine whose closure captured a large object, which
//! therefore stays live as long as the goroutine. Seen from outside as: a site in function F
//! holds a lot of old memory (sampled objects that survived several GC cycles), while a
//! goroutine running a closure of that same F (`F.funcN`) has been alive all along.

use serde_json::json;

use super::{config_defaults, heap_stack, site_of, Context, Detector, Finding};
use crate::goruntime::traceback::goroutine_function;

pub const PATTERN: &str = "closure-retention";

#[derive(Clone, Debug, clap::Args)]
#[group(skip)]
pub struct Config {
    /// closure-retention: bytes a closure must keep alive.
    #[arg(id = "retained", long = "retained", value_name = "SIZE", default_value = "1MiB", value_parser = crate::units::parse_size)]
    pub min_bytes: u64,
    /// GC cycles the oldest retained object must have survived.
    #[arg(skip = 3u32)]
    pub min_age_cycles: u32,
    /// How long the goroutine must have been alive (seconds).
    #[arg(skip = 5.0)]
    pub min_alive_s: f64,
}

config_defaults!(Config);

pub struct ClosureRetention {
    config: Config,
}

impl ClosureRetention {
    pub fn new(config: Config) -> Self {
        ClosureRetention { config }
    }
}

impl Detector for ClosureRetention {
    fn findings(&self, cx: &Context<'_>) -> Vec<Finding> {
        let c = &self.config;
        let (series, sym) = (&cx.model.heap_series, cx.sym);
        let ages = cx.model.ages.by_bucket();
        let goroutines = cx.model.goroutine_sites.long_lived(cx.t);
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
            for &(gopc, startpc, live, alive_s) in &goroutines {
                let function = goroutine_function(cx.binary, startpc);
                if alive_s < c.min_alive_s || !function.starts_with(&closure_prefix) {
                    continue;
                }
                out.push(Finding {
                    pattern: PATTERN,
                    site: sym.creation_site(gopc, startpc),
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
