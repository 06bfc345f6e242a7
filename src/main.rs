//! The `switchboard` binary: parses the command line and runs it.

use std::process::ExitCode;

use clap::Parser;
use switchboard::cli::{self, Cli, Command, Failure};
use switchboard::settings;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A bad value of a setting gets the message every other bad setting
        // gets (naming its flag and its variable); the rest is clap's.
        Err(e) => match settings::from_clap(&e) {
            Some(bad) => return fail(Failure::from(bad)),
            None => e.exit(),
        },
    };
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchboard: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(failure),
    }
}

fn fail(failure: Failure) -> ExitCode {
    eprintln!("switchboard: {failure}");
    ExitCode::from(failure.exit_code())
}

/// mimalloc: the gateway allocates many small, short-lived buffers per
/// event (envelopes, frames, batches); glibc's allocator spends measurably
/// more CPU on them (see `just bench replay`). Built with `no_thp`: with
/// transparent huge pages its arenas grow resident memory 2 MiB at a time
/// (a fresh gateway: 54 MiB with them, 13 MiB without; 5,000 idle
/// connections: 9.7 KiB each with them, 9.0 KiB without).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
