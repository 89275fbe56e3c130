//! Box networking in the engine: address allocation, the `/etc/hosts` of every box, the
//! published-host routing table the proxy reads, and listening ports.
//!
//! - A box gets an address from the server's subnet when it starts and gives it back when it
//!   stops (so, as document 002 says of pod IPs, the address may change on resume). Allocations
//!   live in the store: a restarted server keeps those of running boxes.
//! - Each box's `/etc/hosts` lists every box that has an address: boxes of its own project by bare
//!   name, every box as `name.project` and `name.project.forks` (document 004's search domains).
//!   Whenever a box starts or stops the server rewrites the hosts file of every box *in place*:
//!   it is bind-mounted by inode, so a rename would leave the box seeing the old file.
//! - The proxy's routing table (host → box address and port) is an immutable map swapped under
//!   a lock whenever publishes, addresses or ports change, so a request never touches SQLite.
//!
//! Rewrites are serialised by one lock and read the store inside it: whichever rewrite runs last
//! saw every change before it, so concurrent starts cannot leave a stale file behind.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use super::env::hosts_file;
use super::{Engine, key};
use crate::api::{ListeningPort, PortWait};
use crate::runtime::NetAttach;
use crate::store::{AddressRow, BoxRow};
use crate::{Error, Result};

/// The server's box network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Boxes get addresses from here; the first host address is the bridge's (the gateway).
    pub subnet: Ipv4Net,
    /// Outbound access: masquerade box traffic leaving the host (and give boxes a default route).
    pub nat: bool,
}

/// The default box subnet.
pub const DEFAULT_SUBNET: &str = "10.88.0.0/16";

impl NetworkConfig {
    /// Parses a subnet such as `10.88.0.0/16`: IPv4, between /8 and /30, written as its network
    /// address (so that a typo such as `10.88.1.0/16` is refused, not silently widened).
    pub fn parse_subnet(s: &str) -> Result<Ipv4Net> {
        let bad = |why: &str| {
            Error::bad_request(
                "invalid_subnet",
                format!("invalid box subnet {s:?}: {why} (give an IPv4 network such as {DEFAULT_SUBNET})"),
            )
        };
        let net: Ipv4Net = s.trim().parse().map_err(|_| bad("not an IPv4 network in CIDR form"))?;
        if !(8..=30).contains(&net.prefix_len()) {
            return Err(bad("the prefix length must be from /8 to /30"));
        }
        if net.addr() != net.network() {
            return Err(bad(&format!("host bits are set; did you mean {}?", net.trunc())));
        }
        Ok(net)
    }

    /// The bridge's address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()) + 1)
    }

    /// The addresses boxes may get: after the gateway, before the broadcast address.
    fn box_range(&self) -> (u32, u32) {
        (u32::from(self.gateway()) + 1, u32::from(self.subnet.broadcast()) - 1)
    }
}

/// Where a published host leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The box runs: send the request to `addr` (its address and `PORT`).
    Up { project: String, name: String, addr: SocketAddr },
    /// The box exists but is not running (or has no network).
    Down { project: String, name: String },
}

/// The engine's networking state.
#[derive(Debug, Default)]
pub(crate) struct NetState {
    routes: RwLock<Arc<HashMap<String, Route>>>,
    /// Serialises route rebuilds, each reading the store inside it: the last rebuild to run saw
    /// every change before it, so a slow rebuild can never install an older table over a newer.
    rebuild: Mutex<()>,
    /// Changes announced so far (bumped after each change is in the store).
    changes: AtomicU64,
    /// Serialises rewrites; holds the number of changes the last rewrite covered.
    rewrite: Mutex<u64>,
}

/// The names a box is known by, seen from a box of `viewer_project`.
fn names_for(viewer_project: &str, a: &AddressRow) -> String {
    let qualified = format!("{}.{} {}.{}.forks", a.name, a.project, a.name, a.project);
    if a.project == viewer_project { format!("{} {qualified}", a.name) } else { qualified }
}

/// Writes `content` into the existing file at `path` without replacing its inode (a box
/// bind-mounts the file itself). A missing file is skipped: that box is not running.
fn rewrite_in_place(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    let mut f = match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    f.write_all(content.as_bytes())?;
    f.set_len(content.len() as u64)
}

impl Engine {
    /// Gives the box an address (its current one if it still fits the subnet) and says how to
    /// wire it; `None` when the server runs without networking.
    pub(crate) fn attach_network(&self, row: &BoxRow) -> Result<Option<NetAttach>> {
        let Some(net) = &self.config.network else { return Ok(None) };
        let (first, last) = net.box_range();
        let address = self.store.allocate_address(&row.project, &row.name, first, last)?;
        Ok(Some(NetAttach {
            address: Ipv4Addr::from(address),
            prefix_len: net.subnet.prefix_len(),
            gateway: net.gateway(),
            default_route: net.nat,
        }))
    }

