//! `forkr-server-faults`: `forkr-server` built with the `fault-injection` feature, for the crash
//! tests (`tests/tests/crash.rs`). `FORKR_FAULT=<point>` (see `forkr_engine::fault::POINTS`) makes
//! it kill itself with SIGKILL at that step of an operation. Built only with
//! `cargo build -p forkr-server --features fault-injection --bin forkr-server-faults`; never shipped.

#[path = "../main.rs"]
mod server;

fn main() -> anyhow::Result<()> {
    server::main()
}
