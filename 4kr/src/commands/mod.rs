//! One module per command group. Each exposes its clap `Args` and an async `run` returning the exit
//! code (0 on success; exec and ps pass the remote command's code through).

pub mod base;
pub mod boxes;
pub mod config;
pub mod console;
pub mod cp;
pub mod diff;
pub mod dockerfile;
pub mod docs;
pub mod ephemeral;
pub mod exec;
pub mod inject;
pub mod port;
pub mod publish;
pub mod snapshot;
pub mod user;
pub mod volume;
pub mod workspace;

use crate::cli::Command;
use crate::ctx::Ctx;
use crate::error::Result;

/// Runs one parsed command.
pub async fn run(ctx: &Ctx, command: Command) -> Result<i32> {
    match command {
        Command::Create(a) => boxes::create(ctx, a).await,
        Command::List(a) => boxes::list(ctx, a).await,
        Command::Show(a) => boxes::show(ctx, a).await,
        Command::Update(a) => boxes::update(ctx, a).await,
        Command::Delete(a) => boxes::delete(ctx, a).await,
        Command::Stop(a) => boxes::stop(ctx, a, false).await,
        Command::Resume(a) => boxes::stop(ctx, a, true).await,
        Command::Exec(a) => exec::exec(ctx, a).await,
        Command::Console(a) => console::console(ctx, a).await,
        Command::Ps(a) => exec::ps(ctx, a).await,
        Command::Logs(a) => exec::logs(ctx, a).await,
        Command::Cp(a) => cp::cp(ctx, a).await,
        Command::Publish(a) => publish::publish(ctx, a).await,
        Command::Unpublish(a) => publish::unpublish(ctx, a).await,
        Command::Port(a) => port::run(ctx, a).await,
        Command::Snapshot(a) => snapshot::run(ctx, a).await,
        Command::Diff(a) => diff::run(ctx, a).await,
        Command::Base(a) => base::run(ctx, a).await,
        Command::Volume(a) => volume::run(ctx, a).await,
        Command::User(a) => user::run(ctx, a).await,
        Command::Inject(a) => inject::inject(ctx, a).await,
        Command::Validate(a) => workspace::validate(ctx, a).await,
        Command::Plan(a) => workspace::plan(ctx, a).await,
        Command::Apply(a) => workspace::apply(ctx, a).await,
        Command::Destroy(a) => workspace::destroy(ctx, a).await,
        Command::Schema(a) => workspace::schema(a),
        Command::Config(a) => config::run(ctx, a),
        Command::Docs(a) => docs::run(a),
    }
}