    /// Gives the box's address back (it stopped).
    pub(crate) fn detach_network(&self, project: &str, name: &str) -> Result<()> {
        self.store.release_address(project, name).map(drop)
    }

    /// The `/etc/hosts` of box `name` of `project`, from the current allocations.
    pub(crate) fn hosts_for(&self, project: &str, name: &str) -> Result<String> {
        let all = self.store.list_addresses()?;
        Ok(render_hosts(project, name, &all))
    }

    /// Rewrites every box's `/etc/hosts` and rebuilds the proxy's routes. Called after a box
    /// starts, stops or is deleted; failures are logged, never fail the operation that caused
    /// them (the box itself is fine, and the next change writes everything again). Runs inline:
    /// small writes to files in the data dir, about 10 µs per running box.
    ///
    /// Concurrent callers coalesce: a caller whose change a rewrite that started after it already
    /// covered returns at once, so a burst of N parallel starts costs far fewer than N rewrites,
    /// while every caller still returns only once the files include its change.
    pub(crate) fn network_changed(&self) {
        let mine = self.net.changes.fetch_add(1, Ordering::SeqCst) + 1;
        let mut covered = self.net.rewrite.lock().unwrap_or_else(|p| p.into_inner());
        if *covered >= mine {
            return;
        }
        // Every change counted up to here is in the store already (counted after it was made).
        let target = self.net.changes.load(Ordering::SeqCst);
        let all = match self.store.list_addresses() {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "could not read box addresses to update /etc/hosts");
                return;
            }
        };
        for a in &all {
            let path = self.layout.run_dir(&a.project, &a.name).join("hosts");
            if let Err(e) = rewrite_in_place(&path, &render_hosts(&a.project, &a.name, &all)) {
                tracing::warn!(project = %a.project, name = %a.name, error = %e, "could not update /etc/hosts");
            }
        }
        if let Err(e) = self.refresh_routes() {
            tracing::warn!(error = %e, "could not rebuild the proxy's routes");
        }
        *covered = target;
    }

    /// Rebuilds the proxy's routing table from the store: every box at its own URL host
    /// (`{box}.{domain}`, `{box}.{project}.{domain}`, document 001), then the published hosts,
    /// which win where the two meet.
    pub(crate) fn refresh_routes(&self) -> Result<()> {
        let _g = self.net.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        let mut map = HashMap::new();
        let addresses: HashMap<(String, String), u32> =
            self.store.list_addresses()?.into_iter().map(|a| ((a.project, a.name), a.address)).collect();
        for (project, name, port) in self.store.box_ports()? {
            let url = self.box_url(&project, &name);
            let host = normalise_host_header(url.strip_prefix("https://").unwrap_or(&url));
            let route = match addresses.get(&(project.clone(), name.clone())) {
                Some(a) if self.config.network.is_some() => {
                    Route::Up { addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(*a)), port), project, name }
                }
                _ => Route::Down { project, name },
            };
            map.insert(host, route);
        }
        for r in self.store.publish_routes()? {
            let route = match r.address {
                Some(a) if self.config.network.is_some() => Route::Up {
                    project: r.project,
                    name: r.name,
                    addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), r.port),
                },
                _ => Route::Down { project: r.project, name: r.name },
            };
            map.insert(r.host, route);
        }
        *self.net.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(map);
        Ok(())
    }

    /// Where a request for `host` (a `Host` header: any case, optional port, optional trailing
    /// dot) goes; `None` for a host nobody publishes.
    pub fn route(&self, host: &str) -> Option<Route> {
        let host = normalise_host_header(host);
        let routes = self.net.routes.read().unwrap_or_else(|p| p.into_inner()).clone();
        routes.get(&host).cloned()
    }

    /// `GET …/ports`: the TCP ports listening inside a running box.
    pub async fn listening_ports(&self, project: &str, name: &str) -> Result<Vec<ListeningPort>> {
        let row = self.require_box(project, name)?;
        let run = self.running(&row).ok_or_else(|| not_running(project, name))?;
        let found = self.runtime.listening(&key(project, name), &run).await?;
        Ok(found
            .into_iter()
            .map(|l| ListeningPort { port: l.port, address: l.address.to_string() })
            .collect())
    }

    /// `GET …/ports/{port}/wait`: polls until `port` listens inside the box or `timeout` passes.
    pub async fn wait_port(
        &self,
        project: &str,
        name: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<PortWait> {
        let start = Instant::now();
        loop {
            let row = self.require_box(project, name)?;
            let run = self.running(&row).ok_or_else(|| not_running(project, name))?;
            let listening =
                self.runtime.listening(&key(project, name), &run).await?.iter().any(|l| l.port == port);
            let waited = start.elapsed();
            if listening || waited >= timeout {
                return Ok(PortWait { port, listening, waited_ms: waited.as_millis() as u64 });
            }
            tokio::time::sleep(PORT_POLL.min(timeout - waited)).await;
        }
    }
}

