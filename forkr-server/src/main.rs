//! `forkr-server`: serves the Forkr API on a loopback address by default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use forkr_engine::engine::Config;
use forkr_engine::runtime::kubernetes;
use forkr_server::{AppState, auth, proxy, router, setup};

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
    /// Deployment domain: boxes are published at https://{box}.{domain}. Required with
    /// `--runtime kubernetes`; `localhost` (local development) otherwise.
    #[arg(long, env = "FORKR_DOMAIN", global = true)]
    domain: Option<String>,
    /// Node IP injected into boxes as FORKR_API_IP and FORKR_NODE_IP.
    #[arg(long, env = "FORKR_NODE_IP", default_value = "127.0.0.1", global = true)]
    node_ip: String,
    /// Where boxes run: `local` (Linux namespaces on this machine) or `kubernetes` (a Deployment,
    /// headless Service and Ingress per box; kubeconfig or in-cluster config).
    #[arg(long, env = "FORKR_RUNTIME", value_enum, default_value_t = RuntimeKind::Local, global = true)]
    runtime: RuntimeKind,
    /// Namespace of the boxes' Kubernetes objects.
    #[arg(
        long,
        env = "FORKR_KUBE_NAMESPACE",
        default_value = "forks",
        global = true,
        help_heading = "Kubernetes runtime"
    )]
    kube_namespace: String,
    /// Image of the box runner container.
    #[arg(long, env = "FORKR_RUNNER_IMAGE", default_value = kubernetes::DEFAULT_RUNNER_IMAGE, global = true, help_heading = "Kubernetes runtime")]
    runner_image: String,
    /// The node this server runs on, which holds the boxes' btrfs roots (downward API
    /// `spec.nodeName`); every box is pinned to it.
    #[arg(long, env = "FORKR_NODE_NAME", global = true, help_heading = "Kubernetes runtime")]
    kube_node: Option<String>,
    /// TLS secret (in the boxes' namespace) with a wildcard certificate for *.{domain}; when
    /// unset, cert-manager issues a certificate per box through --cluster-issuer.
    #[arg(long, env = "FORKR_WILDCARD_TLS_SECRET", global = true, help_heading = "Kubernetes runtime")]
    wildcard_tls_secret: Option<String>,
    /// cert-manager ClusterIssuer for box certificates (without a wildcard secret).
    #[arg(long, env = "FORKR_CLUSTER_ISSUER", default_value = kubernetes::DEFAULT_CLUSTER_ISSUER, global = true, help_heading = "Kubernetes runtime")]
    cluster_issuer: String,
    /// Ingress class of box Ingresses (default: the cluster's default class).
    #[arg(long, env = "FORKR_INGRESS_CLASS", global = true, help_heading = "Kubernetes runtime")]
    ingress_class: Option<String>,
    /// How exec and console reach a box: `node` (enter the runner container from this node, like
    /// the local runtime; needs the server on the box's node with hostPID), `api` (the Kubernetes
    /// exec API), or `auto` (node when available for the box, else api; each fallback is logged).
    #[arg(
        long,
        env = "FORKR_KUBE_EXEC",
        default_value = "auto",
        global = true,
        help_heading = "Kubernetes runtime"
    )]
    kube_exec: kubernetes::node::ExecPath,
    /// Size of the btrfs image created when the data dir is not on btrfs (sparse), e.g. 64G.
    #[arg(long, env = "FORKR_IMAGE_SIZE", default_value = "64G", value_parser = parse_size, global = true)]
    image_size: u64,
    /// API URL injected into boxes as FORKR_API_URL (default https://forks.<domain>).
    #[arg(long, env = "FORKR_API_URL_INJECT", global = true)]
    api_url: Option<String>,
    /// The forkr-shim helper (default: beside this binary).
    #[arg(long, env = "FORKR_SHIM", global = true)]
    shim: Option<PathBuf>,
    /// Box network: each box gets an address from this IPv4 subnet on a host bridge; the first
    /// address is the bridge's. `off`: boxes get only a loopback interface.
    #[arg(long, env = "FORKR_SUBNET", default_value = forkr_engine::engine::network::DEFAULT_SUBNET, global = true)]
    subnet: String,
    /// Outbound access for boxes: masquerade their traffic leaving the host (iptables) and give
    /// them a default route. `off`: boxes reach only each other and the host.
    #[arg(long, env = "FORKR_NAT", default_value = "on", value_name = "on|off", action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(), global = true)]
    nat: bool,
    /// The publish proxy's TLS address (HTTPS to published boxes), or `off`.
    #[arg(long, env = "FORKR_PROXY_LISTEN", default_value = "127.0.0.1:8443", value_parser = parse_listen, global = true)]
    proxy_listen: Listen,
    /// The publish proxy's plain-HTTP address, or `off`.
    #[arg(long, env = "FORKR_PROXY_HTTP_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen, global = true)]
    proxy_http_listen: Listen,
    /// PEM certificate (chain) for the publish proxy; default: a self-signed one for the domain,
    /// generated at first start into <data-dir>/proxy-tls/.
    #[arg(long, env = "FORKR_TLS_CERT", requires = "tls_key", global = true)]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "FORKR_TLS_KEY", requires = "tls_cert", global = true)]
    tls_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RuntimeKind {
    Local,
    Kubernetes,
}

