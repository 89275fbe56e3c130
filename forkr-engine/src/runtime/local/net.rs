//! Box networking on this machine: one host bridge per server instance, one veth pair per box.
//!
//! ```text
//!   host netns                              box netns (one per box)
//!   fk<instance> 10.88.0.1/16  ── fkv<hash> ═══ eth0 10.88.0.7/16, default via 10.88.0.1 (NAT on)
//!        (bridge)                (veth, host end)   (veth, box end)
//! ```
//!
//! - [`setup_host`] (server start) creates the bridge if needed, gives it the gateway address,
//!   brings it up and installs the iptables rules (intra-bridge forwarding always; MASQUERADE and
//!   forwarding in and out of the bridge when outbound NAT is on). Idempotent: a restart with a
//!   changed subnet or NAT setting converges.
//! - [`attach_box`] runs in `forkr-shim` right after it unshared the box's network namespace: it
//!   creates the veth pair with the box end *directly* inside the new namespace (so it never
//!   appears on the host under the name `eth0`), enslaves the host end to the bridge, and then
//!   configures the box end from inside. Four netlink round trips; no `ip` processes.
//! - Nothing removes a box's veth: it dies with the box's network namespace when PID 1 exits.
//! - [`remove_host`] (`forkr-server teardown`, test clean-up) deletes the bridge, any veth still
//!   on it, and this instance's iptables rules.
//!
//! Netlink is spoken through `netlink-packet-route` (message types) over a plain blocking
//! `netlink-sys` socket: the shim is single-threaded and has no async runtime, and the server calls
//! in here from blocking tasks.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::process::Command;

use ipnet::Ipv4Net;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Name of the box end of the veth pair, inside the box.
pub const BOX_IF: &str = "eth0";

/// The kernel's limit on interface names, without the NUL (`IFNAMSIZ - 1`).
const IF_NAME_MAX: usize = 15;

/// The host bridge of a server instance: `fk` + the instance's 12 hex digits (14 characters, within
/// the kernel's 15). Several servers on one machine each get their own bridge.
pub fn bridge_name(instance: &str) -> String {
    let mut name = format!("fk{instance}");
    name.truncate(IF_NAME_MAX);
    name
}

/// The host end of a box's veth pair: `fkv` + 12 hex digits of a hash of the instance and the
/// box's address. Addresses are unique among an instance's running boxes, so the names are too,
/// and they are stable for a box as long as its address is.
pub fn host_veth_name(instance: &str, address: Ipv4Addr) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in instance.bytes().chain(address.octets()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fkv{:012x}", hash & 0xffff_ffff_ffff)
}

/// How a box is wired, as the shim receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BoxNet {
    pub bridge: String,
    pub host_if: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub default_route: bool,
}

/// A blocking rtnetlink socket, bound to the network namespace it was opened in (for its whole
/// life, whatever namespace the process moves to later).
pub(crate) struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// An error answer of the kernel, with what was being done.
#[derive(Debug)]
struct KernelError {
    errno: i32,
    what: String,
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, io::Error::from_raw_os_error(self.errno))
    }
}

impl std::error::Error for KernelError {}

fn nl_error(what: &str, code: i32) -> io::Error {
    let errno = code.abs();
    io::Error::new(io::Error::from_raw_os_error(errno).kind(), KernelError { errno, what: what.to_owned() })
}

/// The errno of a failed netlink call.
fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| e.get_ref()?.downcast_ref::<KernelError>().map(|k| k.errno))
}

