//! `forkr-server`: serves the Forkr API on a loopback address by default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use forkr_engine::engine::Config;
use forkr_server::{AppState, auth, router, setup};

#[derive(Debug, Parser)]
#[command(
    name = "forkr-server",
    version,
    about = "The Forkr API server (forkr-api): boxes on btrfs and Linux namespaces"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "FORKR_LISTEN", default_value = "127.0.0.1:7878", global = true)]
    listen: SocketAddr,
    /// Data directory: metadata, token, and the btrfs filesystem (an image file is created and
    /// loop-mounted when the directory is not on btrfs).
    #[arg(long, env = "FORKR_DATA_DIR", default_value = "/var/lib/forkr", global = true)]
    data_dir: PathBuf,
    /// Deployment domain: boxes are published at https://{box}.{domain}.
    #[arg(long, env = "FORKR_DOMAIN", default_value = "localhost", global = true)]
    domain: String,
    /// Size of the btrfs image created when the data dir is not on btrfs (sparse), e.g. 64G.
    #[arg(long, env = "FORKR_IMAGE_SIZE", default_value = "64G", value_parser = parse_size, global = true)]
    image_size: u64,
    /// API URL injected into boxes as FORKR_API_URL (default https://forks.<domain>).
    #[arg(long, env = "FORKR_API_URL_INJECT", global = true)]
    api_url: Option<String>,
    /// The forkr-shim helper (default: beside this binary).
    #[arg(long, env = "FORKR_SHIM", global = true)]
    shim: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Stop every box of the data dir, unmount its storage and release the loop device.
    Teardown,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}: use e.g. 64G, 512M"))?;
    let m: u64 = match mult.trim_end_matches(['i', 'B']) {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        "T" | "t" => 1 << 40,
        _ => return Err(format!("invalid size {s:?}: use e.g. 64G, 512M")),
    };
    n.checked_mul(m).ok_or_else(|| format!("size {s:?} is too large"))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FORKR_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Teardown) => setup::teardown(&cli.data_dir),
        None | Some(Command::Serve) => {
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve(cli))
        }
    }
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let mut config = Config::new(&cli.data_dir);
    config.domain = cli.domain.clone();
    config.api_url = cli.api_url.clone();
    let shim = match cli.shim.clone() {
        Some(s) => s,
        None => setup::default_shim()?,
    };
    let engine = setup::open_engine(config, cli.image_size, shim).await?;
    let token_path = engine.layout().token();
    let token = auth::load_or_create_token(&token_path)?;
    let state = Arc::new(AppState { engine, token });
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    let addr = listener.local_addr()?;
    // Tests and scripts read these two lines.
    println!("forkr-server listening on http://{addr}");
    println!("token file: {}", token_path.display());
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {},
        }
        tracing::info!("shutting down; boxes keep running");
    };
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
