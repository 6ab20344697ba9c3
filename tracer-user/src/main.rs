//! The `gotrace` command: a thin layer over the `gotrace` library.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = <cli::Cli as clap::Parser>::parse();
    env_logger::Builder::new()
        .filter_level(if args.verbose {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Warn
        })
        .format_target(false)
        .format_timestamp(None)
        .init();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gotrace: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// One line: the library's errors already name their cause and the fix; anything else gets
/// its chain of causes.
fn one_line(e: &anyhow::Error) -> String {
    let text = match e.downcast_ref::<gotrace::Error>() {
        Some(lib) => lib.to_string(),
        None => format!("{e:#}"),
    };
    text.replace('\n', " ")
}