impl Rtnl {
    pub fn open() -> io::Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl { sock, seq: 0, buf: Vec::with_capacity(64 * 1024) })
    }

    /// Sends one request and collects the answers until the ACK (or the end of a dump).
    fn call(
        &mut self,
        what: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.sock.send(&out, 0)?;

        let mut answers = Vec::new();
        loop {
            self.buf.clear();
            let n = self.sock.recv(&mut self.buf, 0)?;
            let data = &self.buf[..n.min(self.buf.len())];
            let mut offset = 0;
            while offset < data.len() {
                let len = NetlinkBuffer::new_checked(&data[offset..])
                    .map_err(|e| io::Error::other(format!("{what}: malformed netlink answer: {e}")))?
                    .length() as usize;
                if len == 0 {
                    break;
                }
                let end = (offset + len).min(data.len());
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..end])
                    .map_err(|e| io::Error::other(format!("{what}: malformed netlink answer: {e}")))?;
                offset += len.next_multiple_of(4);
                if msg.header.sequence_number != seq {
                    continue; // a late answer to an earlier request
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers),
                            Some(code) => Err(nl_error(what, code.get())),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(m) => answers.push(m),
                    _ => {}
                }
            }
        }
    }

    /// The index of interface `name`, or `None` when there is none.
    pub fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.call(&format!("looking up interface {name}"), RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(answers) => Ok(answers.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every interface of the namespace.
    fn links(&mut self) -> io::Result<Vec<LinkMessage>> {
        let answers = self.call(
            "listing interfaces",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .collect())
    }

    fn create_bridge(&mut self, name: &str) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
        self.call(
            &format!("creating bridge {name}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Creates a veth pair: `host_if` (up, enslaved to `bridge_index`) here, and `peer_if` in the
    /// network namespace `netns`.
    fn create_veth(
        &mut self,
        host_if: &str,
        bridge_index: u32,
        peer_if: &str,
        netns: BorrowedFd<'_>,
    ) -> io::Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes.push(LinkAttribute::IfName(peer_if.to_owned()));
        peer.attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(host_if.to_owned()));
        msg.attributes.push(LinkAttribute::Controller(bridge_index));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.call(
            &format!("creating the veth pair {host_if}/{peer_if}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    fn delete_link(&mut self, index: u32, name: &str) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.call(&format!("deleting interface {name}"), RouteNetlinkMessage::DelLink(msg), 0) {
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
            other => other.map(drop),
        }
    }

    fn set_up(&mut self, index: u32, name: &str) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.call(&format!("bringing up {name}"), RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    fn address_message(index: u32, address: Ipv4Addr, prefix_len: u8) -> AddressMessage {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix_len;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(IpAddr::V4(address)));
        msg.attributes.push(AddressAttribute::Address(IpAddr::V4(address)));
        if prefix_len < 31 {
            let net = Ipv4Net::new(address, prefix_len).map(|n| n.broadcast()).unwrap_or(address);
            msg.attributes.push(AddressAttribute::Broadcast(net));
        }
        msg
    }

    fn add_address(&mut self, index: u32, name: &str, address: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        self.call(
            &format!("adding {address}/{prefix_len} to {name}"),
            RouteNetlinkMessage::NewAddress(Self::address_message(index, address, prefix_len)),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// The IPv4 addresses of interface `index`, with prefix lengths.
    fn addresses(&mut self, index: u32) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Inet;
        let answers = self.call("listing addresses", RouteNetlinkMessage::GetAddress(req), NLM_F_DUMP)?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Local(IpAddr::V4(ip)) => Some((*ip, a.header.prefix_len)),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    fn delete_address(
        &mut self,
        index: u32,
        name: &str,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> io::Result<()> {
        self.call(
            &format!("removing {address}/{prefix_len} from {name}"),
            RouteNetlinkMessage::DelAddress(Self::address_message(index, address, prefix_len)),
            0,
        )
        .map(drop)
    }

    fn add_default_route(&mut self, gateway: Ipv4Addr, index: u32) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        msg.attributes.push(RouteAttribute::Oif(index));
        self.call(
            &format!("adding the default route via {gateway}"),
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }
}

/// Wires a box into the bridge. Called by the shim once it has unshared the box's network
/// namespace: `host` is an rtnetlink socket it opened *before* unsharing, so it still speaks to
/// the host namespace, while the calling thread is already in the box's.
pub(crate) fn attach_box(host: &mut Rtnl, net: &BoxNet) -> std::result::Result<(), String> {
    let bridge = host.link_index(&net.bridge).map_err(|e| e.to_string())?.ok_or_else(|| {
        format!("the host bridge {} is missing; restart forkr-server to recreate it", net.bridge)
    })?;
    let me = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(|e| format!("opening the box's network namespace: {e}"))?;
    let me = me.as_fd();
    if let Err(e) = host.create_veth(&net.host_if, bridge, BOX_IF, me) {
        if errno(&e) != Some(libc::EEXIST) {
            return Err(e.to_string());
        }
        // A veth left by an earlier run of this address whose namespace the kernel has not
        // finished destroying yet: remove it and try once more.
        if let Some(stale) = host.link_index(&net.host_if).map_err(|e| e.to_string())? {
            host.delete_link(stale, &net.host_if).map_err(|e| e.to_string())?;
        }
        host.create_veth(&net.host_if, bridge, BOX_IF, me).map_err(|e| e.to_string())?;
    }
    let mut inside = Rtnl::open().map_err(|e| format!("opening netlink in the box: {e}"))?;
    let index = inside
        .link_index(BOX_IF)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{BOX_IF} did not appear in the box after it was created"))?;
    inside.add_address(index, BOX_IF, net.address, net.prefix_len).map_err(|e| e.to_string())?;
    inside.set_up(index, BOX_IF).map_err(|e| e.to_string())?;
    if net.default_route {
        inside.add_default_route(net.gateway, index).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The host side of an instance's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNetwork {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub nat: bool,
}

impl HostNetwork {
    /// The host network of `instance` on `subnet`; the gateway (the bridge's address) is the
    /// subnet's first host address.
    pub fn new(instance: &str, subnet: Ipv4Net, nat: bool) -> Result<HostNetwork> {
        let gateway = subnet.hosts().next().filter(|_| subnet.prefix_len() <= 30).ok_or_else(|| {
            Error::bad_request(
                "invalid_subnet",
                format!("subnet {subnet} is too small for boxes: use a /30 or larger, e.g. 10.88.0.0/16"),
            )
        })?;
        Ok(HostNetwork { bridge: bridge_name(instance), subnet, gateway, nat })
    }
}

fn io_err(e: io::Error) -> Error {
    Error::io("configuring the box network", e)
}

/// The comment that marks this instance's iptables rules, so teardown finds exactly them.
fn rule_comment(instance: &str) -> String {
    format!("forkr:{instance}")
}

/// The iptables rules of an instance: `(table, chain, rule)`.
fn iptables_rules(instance: &str, net: &HostNetwork) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let comment = rule_comment(instance);
    let tail = |mut v: Vec<String>| {
        v.extend(["-m", "comment", "--comment", &comment].map(String::from));
        v
    };
    let s = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let br = net.bridge.as_str();
    // Box-to-box traffic crosses the bridge; with br_netfilter loaded (Docker hosts) it also crosses
    // the FORWARD chain, whose policy may be DROP.
    let mut rules = vec![("filter", "FORWARD", tail(s(&["-i", br, "-o", br, "-j", "ACCEPT"])))];
    if net.nat {
        let subnet = net.subnet.to_string();
        rules.push(("filter", "FORWARD", tail(s(&["-i", br, "!", "-o", br, "-j", "ACCEPT"]))));
        rules.push((
            "filter",
            "FORWARD",
            tail(s(&["-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"])),
        ));
        rules.push(("nat", "POSTROUTING", tail(s(&["-s", &subnet, "!", "-o", br, "-j", "MASQUERADE"]))));
    }
    rules
}

fn iptables(args: &[String]) -> io::Result<std::process::Output> {
    Command::new("iptables").args(["-w", "5"]).args(args).output()
}

/// Deletes every iptables rule carrying this instance's comment (in any chain it may be in).
fn remove_rules(instance: &str) -> Result<()> {
    let marker = format!("--comment {}", rule_comment(instance));
    for (table, chain) in [("filter", "FORWARD"), ("nat", "POSTROUTING")] {
        let listed = match iptables(&["-t".into(), table.into(), "-S".into(), chain.into()]) {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
            Ok(_) => continue, // no such table in this kernel: nothing of ours is there
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()), // no iptables at all
            Err(e) => return Err(Error::io("running iptables", e)),
        };
        // iptables-nft quotes the comment, iptables-legacy does not.
        for line in listed.lines().filter(|l| l.replace('"', "").contains(&marker)) {
            let Some(rule) = line.strip_prefix("-A ") else { continue };
            let mut args: Vec<String> = vec!["-t".into(), table.into(), "-D".into()];
            args.extend(rule.split_whitespace().map(|w| w.trim_matches('"').to_owned()));
            let out = iptables(&args).map_err(|e| Error::io("running iptables", e))?;
            if !out.status.success() {
                return Err(Error::internal(format!(
                    "removing the iptables rule `{line}` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
    }
    Ok(())
}

fn install_rules(instance: &str, net: &HostNetwork) -> Result<()> {
    for (table, chain, rule) in iptables_rules(instance, net) {
        let with = |op: &str| {
            let mut a: Vec<String> = vec!["-t".into(), table.into(), op.into(), chain.into()];
            a.extend(rule.iter().cloned());
            a
        };
        let present = iptables(&with("-C")).map(|o| o.status.success());
        match present {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && !net.nat => {
                tracing::warn!("iptables is not installed; box-to-box traffic relies on the FORWARD policy");
                return Ok(());
            }
            Err(e) => {
                return Err(Error::io(
                    "running iptables (outbound NAT needs it: install iptables or start with --nat off)",
                    e,
                ));
            }
        }
        let out = iptables(&with("-I")).map_err(|e| Error::io("running iptables", e))?;
        if !out.status.success() {
            return Err(Error::internal(format!(
                "adding the iptables rule `-t {table} -I {chain} {}` failed: {}",
                rule.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

/// Makes the host side of `instance`'s network match `net`: the bridge with exactly the gateway
/// address, up; the iptables rules for the NAT setting; IPv4 forwarding when NAT is on (left on
/// at teardown: other software on the host may rely on it). Idempotent.
pub fn setup_host(instance: &str, net: &HostNetwork) -> Result<()> {
    let mut nl = Rtnl::open().map_err(io_err)?;
    let index = match nl.link_index(&net.bridge).map_err(io_err)? {
        Some(i) => i,
        None => {
            nl.create_bridge(&net.bridge).map_err(io_err)?;
            nl.link_index(&net.bridge).map_err(io_err)?.ok_or_else(|| {
                Error::internal(format!("bridge {} vanished right after it was created", net.bridge))
            })?
        }
    };
    let prefix = net.subnet.prefix_len();
    for (addr, len) in nl.addresses(index).map_err(io_err)? {
        if (addr, len) != (net.gateway, prefix) {
            nl.delete_address(index, &net.bridge, addr, len).map_err(io_err)?;
        }
    }
    nl.add_address(index, &net.bridge, net.gateway, prefix).map_err(io_err)?;
    nl.set_up(index, &net.bridge).map_err(io_err)?;
    // A changed NAT setting or subnet replaces the old rules.
    remove_rules(instance)?;
    install_rules(instance, net)?;
    if net.nat {
        let path = "/proc/sys/net/ipv4/ip_forward";
        if std::fs::read_to_string(path).map(|v| v.trim() != "1").unwrap_or(true) {
            std::fs::write(path, "1")
                .map_err(|e| Error::io("enabling IPv4 forwarding for outbound NAT", e))?;
        }
    }
    Ok(())
}

/// Removes the host side of `instance`'s network: veths still on the bridge, the bridge and the
/// iptables rules. Idempotent; fine to call when networking was never set up.
pub fn remove_host(instance: &str) -> Result<()> {
    let bridge = bridge_name(instance);
    let mut nl = Rtnl::open().map_err(io_err)?;
    if let Some(index) = nl.link_index(&bridge).map_err(io_err)? {
        for link in nl.links().map_err(io_err)? {
            let on_bridge =
                link.attributes.iter().any(|a| matches!(a, LinkAttribute::Controller(c) if *c == index));
            if on_bridge {
                let name = link
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                nl.delete_link(link.header.index, &name).map_err(io_err)?;
            }
        }
        nl.delete_link(index, &bridge).map_err(io_err)?;
    }
    remove_rules(instance)
}

/// The TCP sockets in state LISTEN in the network namespace of process `pid`, from its
/// `/proc/<pid>/net/tcp` and `tcp6`: no process has to run inside the box to find them.
pub(crate) fn listening_tcp(pid: u32) -> io::Result<Vec<crate::runtime::Listening>> {
    let mut found = Vec::new();
    for file in ["tcp", "tcp6"] {
        match std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) {
            Ok(text) => found.extend(parse_proc_net_tcp(&text)),
            // No IPv6 in this kernel.
            Err(e) if file == "tcp6" && e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// TCP state `LISTEN` in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// Parses the listening sockets out of a `/proc/net/tcp` or `/proc/net/tcp6` table. Addresses are
/// hex words in host byte order (little-endian here); ports are big-endian hex.
pub(crate) fn parse_proc_net_tcp(text: &str) -> Vec<crate::runtime::Listening> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let local = cols.nth(1)?;
            let state = cols.nth(1)?;
            if state != TCP_LISTEN {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let words: Vec<u32> = (0..addr.len() / 8)
                .map(|i| addr.get(i * 8..i * 8 + 8).and_then(|w| u32::from_str_radix(w, 16).ok()))
                .collect::<Option<_>>()?;
            let address = match words.as_slice() {
                [w] => IpAddr::V4(Ipv4Addr::from(w.to_le_bytes())),
                [a, b, c, d] => {
                    let mut bytes = [0u8; 16];
                    for (i, w) in [a, b, c, d].into_iter().enumerate() {
                        bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
                    }
                    IpAddr::V6(std::net::Ipv6Addr::from(bytes))
                }
                _ => return None,
            };
            Some(crate::runtime::Listening { address, port })
        })
        .collect()
}

#[cfg(test)]
mod tests;