/// The Kubernetes driver's settings from the flags.
fn kube_settings(cli: &Cli) -> anyhow::Result<kubernetes::Settings> {
    let node = cli.kube_node.clone().filter(|n| !n.is_empty()).ok_or_else(|| {
        anyhow::anyhow!(
            "FORKR_NODE_NAME (--kube-node) is required with --runtime kubernetes: set it to the node this server runs on (the downward API field spec.nodeName)"
        )
    })?;
    let mut s = kubernetes::Settings::new(&cli.kube_namespace, node);
    s.runner_image = cli.runner_image.clone();
    s.ingress_class = cli.ingress_class.clone();
    s.exec_path = cli.kube_exec;
    s.tls = match &cli.wildcard_tls_secret {
        Some(secret) => kubernetes::Tls::WildcardSecret(secret.clone()),
        None => kubernetes::Tls::ClusterIssuer(cli.cluster_issuer.clone()),
    };
    Ok(s)
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Stop every box of the data dir, unmount its storage and release the loop device.
    Teardown,
    /// Manage API tokens limited to one project.
    Token {
        #[command(subcommand)]
        command: forkr_server::tokens::TokenCommand,
    },
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

/// A listen address, or `off`.
#[derive(Debug, Clone, Copy)]
struct Listen(Option<SocketAddr>);

fn parse_listen(s: &str) -> Result<Listen, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Listen(None));
    }
    s.parse()
        .map(|a| Listen(Some(a)))
        .map_err(|_| format!("invalid address {s:?}: use IP:PORT (e.g. 127.0.0.1:8443) or off"))
}

