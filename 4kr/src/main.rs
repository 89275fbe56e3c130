//! `4kr`, the Forkr command-line interface.
//!
//! Exit codes: 0 on success, 1 on any error (including invalid arguments), and for `exec`/`ps` the
//! remote command's own exit code.

mod cli;
mod client;
mod commands;
mod ctx;
mod env;
mod error;
mod output;
mod session;
mod setup;
mod target;
mod term;
mod tls;

use std::io::Write as _;

use clap::Parser as _;

fn main() {
    let code = real_main();
    // Flush before exiting: `process::exit` skips destructors, and a blocked stdin reader thread
    // (exec, console) must not keep the process alive.
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// Restores the default SIGPIPE action, so `4kr list | head -1` ends quietly like other Unix tools
/// instead of panicking in `println!`. Sockets are unaffected: Rust's socket writes use MSG_NOSIGNAL.
fn default_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called first thing in `main`, before any other thread exists; SIG_DFL installs no
    // Rust code as a handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

fn real_main() -> i32 {
    default_sigpipe();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}", error::render(error::CliError::io("cannot start the async runtime", e)));
            return 1;
        }
    };
    let result = runtime.block_on(async {
        let ctx = ctx::Ctx::from_process(cli.global)?;
        commands::run(&ctx, cli.command).await
    });
    // Do not wait for a stdin reader blocked in read(2).
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("{}", error::render(e));
            1
        }
    }
}
