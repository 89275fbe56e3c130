//! `port list` / `port wait`: the TCP ports listening inside a box, read by the server from the
//! box's own network namespace (no process is started in the box).
//!
//! `port wait` is the readiness check for scripts: `4kr exec web --bg -- ./server && 4kr port wait
//! web 8080 && curl …`. It exits 0 once the port listens and 1 when the timeout passes first.

use std::time::Duration;

use clap::{Args, Subcommand};
use forkr_engine::api::{ListeningPort, PortWait};
use reqwest::Method;

use crate::cli::{JsonOpt, ProjectOpt};
use crate::client::Client;
use crate::ctx::{BoxId, Ctx};
use crate::error::{CliError, Result};
use crate::output;

#[derive(Debug, Args)]
pub struct PortArgs {
    #[command(subcommand)]
    pub command: PortCommand,
}

#[derive(Debug, Subcommand)]
pub enum PortCommand {
    /// List the TCP ports listening inside a box: PORT ADDRESS.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Wait until a TCP port listens inside a box (exit 1 on timeout).
    Wait(WaitArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,
    /// The TCP port.
    #[arg(value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// How long to wait: seconds (30), or with a unit (500ms, 30s, 2m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

/// The longest wait the server accepts.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// `30`, `30s`, `500ms`, `2m`, `1h` (and fractions such as `1.5s`).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}: use e.g. 30s, 500ms, 2m"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration {s:?}: the unit must be ms, s, m or h")),
    };
    let d = Duration::try_from_secs_f64(secs).map_err(|_| format!("invalid duration {s:?}"))?;
    if d > MAX_WAIT {
        return Err(format!("{s} is too long: wait at most 1h"));
    }
    Ok(d)
}

impl Client {
    fn ports_url(&self, id: &BoxId, tail: &str) -> String {
        self.api_url(&format!("/projects/{}/boxes/{}/ports{tail}", id.project, id.name))
    }

    pub async fn ports(&self, id: &BoxId) -> Result<Vec<ListeningPort>> {
        self.json(self.request(Method::GET, &self.ports_url(id, ""))?).await
    }

    pub async fn wait_port(&self, id: &BoxId, port: u16, timeout: Duration) -> Result<PortWait> {
        let rb = self
            .request(Method::GET, &self.ports_url(id, &format!("/{port}/wait")))?
            .query(&[("timeout_ms", timeout.as_millis() as u64)]);
        self.json(rb).await
    }
}

pub async fn run(ctx: &Ctx, a: PortArgs) -> Result<i32> {
    match a.command {
        PortCommand::List(a) => list(ctx, a).await,
        PortCommand::Wait(a) => wait(ctx, a).await,
    }
}

/// `port list`: PORT ADDRESS, one row per listening socket.
pub fn port_table(ports: &[ListeningPort]) -> String {
    let rows: Vec<Vec<String>> = ports.iter().map(|p| vec![p.port.to_string(), p.address.clone()]).collect();
    output::table(&["PORT", "ADDRESS"], &rows)
}

async fn list(ctx: &Ctx, a: ListArgs) -> Result<i32> {
    let id = ctx.resolve_named(&a.target, &a.project)?;
    let mut ports = ctx.client()?.ports(&id).await?;
    ports.sort_by(|x, y| (x.port, &x.address).cmp(&(y.port, &y.address)));
    if a.json.json {
        output::print_json(&ports)?;
    } else {
        print!("{}", port_table(&ports));
    }
    Ok(0)
}

async fn wait(ctx: &Ctx, a: WaitArgs) -> Result<i32> {
    let id = ctx.resolve_named(&a.target, &a.project)?;
    let w = ctx.client()?.wait_port(&id, a.port, a.timeout).await?;
    if a.json.json {
        output::print_json(&w)?;
        return Ok(if w.listening { 0 } else { 1 });
    }
    if !w.listening {
        let e = forkr_engine::Error::new(
            forkr_engine::ErrorKind::Conflict,
            "port_wait_timeout",
            format!("port {} is not listening in {id} after {:?}", a.port, a.timeout),
        );
        return Err(CliError::from(e).with_help(format!(
            "start the server in the box (`4kr exec {id} --bg -- …`), or wait longer with --timeout"
        )));
    }
    println!("{}: listening", a.port);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("2h").unwrap_err().contains("at most 1h"));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").unwrap_err().contains("unit"));
    }

    #[test]
    fn table() {
        let t = port_table(&[
            ListeningPort { port: 5432, address: "0.0.0.0".into() },
            ListeningPort { port: 8080, address: "::".into() },
        ]);
        assert_eq!(t, "PORT   ADDRESS\n5432   0.0.0.0\n8080   ::\n");
    }
}
