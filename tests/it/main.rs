//! The integration tests: each module traces real Go processes (see `gotrace_tests`).

mod agent_push;
mod alloc_paths;
mod attach;
mod bad_input;
mod cgo_malloc_leak;
mod chan_backlog;
mod check;
mod cli;
mod datasyms;
mod dump;
mod export;
mod finalizer_abuse;
mod goroutine_counts;
mod goroutine_leak;
mod heap;
mod heap_growth;
mod heap_patterns;
mod names;
mod nearest_release;
mod privileges;
mod root_safety;
mod sampler;
mod symbols;
mod unchanged_behaviour;
