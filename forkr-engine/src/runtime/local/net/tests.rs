//! Netlink and iptables against the real kernel, each test inside network namespaces it creates
//! (on its own threads), so nothing reaches the host's network and everything disappears with the
//! threads, also when an assertion fails. Needs root.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;

use super::*;

/// Runs `f` on a new thread in a new network namespace (with `lo` up); the namespace dies with
/// the thread.
fn in_fresh_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET) needs root");
            crate::runtime::local::sys::loopback_up().unwrap();
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn net(instance: &str, subnet: &str, nat: bool) -> HostNetwork {
    HostNetwork::new(instance, subnet.parse().unwrap(), nat).unwrap()
}

fn iptables_save(table: &str) -> String {
    let out = Command::new("iptables").args(["-t", table, "-S"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn names_fit_the_kernel_limit_and_are_distinct() {
    let instance = "10dccaf0f9be";
    assert_eq!(bridge_name(instance), "fk10dccaf0f9be");
    let a = host_veth_name(instance, Ipv4Addr::new(10, 88, 0, 2));
    let b = host_veth_name(instance, Ipv4Addr::new(10, 88, 0, 3));
    let c = host_veth_name("0123456789ab", Ipv4Addr::new(10, 88, 0, 2));
    assert!(a.len() <= IF_NAME_MAX && a.starts_with("fkv"), "{a}");
    assert!(a != b && a != c);
    assert!(bridge_name("a-very-long-instance-name").len() <= IF_NAME_MAX);
}

#[test]
fn subnets_too_small_for_boxes_are_refused() {
    assert_eq!(net("i", "10.1.0.0/30", false).gateway, Ipv4Addr::new(10, 1, 0, 1));
    let e = HostNetwork::new("i", "10.1.0.0/31".parse().unwrap(), false).unwrap_err();
    assert_eq!(e.code(), "invalid_subnet");
}

#[test]
fn proc_net_tcp_tables_parse() {
    let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
   1: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n\
   2: 0200580A:1F90 0300580A:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1\n";
    let got = parse_proc_net_tcp(v4);
    assert_eq!(
        got,
        vec![
            crate::runtime::Listening { address: "0.0.0.0".parse().unwrap(), port: 8080 },
            crate::runtime::Listening { address: "127.0.0.1".parse().unwrap(), port: 5432 },
        ]
    );
    let v6 = "  sl  local_address                         remote_address                        st\n\
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 0\n\
   1: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 0\n";
    let got = parse_proc_net_tcp(v6);
    assert_eq!(got[0].address, "::1".parse::<IpAddr>().unwrap());
    assert_eq!(got[0].port, 22);
    assert_eq!(got[1].address, "::".parse::<IpAddr>().unwrap());
    assert!(parse_proc_net_tcp("header\ngarbage line\n").is_empty());
}

#[test]
fn listening_sockets_are_found_through_proc() {
    in_fresh_netns(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // /proc/<pid>/net follows the main thread's namespace; thread-self follows ours.
        let text = std::fs::read_to_string("/proc/thread-self/net/tcp").unwrap();
        let found = parse_proc_net_tcp(&text);
        assert_eq!(found, vec![crate::runtime::Listening { address: "127.0.0.1".parse().unwrap(), port }]);
    });
}

#[test]
fn bridge_setup_is_idempotent_and_follows_the_subnet() {
    in_fresh_netns(|| {
        let n = net("t0bridge", "10.77.0.0/24", false);
        setup_host("t0bridge", &n).unwrap();
        setup_host("t0bridge", &n).unwrap();
        let mut nl = Rtnl::open().unwrap();
        let index = nl.link_index(&n.bridge).unwrap().expect("bridge created");
        assert_eq!(nl.addresses(index).unwrap(), vec![(Ipv4Addr::new(10, 77, 0, 1), 24)]);
        // A new subnet replaces the address, it is not added beside it.
        let n2 = net("t0bridge", "10.78.0.0/16", false);
        setup_host("t0bridge", &n2).unwrap();
        assert_eq!(nl.addresses(index).unwrap(), vec![(Ipv4Addr::new(10, 78, 0, 1), 16)]);
        remove_host("t0bridge").unwrap();
        assert_eq!(nl.link_index(&n.bridge).unwrap(), None);
        remove_host("t0bridge").unwrap();
    });
}

#[test]
fn nat_rules_follow_the_setting_and_teardown_removes_them() {
    in_fresh_netns(|| {
        let marker = "forkr:t0nat";
        setup_host("t0nat", &net("t0nat", "10.79.0.0/24", true)).unwrap();
        let nat = iptables_save("nat");
        assert!(nat.contains("-s 10.79.0.0/24 ! -o fkt0nat") && nat.contains("MASQUERADE"), "{nat}");
        assert_eq!(iptables_save("filter").matches(marker).count(), 3);
        assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap().trim(), "1");
        // Turning NAT off keeps only the intra-bridge rule.
        setup_host("t0nat", &net("t0nat", "10.79.0.0/24", false)).unwrap();
        assert!(!iptables_save("nat").contains(marker));
        assert_eq!(iptables_save("filter").matches(marker).count(), 1);
        remove_host("t0nat").unwrap();
        assert!(!iptables_save("filter").contains(marker));
    });
}

/// The shim's half, on threads: a "box" namespace attached to the bridge of a "host" namespace,
/// then a real TCP exchange between them, box to host and host to box.
#[test]
fn a_box_namespace_gets_a_working_veth() {
    in_fresh_netns(|| {
        let n = net("t0veth", "10.80.0.0/24", true);
        setup_host("t0veth", &n).unwrap();
        let host_listener = TcpListener::bind("10.80.0.1:0").unwrap();
        let host_port = host_listener.local_addr().unwrap().port();
        let address = Ipv4Addr::new(10, 80, 0, 9);
        let box_net = BoxNet {
            bridge: n.bridge.clone(),
            host_if: host_veth_name("t0veth", address),
            address,
            prefix_len: 24,
            gateway: n.gateway,
            default_route: true,
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let box_thread = s.spawn(move || {
                let mut host = Rtnl::open().unwrap();
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                attach_box(&mut host, &box_net).unwrap();
                let box_listener = TcpListener::bind((address, 0)).unwrap();
                ready_tx.send(box_listener.local_addr().unwrap().port()).unwrap();
                let (mut c, _) = box_listener.accept().unwrap();
                c.write_all(b"from the box").unwrap();
                drop(c);
                // Outbound to the host through the bridge.
                let mut up =
                    TcpStream::connect_timeout(&(n.gateway, host_port).into(), Duration::from_secs(5))
                        .unwrap();
                up.write_all(b"hello host").unwrap();
                drop(up);
                let _ = done_rx.recv();
            });
            let box_port = ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            let mut c =
                TcpStream::connect_timeout(&(address, box_port).into(), Duration::from_secs(5)).unwrap();
            let mut got = String::new();
            c.read_to_string(&mut got).unwrap();
            assert_eq!(got, "from the box");
            let (mut inbound, peer) = host_listener.accept().unwrap();
            assert_eq!(peer.ip(), IpAddr::V4(address));
            let mut got = String::new();
            inbound.read_to_string(&mut got).unwrap();
            assert_eq!(got, "hello host");
            let mut nl = Rtnl::open().unwrap();
            let veth = nl.link_index(&host_veth_name("t0veth", address)).unwrap();
            assert!(veth.is_some(), "host end of the veth is on the host");
            assert_eq!(nl.link_index(BOX_IF).unwrap(), None, "the box end never shows on the host");
            done_tx.send(()).unwrap();
            box_thread.join().unwrap();
        });
        remove_host("t0veth").unwrap();
        let mut nl = Rtnl::open().unwrap();
        assert_eq!(nl.link_index(&host_veth_name("t0veth", address)).unwrap(), None);
    });
}
