//! Issue 3 end to end, part one: snapshots, restore, diff and fork through the real `4kr` and
//! `forkr-server` (document 000, and the clone parts of document 002).

use forkr_tests::Server;

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// Parses `snapshot list` output into rows of whitespace-separated cells (the description may hold
/// spaces, so it is everything after the third column).
fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip(1)
        .map(|l| {
            let mut cells: Vec<String> = l.split_whitespace().take(3).map(str::to_owned).collect();
            let rest = l.split_whitespace().skip(3).collect::<Vec<_>>().join(" ");
            cells.push(rest);
            cells
        })
        .collect()
}

fn is_rfc3339(s: &str) -> bool {
    // 2026-01-02T03:04:05Z or with an offset / fraction: check the fixed prefix and a zone.
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (s.ends_with('Z') || s[19..].contains('+') || s[19..].contains('-'))
        && s[..4].chars().all(|c| c.is_ascii_digit())
}

#[test]
fn create_names_list_and_delete() {
    let s = Server::start();
    s.ok(&["create", "web-1"]);

    // Automatic names: v0, v1, … one above the highest existing one.
    assert_eq!(s.ok(&["snapshot", "create", "web-1"]), "v0: created\n");
    assert_eq!(s.ok(&["snapshot", "create", "web-1"]), "v1: created\n");
    let desc = "Clean state before the Postgres 17 upgrade";
    assert_eq!(
        s.ok(&["snapshot", "create", "web-1", "before-upgrade", "-m", desc]),
        "before-upgrade: created\n"
    );
    // --name overrides the positional name.
    assert_eq!(s.ok(&["snapshot", "create", "web-1", "ignored", "--name", "v7"]), "v7: created\n");
    assert_eq!(s.ok(&["snapshot", "create", "web-1"]), "v8: created\n");

    // A duplicate name is a conflict.
    let err = s.fails(&["snapshot", "create", "web-1", "before-upgrade"]);
    assert_eq!(err.trim_end(), "Error: snapshot \"before-upgrade\" already exists on box \"web-1\"");
    // Invalid names are refused with the pattern.
    let err = s.fails(&["snapshot", "create", "web-1", "bad name"]);
    assert!(err.starts_with("Error: invalid snapshot name \"bad name\""), "{err}");
    assert!(err.contains("^[a-zA-Z0-9_.-]+$"), "{err}");
    // The server refuses it too (the CLI's check is only a shortcut): same rule, same message.
    let out = s.run(&["snapshot", "create", "web-1", "--name", "Rel_1.2-rc.1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A box that does not exist.
    let err = s.fails(&["snapshot", "create", "nope"]);
    assert!(err.contains("not found"), "{err}");

    // list: NAME SIZE CREATED DESCRIPTION, oldest first, CREATED in RFC3339.
    let list = s.ok(&["snapshot", "list", "web-1"]);
    let header: Vec<&str> = list.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "CREATED", "DESCRIPTION"]);
    let rows = table_rows(&list);
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["v0", "v1", "before-upgrade", "v7", "v8", "Rel_1.2-rc.1"]);
    for r in &rows {
        assert!(is_rfc3339(&r[2]), "CREATED {:?} is not RFC3339", r[2]);
        let size = &r[1];
        assert!(size == "-" || size.ends_with(['B', 'K', 'M', 'G']), "SIZE {size:?} is not human-readable");
    }
    assert_eq!(rows[2][3], desc);
    assert_eq!(rows[0][3], "");

    // --json: exact bytes (once measured) and the same names.
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["snapshot", "list", "web-1", "--json"])).unwrap();
    let arr = json.as_array().unwrap();
    assert_eq!(arr.len(), 6);
    assert_eq!(arr[2]["description"], desc);
    for snap in arr {
        assert!(snap["size"].is_null() || snap["size"].is_u64(), "{snap}");
        assert_eq!(snap["box"], "web-1");
    }

    // delete, then the name is free again; deleting it twice is a not-found error.
    assert_eq!(s.ok(&["snapshot", "delete", "web-1", "v1"]), "v1: deleted\n");
    let err = s.fails(&["snapshot", "delete", "web-1", "v1"]);
    assert!(err.contains("snapshot \"v1\" not found on box \"web-1\""), "{err}");
    assert_eq!(s.ok(&["snapshot", "create", "web-1", "v1"]), "v1: created\n");
    // The next automatic name is still above the highest.
    assert_eq!(s.ok(&["snapshot", "create", "web-1"]), "v9: created\n");

    // Snapshots go away with their box.
    s.ok(&["delete", "--force", "web-1"]);
    s.ok(&["create", "web-1"]);
    assert_eq!(lines(&s.ok(&["snapshot", "list", "web-1"])).len(), 1, "only the header");
}