/// Public so that `src/bin/forkr-server-faults.rs` (the crash tests' build) runs this same program.
pub fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FORKR_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Teardown) => setup::teardown(&cli.data_dir),
        Some(Command::Token { command }) => {
            forkr_server::tokens::run(&cli.data_dir, command, &mut std::io::stdout().lock())
        }
        None | Some(Command::Serve) => {
            if cli.runtime == RuntimeKind::Local {
                // Before any thread: see `sealed` (CVE-2019-5736). The shim is found beside this
                // executable, which is a memfd after the re-exec, so its path is resolved now.
                let shim = match cli.shim.clone() {
                    Some(s) => s,
                    None => setup::default_shim()?,
                };
                forkr_server::sealed::reexec_from_sealed_copy(&[("FORKR_SHIM", shim.as_os_str())])?;
            }
            tokio::runtime::Builder::new_multi_thread()
                // Some runtime calls (cgroup teardown, waiting for a killed box) block briefly on a
                // worker; with one worker per core, a burst of deletes on 2 cores stalled every other
                // request. Extra workers keep the API responsive.
                .worker_threads(std::thread::available_parallelism().map_or(4, |n| n.get() * 2).max(4))
                .enable_all()
                .build()?
                .block_on(serve(cli))
        }
    }
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let kube = cli.runtime == RuntimeKind::Kubernetes;
    let domain = setup::resolve_domain(cli.domain.clone(), kube)?;
    let mut config = Config::new(&cli.data_dir);
    forkr_server::error::hide_server_paths(&cli.data_dir);
    config.domain = domain.clone();
    config.api_url = cli.api_url.clone();
    config.node_ip = cli.node_ip.clone();
    // On Kubernetes, pods have the cluster's network; the host bridge is for the local runtime.
    if !kube && !cli.subnet.eq_ignore_ascii_case("off") {
        let subnet = forkr_engine::engine::network::NetworkConfig::parse_subnet(&cli.subnet)?;
        config.network = Some(forkr_engine::engine::network::NetworkConfig { subnet, nat: cli.nat });
    }
    let choice = match cli.runtime {
        RuntimeKind::Local => setup::RuntimeChoice::Local {
            shim: match cli.shim.clone() {
                Some(s) => s,
                None => setup::default_shim()?,
            },
        },
        RuntimeKind::Kubernetes => setup::RuntimeChoice::Kubernetes(kube_settings(&cli)?),
    };
    let engine = setup::open_engine_with(config, cli.image_size, choice).await?;
    let token_path = engine.layout().token();
    let token = auth::load_or_create_token(&token_path)?;
    let tls = match (cli.tls_cert.clone(), cli.tls_key.clone()) {
        (Some(cert), Some(key)) => proxy::TlsSource::Files { cert, key },
        _ => proxy::TlsSource::SelfSigned { dir: cli.data_dir.join("proxy-tls"), domain: domain.clone() },
    };
    let proxy_config = proxy::ProxyConfig { https: cli.proxy_listen.0, http: cli.proxy_http_listen.0, tls };
    let proxied = proxy::spawn(engine.clone(), proxy_config).await?;
    let state = Arc::new(AppState { engine, token });
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    let addr = listener.local_addr()?;
    // Tests and scripts read these lines; the token file line comes last.
    println!("forkr-server listening on http://{addr}");
    if let Some(a) = proxied.https {
        println!("publish proxy listening on https://{a}");
    }
    if let Some(a) = proxied.http {
        println!("publish proxy listening on http://{a}");
    }
    println!("token file: {}", token_path.display());
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {},
        }
        tracing::info!("shutting down; boxes keep running");
    };
    // Graceful shutdown waits for open connections, and an attached console may never close:
    // give them a few seconds, then exit anyway (boxes keep running either way).
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signalled = stopping.clone();
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(async move {
        shutdown.await;
        signalled.notify_one();
    });
    tokio::select! {
        r = server => r?,
        _ = async { stopping.notified().await; tokio::time::sleep(std::time::Duration::from_secs(5)).await } => {
            tracing::warn!("connections still open after 5 s; exiting");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_exec_defaults_to_auto_and_reaches_the_driver_settings() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["forkr-server", "--runtime", "kubernetes", "--kube-node", "node-a"];
            args.extend(extra);
            Cli::try_parse_from(args)
        };
        let s = kube_settings(&parse(&[]).unwrap()).unwrap();
        assert_eq!(s.exec_path, kubernetes::node::ExecPath::Auto);
        let s = kube_settings(&parse(&["--kube-exec", "node"]).unwrap()).unwrap();
        assert_eq!(s.exec_path, kubernetes::node::ExecPath::Node);
        let s = kube_settings(&parse(&["--kube-exec", "api"]).unwrap()).unwrap();
        assert_eq!(s.exec_path, kubernetes::node::ExecPath::Api);
        let err = parse(&["--kube-exec", "kubelet"]).unwrap_err().to_string();
        assert!(err.contains("auto, node or api"), "{err}");
    }
}
