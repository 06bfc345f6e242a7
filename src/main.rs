//! The `switchboard` binary: parses the command line and runs it.

use std::cell::Cell;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use switchboard::cli::{self, Cli, Command, Failure};
use switchboard::{diagnostics, settings};

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
    // The format before anything logs: a bad value (or an unreadable
    // settings file) stops the command as any bad setting does.
    let format = match cli::log_format(&cli) {
        Ok(format) => format,
        Err(bad) => return fail(Failure::from(bad)),
    };
    diagnostics::init(default_level, format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(give_back_memory)
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
/// (`just bench fanout` on 2026-11-30, before later savings: a fresh
/// gateway 54 MiB with them, 13 MiB without; 5,000 idle connections 9.7 KiB
/// each with them, 9.0 KiB without; today's figures are in
/// docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often, at most, a worker thread going idle gives its free memory
/// back to the OS.
const GIVE_BACK_EVERY: Duration = Duration::from_secs(1);

/// Called when a runtime worker runs out of work: at most every
/// [`GIVE_BACK_EVERY`], mimalloc returns the thread's free pages to the OS.
/// mimalloc purges a thread's free pages only when that thread allocates
/// again, so after a crowd of connections left, an idle gateway kept their
/// memory resident; with this it goes back to what the rest use. A worker
/// that never idles never pays for it.
fn give_back_memory() {
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    LAST.with(|last| {
        let now = Instant::now();
        if last
            .get()
            .is_some_and(|at| now.duration_since(at) < GIVE_BACK_EVERY)
        {
            return;
        }
        last.set(Some(now));
        // SAFETY: `mi_collect` takes no pointers and may be called from any
        // thread at any time; it only walks this thread's own heap.
        unsafe { libmimalloc_sys::mi_collect(true) };
    });
}
