//! The `gotrace` command: a thin layer over the `gotrace` library.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv = match cli::args_with_config() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gotrace: error: {}", one_line(&e));
            return ExitCode::FAILURE;
        }
    };
    let args = <cli::Cli as clap::Parser>::parse_from(argv);
    // The agent reports what it does (targets found, findings) as it runs; journald stamps
    // its lines itself (it sets JOURNAL_STREAM), a terminal gets the time.
    let agent = matches!(args.command, cli::Command::Agent(_));
    let mut logger = env_logger::Builder::new();
    logger
        .filter_level(if args.verbose {
            log::LevelFilter::Debug
        } else if agent {
            log::LevelFilter::Info
        } else {
            log::LevelFilter::Warn
        })
        .format_target(false)
        .format_timestamp(None);
    if agent && std::env::var_os("JOURNAL_STREAM").is_none() {
        logger.format_timestamp_secs();
    }
    logger.init();
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
