//! Issue 5 end to end: box-to-box networking, publishing through the built-in proxy, ports and
//! memory limits, with the real `forkr-server` and `4kr`.
//!
//! Every server here runs in a network namespace the test thread created (see
//! `forkr_tests::isolate_network`): its bridge, veths, NAT rules and proxy ports never touch the
//! host's network, and the kernel removes them with the thread. The tests also check that
//! `forkr-server teardown` removes them itself.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use forkr_tests::Server;

/// `curl` from the test's namespace: (HTTP status, body). Status 0: no answer at all.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// A plain-HTTP request through the proxy with `Host: host`.
fn via_proxy(s: &Server, host: &str, path: &str) -> (u16, String) {
    curl(&["-H", &format!("Host: {host}"), &format!("http://{}{path}", s.proxy_http)])
}

/// The same over TLS, with SNI and Host set to `host` (the certificate is self-signed: `-k`).
fn via_proxy_tls(s: &Server, host: &str, path: &str) -> (u16, String) {
    let port = s.proxy_https.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
    curl(&["-k", "--resolve", &format!("{host}:{port}:127.0.0.1"), &format!("https://{host}:{port}{path}")])
}

/// Starts busybox httpd in a box, serving `text` as `/index.html` on `port`, and waits for it.
fn serve(s: &Server, project: &str, name: &str, port: u16, text: &str) {
    let dir = format!("/srv/www{port}");
    s.ok(&[
        "exec",
        "-p",
        project,
        name,
        "--",
        "sh",
        "-c",
        &format!("mkdir -p {dir} && echo '{text}' > {dir}/index.html"),
    ]);
    s.ok(&["exec", "-p", project, name, "--bg", "--", "httpd", "-f", "-p", &port.to_string(), "-h", &dir]);
    s.ok(&["port", "wait", "-p", project, name, &port.to_string(), "--timeout", "10s"]);
}

#[test]
fn boxes_reach_each_other_by_name_on_any_port() {
    let s = Server::start();
    s.ok(&["create", "db", "-p", "shop"]);
    s.ok(&["create", "web", "-p", "shop"]);
    s.ok(&["create", "reporting", "-p", "other"]);

    // Same project, bare name, a TCP port nothing published.
    // The listener's stdin stays open: with an empty stdin busybox nc half-closes the connection
    // at once, and a client that sees that EOF before reading its own stdin sends nothing.
    s.ok(&["exec", "-p", "shop", "db", "--bg", "--", "sh", "-c", "sleep 30 | nc -l -p 5432 > /tmp/got"]);
    assert_eq!(s.ok(&["port", "wait", "-p", "shop", "db", "5432", "--timeout", "10s"]), "5432: listening\n");
    let ports = s.ok(&["port", "list", "-p", "shop", "db"]);
    assert!(ports.lines().any(|l| l.starts_with("5432 ")), "{ports}");
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["port", "list", "-p", "shop", "db", "--json"])).unwrap();
    assert!(json.as_array().unwrap().iter().any(|p| p["port"] == 5432), "{json}");
    s.ok(&["exec", "-p", "shop", "web", "--", "sh", "-c", "echo hi | nc db 5432"]);
    // The listener writes what it received on its own time: wait for it (at most 5 s).
    let got = s.ok(&[
        "exec",
        "-p",
        "shop",
        "db",
        "--",
        "sh",
        "-c",
        "for i in $(seq 50); do [ -s /tmp/got ] && break; sleep 0.1; done; cat /tmp/got",
    ]);
    assert_eq!(got, "hi\n");

    // Another project: `name.project` (and `name.project.forks`), here over HTTP on 8080.
    serve(&s, "shop", "db", 8080, "db over http");
    let page = s.ok(&["exec", "-p", "other", "reporting", "--", "wget", "-qO-", "http://db.shop:8080/"]);
    assert_eq!(page, "db over http\n");
    let page =
        s.ok(&["exec", "-p", "other", "reporting", "--", "wget", "-qO-", "http://db.shop.forks:8080/"]);
    assert_eq!(page, "db over http\n");
    // The bare name means the caller's own project only.
    let out =
        s.run(&["exec", "-p", "other", "reporting", "--", "wget", "-qO-", "-T", "2", "http://db:8080/"]);
    assert!(!out.status.success(), "bare `db` resolved from another project");

    // Names follow boxes: a stopped box leaves the others' /etc/hosts, a resumed one returns
    // (maybe with another address), a deleted one is gone for good.
    let hosts = || s.ok(&["exec", "-p", "shop", "web", "--", "cat", "/etc/hosts"]);
    assert!(hosts().contains("\tdb db.shop db.shop.forks\n"), "{}", hosts());
    s.ok(&["stop", "-p", "shop", "db"]);
    assert!(!hosts().contains("db.shop"), "{}", hosts());
    s.ok(&["resume", "-p", "shop", "db"]);
    assert!(hosts().contains("\tdb db.shop db.shop.forks\n"), "{}", hosts());
    serve(&s, "shop", "db", 8080, "db after resume");
    assert_eq!(
        s.ok(&["exec", "-p", "shop", "web", "--", "wget", "-qO-", "http://db:8080/"]),
        "db after resume\n"
    );
    s.ok(&["delete", "-p", "shop", "--force", "db"]);
    assert!(!hosts().contains("db.shop"), "{}", hosts());

    // A port nobody listens on: `port wait` gives up with exit code 1 and says so.
    let out = s.run(&["port", "wait", "-p", "shop", "web", "4444", "--timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port 4444 is not listening in shop:web after"), "{err}");
}