/// How often `port wait` looks.
const PORT_POLL: Duration = Duration::from_millis(20);

fn not_running(project: &str, name: &str) -> Error {
    Error::conflict(
        "box_not_running",
        format!("box {name:?} of project {project:?} is not running; resume it first"),
    )
}

/// Lower-case, no port, no trailing dot.
pub(crate) fn normalise_host_header(host: &str) -> String {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        // An IPv6 literal: `[addr]` or `[addr]:port`.
        let addr = rest.split_once(']').map_or(rest, |(a, _)| a);
        return format!("[{}]", addr.to_ascii_lowercase());
    }
    let no_port = match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    no_port.trim_end_matches('.').to_ascii_lowercase()
}

fn render_hosts(project: &str, name: &str, all: &[AddressRow]) -> String {
    let peers: Vec<(String, String)> =
        all.iter().map(|a| (Ipv4Addr::from(a.address).to_string(), names_for(project, a))).collect();
    hosts_file(project, name, &peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_checked() {
        let n = NetworkConfig { subnet: NetworkConfig::parse_subnet("10.88.0.0/16").unwrap(), nat: false };
        assert_eq!(n.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        assert_eq!(
            n.box_range(),
            (u32::from(Ipv4Addr::new(10, 88, 0, 2)), u32::from(Ipv4Addr::new(10, 88, 255, 254)))
        );
        let n = NetworkConfig { subnet: NetworkConfig::parse_subnet("192.168.5.0/30").unwrap(), nat: true };
        assert_eq!(n.box_range().0, n.box_range().1, "a /30 has room for one box");
        for bad in ["10.88.1.0/16", "10.88.0.0", "10.0.0.0/31", "10.0.0.0/7", "fd00::/64", "x"] {
            let e = NetworkConfig::parse_subnet(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_subnet", "{bad}");
        }
        assert!(NetworkConfig::parse_subnet("10.88.1.0/16").unwrap_err().message().contains("10.88.0.0/16"));
    }

    #[test]
    fn hosts_files_name_peers_by_project() {
        let a = |p: &str, n: &str, last: u8| AddressRow {
            project: p.into(),
            name: n.into(),
            address: u32::from(Ipv4Addr::new(10, 88, 0, last)),
        };
        let all = [a("shop", "db", 2), a("shop", "web", 3), a("other", "db", 4)];
        let h = render_hosts("shop", "web", &all);
        assert!(h.contains("127.0.1.1\tweb.shop web\n"), "{h}");
        assert!(h.contains("10.88.0.2\tdb db.shop db.shop.forks\n"), "{h}");
        assert!(h.contains("10.88.0.3\tweb web.shop web.shop.forks\n"), "{h}");
        assert!(h.contains("10.88.0.4\tdb.other db.other.forks\n"), "{h}");
        let h = render_hosts("other", "db", &all);
        assert!(h.contains("10.88.0.2\tdb.shop db.shop.forks\n"), "{h}");
        assert!(h.contains("10.88.0.4\tdb db.other db.other.forks\n"), "{h}");
    }

    #[test]
    fn host_headers_are_normalised() {
        assert_eq!(normalise_host_header("Web.Example.COM:8443"), "web.example.com");
        assert_eq!(normalise_host_header("web.example.com."), "web.example.com");
        assert_eq!(normalise_host_header("localhost"), "localhost");
        assert_eq!(normalise_host_header("[::1]:80"), "[::1]");
    }

    #[test]
    fn rewrites_keep_the_inode() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts");
        std::fs::write(&p, "a much longer first version of the file\n").unwrap();
        let ino = std::fs::metadata(&p).unwrap().ino();
        rewrite_in_place(&p, "short\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "short\n");
        assert_eq!(std::fs::metadata(&p).unwrap().ino(), ino);
        rewrite_in_place(&dir.path().join("missing"), "x").unwrap();
        assert!(!dir.path().join("missing").exists(), "a stopped box's file is not created");
    }
}
