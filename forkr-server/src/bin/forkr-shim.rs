//! `forkr-shim`: starts a box's PID 1 for the local runtime. forkr-server runs it from the
//! directory of its own executable; see `forkr_engine::runtime::local` for what it does and why it
//! is a separate, single-threaded process.

fn main() {
    forkr_engine::runtime::local::shim_main()
}