#[test]
fn restore_rolls_the_root_back_and_wipes_tmp() {
    let s = Server::start();
    s.ok(&["create", "db"]);
    s.ok(&["exec", "db", "--", "sh", "-c", "echo keep > /root/keep && echo one > /srv/state"]);
    s.ok(&["snapshot", "create", "db", "clean"]);

    s.ok(&[
        "exec",
        "db",
        "--",
        "sh",
        "-c",
        "rm /root/keep && echo two > /srv/state && echo new > /root/new && echo junk > /tmp/junk",
    ]);
    let pid_before = s.show("db")["pid"].clone();
    let out = s.ok(&["snapshot", "restore", "db", "clean"]);
    assert_eq!(out, "db: restored from clean (running)\n");

    assert_eq!(s.ok(&["exec", "db", "--", "cat", "/root/keep"]), "keep\n");
    assert_eq!(s.ok(&["exec", "db", "--", "cat", "/srv/state"]), "one\n");
    let out = s.run(&["exec", "db", "--", "test", "-e", "/root/new"]);
    assert_eq!(out.status.code(), Some(1), "/root/new survived the restore");
    assert_eq!(s.ok(&["exec", "db", "--", "ls", "-A", "/tmp"]), "", "/tmp is not empty after restore");
    assert_eq!(s.ok(&["exec", "db", "--", "ls", "-A", "/run"]), "", "/run is not empty after restore");
    // The box restarted: a new PID 1.
    let info = s.show("db");
    assert_eq!(info["status"], "running");
    assert_ne!(info["pid"], pid_before, "restore did not restart the box");

    // Restore works on a stopped box too (it is started again), and the snapshot stays usable.
    s.ok(&["exec", "db", "--", "rm", "/root/keep"]);
    s.ok(&["stop", "db"]);
    s.ok(&["snapshot", "restore", "db", "clean"]);
    assert_eq!(s.ok(&["exec", "db", "--", "cat", "/root/keep"]), "keep\n");

    // There is no cross-box restore: another box's snapshot does not exist for this one.
    s.ok(&["create", "other"]);
    let err = s.fails(&["snapshot", "restore", "other", "clean"]);
    assert_eq!(err.trim_end(), "Error: snapshot \"clean\" not found on box \"other\"");
    let err = s.fails(&["snapshot", "restore", "db", "missing"]);
    assert!(err.contains("snapshot \"missing\" not found on box \"db\""), "{err}");
    // Same name in another project: also separate.
    s.ok(&["create", "db", "-p", "proj2"]);
    let err = s.fails(&["snapshot", "restore", "proj2:db", "clean"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn diff_status_and_file() {
    let s = Server::start();
    s.ok(&["create", "web"]);
    s.ok(&[
        "exec",
        "web",
        "--sh",
        "--",
        "mkdir -p /srv/app && printf 'a\\nb\\nc\\n' > /srv/app/conf && echo old > /srv/app/gone && echo same > /srv/app/same && head -c 1100000 /dev/zero > /srv/big",
    ]);

    // No snapshot yet: the documented message, which tells how to pick one.
    let err = s.fails(&["diff", "status", "web"]);
    assert!(err.starts_with("Error: box \"web\" has no snapshots; specify one with --against"), "{err}");
    let err = s.fails(&["diff", "file", "web", "/srv/app/conf"]);
    assert!(err.contains("specify one with --against"), "{err}");

    s.ok(&["snapshot", "create", "web", "base-line"]);
    assert_eq!(s.ok(&["diff", "status", "web"]), "No changes\n");

    s.ok(&[
        "exec",
        "web",
        "--sh",
        "--",
        "printf 'a\\nB\\nc\\n' > /srv/app/conf && rm /srv/app/gone && echo hi > /srv/app/new && mkdir /srv/newdir",
    ]);
    let status = s.ok(&["diff", "status", "web"]);
    let mut got = lines(&status);
    got.sort();
    assert_eq!(got, ["+ /srv/app/new", "+ /srv/newdir", "- /srv/app/gone", "~ /srv/app/conf"], "{status}");
    // /srv/app itself changed (entries came and went); it may be listed as modified, but nothing else.
    let json: serde_json::Value = serde_json::from_str(&s.ok(&["diff", "status", "web", "--json"])).unwrap();
    assert_eq!(json["against"], "base-line");

    // diff file: each status.
    let out = s.ok(&["diff", "file", "web", "/srv/app/conf"]);
    assert!(out.starts_with("/srv/app/conf: modified (against base-line)\n"), "{out}");
    assert!(out.contains("--- /srv/app/conf (base-line)\n+++ /srv/app/conf (live)\n"), "{out}");
    assert!(out.contains("\n-b\n+B\n"), "{out}");
    assert_eq!(s.ok(&["diff", "file", "web", "/srv/app/new"]), "/srv/app/new: added (against base-line)\n");
    assert_eq!(
        s.ok(&["diff", "file", "web", "/srv/app/gone"]),
        "/srv/app/gone: deleted (against base-line)\n"
    );
    assert_eq!(
        s.ok(&["diff", "file", "web", "/srv/app/same"]),
        "/srv/app/same: unchanged (against base-line)\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["diff", "file", "web", "/srv/app/conf", "--json"])).unwrap();
    assert_eq!(json["status"], "modified");

    // Over 1 MB is an error; a relative path is refused before any request.
    let err = s.fails(&["diff", "file", "web", "/srv/big"]);
    assert!(err.contains("/srv/big is larger than 1 MB; file diffs are limited to 1 MB"), "{err}");
    let err = s.fails(&["diff", "file", "web", "srv/app/conf"]);
    assert!(err.starts_with("Error: path \"srv/app/conf\" must be absolute"), "{err}");
    let err = s.fails(&["diff", "file", "web", "/srv/app/none"]);
    assert!(err.contains("exists neither in the box nor in snapshot"), "{err}");

    // --against picks an older snapshot; the default is the newest.
    s.ok(&["snapshot", "create", "web", "later"]);
    assert_eq!(s.ok(&["diff", "status", "web"]), "No changes\n");
    assert_eq!(
        s.ok(&["diff", "file", "web", "/srv/app/new", "--against", "base-line"]),
        "/srv/app/new: added (against base-line)\n"
    );
    let again = s.ok(&["diff", "status", "web", "--against", "base-line"]);
    assert_eq!(again, status);
    let err = s.fails(&["diff", "status", "web", "--against", "nope"]);
    assert!(err.contains("snapshot \"nope\" not found on box \"web\""), "{err}");
}

#[test]
fn fork_inherits_and_copies_the_root() {
    let s = Server::start();
    s.ok(&["create", "src", "-e", "A=1", "-e", "B=2", "--tag", "team-a", "--port", "3000"]);
    s.ok(&["update", "src", "TERMINATION_GRACE_SECONDS=7"]);
    s.ok(&["exec", "src", "--", "sh", "-c", "echo from-src > /root/file"]);

    s.ok(&["create", "copy", "--fork", "src", "-e", "B=3"]);
    let info = s.show("copy");
    assert_eq!(info["forked_from"], "src");
    assert_eq!(info["base"], s.show("src")["base"]);
    assert_eq!(info["port"], 3000);
    assert_eq!(info["tags"], serde_json::json!(["team-a"]));
    assert_eq!(info["termination_grace_seconds"], 7);
    assert_eq!(info["env"]["A"], "1");
    assert_eq!(info["env"]["B"], "3", "overrides win over the source's env");
    assert_eq!(s.ok(&["exec", "copy", "--", "cat", "/root/file"]), "from-src\n");
    assert_eq!(s.ok(&["exec", "copy", "--sh", "--", "echo $A$B"]), "13\n");

    // The copy is independent of the source.
    s.ok(&["exec", "copy", "--", "sh", "-c", "echo changed > /root/file"]);
    assert_eq!(s.ok(&["exec", "src", "--", "cat", "/root/file"]), "from-src\n");

    // Not from itself; not with --base.
    let err = s.fails(&["create", "src", "--fork", "src"]);
    assert!(err.contains("cannot fork a box from itself"), "{err}");
    let err = s.fails(&["create", "x", "--base", "box-base", "--fork", "src"]);
    assert_eq!(err.trim_end(), "Error: --base cannot be used with --fork");
    let err = s.fails(&["create", "y", "--fork", "missing"]);
    assert!(err.contains("not found"), "{err}");
}