#[test]
fn published_boxes_answer_through_the_proxy() {
    let s = Server::start();
    s.ok(&["create", "site", "-p", "shop"]);
    serve(&s, "shop", "site", 8080, "hello from site");

    assert_eq!(s.ok(&["publish", "-p", "shop", "site", "www"]), "OK\n");
    assert_eq!(via_proxy(&s, "www.localhost", "/"), (200, "hello from site\n".into()));
    assert_eq!(
        via_proxy(&s, "WWW.localhost:8080", "/"),
        (200, "hello from site\n".into()),
        "Host is case-blind"
    );
    assert_eq!(via_proxy_tls(&s, "www.localhost", "/"), (200, "hello from site\n".into()));
    // The box's own URL host works without publishing (document 001).
    assert_eq!(via_proxy(&s, "site.shop.localhost", "/"), (200, "hello from site\n".into()));
    let info = s.show("shop:site");
    assert_eq!(info["published"], serde_json::json!(["www.localhost"]));
    assert!(s.ok(&["show", "shop:site"]).contains("www.localhost"));

    // --host, @ (the apex), --domain and --json.
    let out = s.ok(&["publish", "-p", "shop", "site", "--host", "Shop.Example.COM", "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::json!({"host": "shop.example.com"})
    );
    s.ok(&["publish", "-p", "shop", "site", "@", "--domain", "apex.test"]);
    assert_eq!(via_proxy(&s, "apex.test", "/").0, 200);
    assert_eq!(via_proxy(&s, "shop.example.com", "/").0, 200);

    // Unknown host: 404 page. Invalid arguments never reach the server.
    let (code, body) = via_proxy(&s, "nobody.localhost", "/");
    assert_eq!(code, 404);
    assert!(body.contains("No box is published at nobody.localhost"), "{body}");
    let err = s.fails(&["publish", "-p", "shop", "site", "sub", "--host", "x.com"]);
    assert!(err.contains("cannot be used with"), "{err}");
    let err = s.fails(&["publish", "-p", "shop", "site", "bad_name"]);
    assert!(err.contains("invalid host"), "{err}");

    // One owner per host: 409 without --force, takeover with it, 403 for the old owner.
    s.ok(&["create", "intruder", "-p", "other"]);
    serve(&s, "other", "intruder", 8080, "hello from intruder");
    let out = s.run(&["publish", "-p", "other", "intruder", "www"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already published") && err.contains("--force"), "{err}");
    assert_eq!(via_proxy(&s, "www.localhost", "/").1, "hello from site\n");
    s.ok(&["publish", "-p", "other", "intruder", "www", "--force"]);
    assert_eq!(via_proxy(&s, "www.localhost", "/").1, "hello from intruder\n");
    let err = s.fails(&["unpublish", "-p", "shop", "site", "www"]);
    assert!(err.contains("published by box \"intruder\""), "{err}");
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/projects/shop/boxes/site/unpublish", s.url))
        .bearer_auth(&s.token)
        .json(&serde_json::json!({"subdomain": "www"}))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(s.ok(&["unpublish", "-p", "other", "intruder", "www"]), "OK\n");
    assert_eq!(via_proxy(&s, "www.localhost", "/").0, 404);
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/projects/other/boxes/intruder/publish", s.url))
        .bearer_auth(&s.token)
        .json(&serde_json::json!({"host": "shop.example.com"}))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 409);

    // update PORT re-routes at once.
    serve(&s, "shop", "site", 9090, "site on 9090");
    s.ok(&["update", "-p", "shop", "site", "PORT=9090"]);
    assert_eq!(via_proxy(&s, "shop.example.com", "/").1, "site on 9090\n");

    // A stopped box: 502; after resume (new PID 1, maybe a new address) it answers again.
    s.ok(&["stop", "-p", "shop", "site"]);
    let (code, body) = via_proxy(&s, "shop.example.com", "/");
    assert_eq!(code, 502);
    assert!(body.contains("is not running"), "{body}");
    s.ok(&["resume", "-p", "shop", "site"]);
    let (code, body) = via_proxy(&s, "shop.example.com", "/");
    assert_eq!(code, 502, "nothing listens yet");
    assert!(body.contains("does not answer on port 9090"), "{body}");
    serve(&s, "shop", "site", 9090, "back");
    assert_eq!(via_proxy(&s, "shop.example.com", "/"), (200, "back\n".into()));

    // Hosts go with their box.
    s.ok(&["delete", "-p", "shop", "--force", "site"]);
    assert_eq!(via_proxy(&s, "shop.example.com", "/").0, 404);
}

#[test]
fn upgrades_are_tunnelled_both_ways() {
    let s = Server::start();
    s.ok(&["create", "ws"]);
    // A minimal upgrade server: reads the request head, answers 101, greets, then records what
    // the client sends after the switch.
    let script = s.work.path().join("upgrade.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n\
         while read -r line; do line=$(printf '%s' \"$line\" | tr -d '\\r'); echo \"$line\" >> /tmp/received; \
         [ -z \"$line\" ] && break; done\n\
         printf 'HTTP/1.1 101 Switching Protocols\\r\\nConnection: Upgrade\\r\\nUpgrade: echo\\r\\n\\r\\nwelcome\\n'\n\
         cat >> /tmp/received\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    s.ok(&["cp", script.to_str().unwrap(), "ws:/srv/upgrade.sh"]);
    s.ok(&["exec", "ws", "--bg", "--", "nc", "-l", "-p", "8080", "-e", "/srv/upgrade.sh"]);
    s.ok(&["port", "wait", "ws", "8080", "--timeout", "10s"]);
    s.ok(&["publish", "ws", "chat"]);

    let mut c = TcpStream::connect(&s.proxy_http).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(
        b"GET /socket HTTP/1.1\r\nHost: chat.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("welcome\n") {
        let n = c
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("{e}; got so far: {:?}", String::from_utf8_lossy(&got)));
        assert!(n > 0, "connection closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    c.write_all(b"client says hi\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let received = s.ok(&["exec", "ws", "--", "cat", "/tmp/received"]);
    assert!(received.ends_with("client says hi\n"), "{received:?}");
    assert!(received.starts_with("GET /socket HTTP/1.1\n"), "{received:?}");
    assert!(received.to_ascii_lowercase().contains("\nx-forwarded-proto: http\n"), "{received:?}");
}

#[test]
fn a_box_over_its_memory_limit_is_killed_not_the_host() {
    let s = Server::start();
    s.ok(&["create", "hog", "--memory", "32Mi"]);
    let limit = s.ok(&["exec", "hog", "--", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]);
    assert_eq!(limit.trim(), (32u64 << 20).to_string());
    // 200 MB in one shell variable: the kernel's OOM killer ends the shell.
    let out = s.run(&[
        "exec",
        "hog",
        "--",
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(out.status.code(), Some(137), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    // The box, the server and the host carry on.
    assert_eq!(s.ok(&["exec", "hog", "--", "echo", "still here"]), "still here\n");
    assert_eq!(s.show("hog")["status"], "running");
    // update MEMORY reaches the running box's cgroup.
    s.ok(&["update", "hog", "MEMORY=64Mi"]);
    let limit = s.ok(&["exec", "hog", "--", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]);
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
}

#[test]
fn nat_and_teardown_leave_nothing_behind() {
    let iptables = |table: &str| {
        let out = Command::new("iptables").args(["-t", table, "-S"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let links = || {
        let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    {
        let s = Server::start_with_args("4G", &["--nat", "on", "--subnet", "10.123.0.0/24"]);
        s.ok(&["create", "out"]);
        let nat = iptables("nat");
        assert!(nat.contains("-s 10.123.0.0/24") && nat.contains("MASQUERADE"), "{nat}");
        let route = s.ok(&["exec", "out", "--", "ip", "route"]);
        assert!(route.contains("default via 10.123.0.1 dev eth0"), "{route}");
        assert!(s.ok(&["exec", "out", "--", "ip", "-o", "-4", "addr", "show", "eth0"]).contains("10.123.0."));
        assert!(links().contains(": fk"), "{}", links());
    }
    // Dropping the server ran `forkr-server teardown`.
    assert!(!iptables("nat").contains("forkr:"), "{}", iptables("nat"));
    assert!(!iptables("filter").contains("forkr:"), "{}", iptables("filter"));
    for _ in 0..50 {
        if !links().contains(": fk") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!links().contains(": fk"), "{}", links());
}

#[test]
fn parallel_starts_leave_every_hosts_file_complete() {
    let s = Server::start();
    let names: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    std::thread::scope(|scope| {
        for n in &names {
            let s = &s;
            scope.spawn(move || s.ok(&["create", n]));
        }
    });
    for n in &names {
        let hosts = s.ok(&["exec", n, "--", "cat", "/etc/hosts"]);
        for other in &names {
            assert!(
                hosts.contains(&format!("\t{other} {other}.default {other}.default.forks\n")),
                "{n} lacks {other}:\n{hosts}"
            );
        }
    }
    // Every box got its own address.
    let mut addresses: Vec<String> = names
        .iter()
        .map(|n| s.ok(&["exec", n, "--", "ip", "-o", "-4", "addr", "show", "eth0"]))
        .map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1).unwrap_or_default().to_owned())
        .collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), names.len(), "{addresses:?}");
}
