//! Issue 5, item 1 end to end: data volumes through the real `4kr` and `forkr-server` (documents
//! 000, 002 and 004): sharing between boxes, read-only mounts, what survives what, volume snapshots
//! and backups, fork copies, the `cp` gotcha, size limits, and every documented `--data` error.

use forkr_tests::Server;

fn json(s: &Server, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&s.ok(args)).unwrap_or_else(|e| panic!("4kr {args:?} did not print JSON: {e}"))
}

#[test]
fn shared_between_boxes_read_only_and_survives_box_delete() {
    let s = Server::start();
    assert_eq!(s.ok(&["volume", "create", "shared"]), "shared: created\n");
    s.ok(&["create", "writer", "--data", "shared=/data"]);
    s.ok(&["exec", "writer", "--", "sh", "-c", "echo hello > /data/greeting"]);
    s.ok(&["create", "reader", "-d", "shared=/mnt/shared:ro"]);
    assert_eq!(s.ok(&["exec", "reader", "--", "cat", "/mnt/shared/greeting"]), "hello\n");
    // Writes from the reader's side show up in the writer's, live.
    s.ok(&["exec", "writer", "--", "sh", "-c", "echo more >> /data/greeting"]);
    assert_eq!(s.ok(&["exec", "reader", "--", "cat", "/mnt/shared/greeting"]), "hello\nmore\n");

    // A read-only mount refuses writes.
    let out = s.run(&["exec", "reader", "--", "sh", "-c", "echo x > /mnt/shared/x"]);
    assert!(!out.status.success(), "write through a read-only mount succeeded");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"), "{out:?}");

    let info = s.show("reader");
    assert_eq!(
        info["data"],
        serde_json::json!([{"name": "shared", "path": "/mnt/shared", "read_only": true}])
    );
    let vol = json(&s, &["volume", "show", "shared", "--json"]);
    let users: Vec<&str> =
        vol["mounted_by"].as_array().unwrap().iter().map(|m| m["box"].as_str().unwrap()).collect();
    assert_eq!(users, ["reader", "writer"]);
    assert!(vol["used_bytes"].as_u64().is_some(), "{vol}");
    let list = s.ok(&["volume", "list"]);
    assert!(list.contains("shared") && list.contains("reader:/mnt/shared:ro"), "{list}");

    // Delete refuses while boxes mount it.
    // (Like box delete, the per-volume result is on stdout and the exit code says something failed.)
    let out = s.run(&["volume", "delete", "shared"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.starts_with("shared: error: volume \"shared\" is mounted by box(es) reader, writer"),
        "{stdout}"
    );
    assert!(stdout.contains("--force"), "{stdout}");

    // Volumes survive box delete (document 004).
    s.ok(&["delete", "--force", "writer", "reader"]);
    s.ok(&["create", "again", "--data", "shared=/srv/data"]);
    assert_eq!(s.ok(&["exec", "again", "--", "cat", "/srv/data/greeting"]), "hello\nmore\n");
    // And across stop/resume.
    s.ok(&["stop", "again"]);
    s.ok(&["resume", "again"]);
    assert_eq!(s.ok(&["exec", "again", "--", "cat", "/srv/data/greeting"]), "hello\nmore\n");

    // A forced delete removes the volume and its mount from the box's definition.
    assert_eq!(s.ok(&["volume", "delete", "--force", "shared"]), "shared: deleted (removed from again)\n");
    assert_eq!(s.show("again")["data"], serde_json::json!([]));
    assert_eq!(s.ok(&["volume", "list", "--json"]).trim(), "[]");
}

#[test]
fn root_snapshots_bases_and_cp_never_touch_volume_data() {
    let s = Server::start();
    s.ok(&["volume", "create", "keep"]);
    s.ok(&["create", "app", "--data", "keep=/data"]);
    s.ok(&["exec", "app", "--", "sh", "-c", "echo 1 > /data/v && echo 1 > /root/r"]);
    s.ok(&["snapshot", "create", "app", "before"]);
    s.ok(&["exec", "app", "--", "sh", "-c", "echo 2 > /data/v && echo 2 > /root/r"]);
    s.ok(&["snapshot", "restore", "app", "before"]);
    assert_eq!(s.ok(&["exec", "app", "--", "cat", "/root/r"]), "1\n", "the root was restored");
    assert_eq!(s.ok(&["exec", "app", "--", "cat", "/data/v"]), "2\n", "the volume was left alone");

    // A base saved from the box has the mount point, not the volume's files.
    s.ok(&["base", "save", "with-mount", "app"]);
    s.ok(&["create", "from-base", "--base", "with-mount"]);
    assert_eq!(s.ok(&["exec", "from-base", "--", "ls", "-A", "/data"]), "");

    // `cp` into a path under a data mount lands in the root, shadowed by the live mount (document
    // 002's gotcha): the box does not see it there, the volume does not get it, `get` reads it back
    // from the root.
    let local = s.work.path().join("note.txt");
    std::fs::write(&local, "via cp\n").unwrap();
    s.ok(&["cp", local.to_str().unwrap(), "app:/data/note.txt"]);
    let out = s.run(&["exec", "app", "--", "cat", "/data/note.txt"]);
    assert!(!out.status.success(), "the copied file is visible through the data mount");
    let back = s.work.path().join("back.txt");
    s.ok(&["get", "app:/data/note.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "via cp\n");
    s.ok(&["create", "other", "--data", "keep=/data"]);
    assert_eq!(s.ok(&["exec", "other", "--", "ls", "/data"]), "v\n");
}

#[test]
fn volume_snapshot_restore_round_trip() {
    let s = Server::start();
    s.ok(&["volume", "create", "db"]);
    s.ok(&["create", "pg", "--data", "db=/var/lib/db"]);
    s.ok(&["exec", "pg", "--", "sh", "-c", "echo one > /var/lib/db/state"]);
    assert_eq!(s.ok(&["volume", "snapshot", "db"]), "v0: created\n");
    s.ok(&["exec", "pg", "--", "sh", "-c", "echo two > /var/lib/db/state && touch /var/lib/db/later"]);
    s.ok(&["volume", "snapshot", "db", "second", "-m", "after two"]);
    let snaps = s.ok(&["volume", "snapshots", "db"]);
    assert!(snaps.starts_with("NAME") && snaps.contains("v0") && snaps.contains("after two"), "{snaps}");

    // Refused while a running box mounts it; fine once it is stopped.
    let err = s.fails(&["volume", "restore", "db", "v0"]);
    assert!(err.contains("mounted by running box(es) pg") && err.contains("4kr stop pg"), "{err}");
    s.ok(&["stop", "pg"]);
    assert_eq!(s.ok(&["volume", "restore", "db", "v0"]), "db: restored from snapshot v0\n");
    s.ok(&["resume", "pg"]);
    assert_eq!(s.ok(&["exec", "pg", "--", "cat", "/var/lib/db/state"]), "one\n");
    assert!(!s.run(&["exec", "pg", "--", "test", "-e", "/var/lib/db/later"]).status.success());
    // Later snapshots stay restorable.
    s.ok(&["stop", "pg"]);
    s.ok(&["volume", "restore", "db", "second"]);
    s.ok(&["resume", "pg"]);
    assert_eq!(s.ok(&["exec", "pg", "--", "cat", "/var/lib/db/state"]), "two\n");
    let err = s.fails(&["volume", "restore", "db", "nope"]);
    assert!(err.contains("snapshot \"nope\" not found on volume \"db\""), "{err}");
}

#[test]
fn volume_backup_restore_round_trip_and_backups_outlive_the_volume() {
    let s = Server::start();
    s.ok(&["volume", "create", "files"]);
    s.ok(&["create", "w", "--data", "files=/files"]);
    s.ok(&["exec", "w", "--", "sh", "-c", "mkdir -p /files/a/b && echo deep > /files/a/b/c && echo s > /files/secret && chmod 640 /files/secret && ln -s a/b/c /files/link"]);
    let out = s.ok(&["volume", "backup", "files"]);
    assert!(out.starts_with("v0: created ("), "{out}");
    let list = json(&s, &["volume", "backups", "files", "--json"]);
    assert_eq!(list[0]["name"], "v0");
    assert!(list[0]["size"].as_u64().unwrap() > 0);

    // Restoring undoes later changes (the box is stopped: restores refuse a live mount).
    s.ok(&[
        "exec",
        "w",
        "--",
        "sh",
        "-c",
        "echo changed > /files/a/b/c && rm /files/secret && touch /files/new",
    ]);
    let err = s.fails(&["volume", "restore-backup", "files", "v0"]);
    assert!(err.contains("mounted by running box(es) w"), "{err}");
    s.ok(&["stop", "w"]);
    assert_eq!(s.ok(&["volume", "restore-backup", "files", "v0"]), "files: restored from backup v0\n");
    s.ok(&["resume", "w"]);
    let check =
        "cat /files/a/b/c; stat -c %a /files/secret; readlink /files/link; test -e /files/new || echo no-new";
    assert_eq!(s.ok(&["exec", "w", "--sh", "--", check]), "deep\n640\na/b/c\nno-new\n");

    // The backup outlives the volume and brings it back.
    s.ok(&["delete", "--force", "w"]);
    s.ok(&["volume", "delete", "files"]);
    assert_eq!(s.ok(&["volume", "list", "--json"]).trim(), "[]");
    let backups = s.ok(&["volume", "backups", "files"]);
    assert!(backups.contains("v0"), "{backups}");
    s.ok(&["volume", "restore-backup", "files", "v0"]);
    s.ok(&["create", "r", "--data", "files=/restored:ro"]);
    assert_eq!(s.ok(&["exec", "r", "--", "cat", "/restored/a/b/c"]), "deep\n");
    let err = s.fails(&["volume", "restore-backup", "files", "nope"]);
    assert!(err.contains("backup \"nope\" of volume \"files\" not found"), "{err}");
}

#[test]
fn fork_copies_each_volume_and_size_limits_are_enforced() {
    let s = Server::start();
    let created = s.ok(&["volume", "create", "cache", "--size", "8Mi"]);
    assert!(created.starts_with("cache: created ("), "{created}");
    s.ok(&["create", "src", "--data", "cache=/cache"]);
    s.ok(&["exec", "src", "--", "sh", "-c", "echo orig > /cache/f"]);

    s.ok(&["create", "copy", "--fork", "src"]);
    let data = &s.show("copy")["data"];
    assert_eq!(data, &serde_json::json!([{"name": "box-copy-cache", "path": "/cache", "read_only": false}]));
    let vol = json(&s, &["volume", "show", "box-copy-cache", "--json"]);
    assert_eq!(vol["copied_from"], "cache");
    assert_eq!(s.ok(&["exec", "copy", "--", "cat", "/cache/f"]), "orig\n");
    s.ok(&["exec", "copy", "--", "sh", "-c", "echo forked > /cache/f"]);
    assert_eq!(
        s.ok(&["exec", "src", "--", "cat", "/cache/f"]),
        "orig\n",
        "the fork wrote into the source's volume"
    );
    let err = s.fails(&["create", "copy2", "--fork", "copy", "--data", "cache=/cache"]);
    assert!(err.contains("each mount path must be unique"), "{err}");

    // The size limit (a btrfs quota) stops writes inside the box, in the copy as in the source.
    let vol = json(&s, &["volume", "show", "cache", "--json"]);
    assert_eq!(
        (vol["size_bytes"].as_u64(), vol["size_enforced"].as_bool()),
        (Some(8 << 20), Some(true)),
        "{vol}"
    );
    for b in ["src", "copy"] {
        let out =
            s.run(&["exec", b, "--", "sh", "-c", "dd if=/dev/zero of=/cache/big bs=1M count=32 && sync"]);
        assert!(!out.status.success(), "{b}: wrote 32 MiB into an 8 MiB volume");
        assert!(String::from_utf8_lossy(&out.stderr).contains("quota"), "{b}: {out:?}");
    }
}

#[test]
fn documented_data_errors() {
    let s = Server::start();
    s.ok(&["volume", "create", "v"]);
    s.ok(&["volume", "create", "w"]);
    s.ok(&["volume", "create", "elsewhere", "-p", "other"]);
    let cases: &[(&[&str], &str)] = &[
        (&["--data", "v=data"], "must be absolute"),
        (&["--data", "v=/proc/x"], "cannot sit under /proc"),
        (&["--data", "v=/sys"], "cannot sit under /sys"),
        (&["--data", "v=/dev/shm"], "cannot sit under /dev"),
        (&["--data", "v=/run/x"], "cannot sit under /run"),
        (&["--data", "v=/etc/app"], "cannot sit under /etc"),
        (&["--data", "v=/volumes/v"], "cannot sit under /volumes"),
        (&["--data", "v=/home"], "would hide the system volume at /home"),
        (&["--data", "other:elsewhere=/d"], "only mount volumes of its own project"),
        (&["--data", "elsewhere=/d"], "data volume \"elsewhere\" not found in project \"default\""),
        (&["--data", "nope=/d"], "data volume \"nope\" not found"),
        (&["--data", "v=/a", "--data", "v=/b"], "each mount name must be unique"),
        (&["--data", "v=/a", "--data", "w=/a/"], "each mount path must be unique"),
    ];
    for (flags, expect) in cases {
        let mut args = vec!["create", "bad"];
        args.extend_from_slice(flags);
        let err = s.fails(&args);
        assert!(err.contains(expect), "{flags:?}: expected {expect:?} in {err}");
    }
    assert_eq!(s.ok(&["list", "--json"]).trim(), "[]", "a refused create left a box behind");
    // The same mounts are fine where they are valid.
    s.ok(&["create", "good", "--data", "v=/a", "--data", "w=/a/inner:ro"]);
    assert_eq!(s.ok(&["exec", "good", "--", "sh", "-c", "touch /a/x && ls /a"]), "inner\nx\n");
}

/// `POST …/recreate` (the keep-root replacement `4kr apply` uses) with data mounts: the new mounts
/// are there and the fork's own copy stays. Guards against the recreate holding the volume locks
/// that the box start takes again (a deadlock, caught here by the request timeout).
#[test]
fn recreate_with_data_mounts_keeps_the_fork_copy_and_mounts_the_new_volumes() {
    let s = Server::start();
    s.ok(&["volume", "create", "a"]);
    s.ok(&["volume", "create", "b"]);
    s.ok(&["create", "src", "--data", "a=/a"]);
    s.ok(&["exec", "src", "--", "sh", "-c", "echo from-a > /a/f"]);
    s.ok(&["create", "web", "--fork", "src"]);
    s.ok(&["exec", "web", "--", "sh", "-c", "echo web-copy > /a/f"]);
    let req = serde_json::json!({"name": "web", "data": [{"name": "b", "path": "/b", "read_only": true}]});
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/projects/default/boxes/web/recreate", s.url))
        .bearer_auth(&s.token)
        .json(&req)
        .timeout(std::time::Duration::from_secs(60))
        .send()
        .expect("recreate answered (no deadlock)");
    assert!(resp.status().is_success(), "{}", resp.text().unwrap_or_default());
    let data = &s.show("web")["data"];
    assert_eq!(
        data,
        &serde_json::json!([
            {"name": "box-web-a", "path": "/a", "read_only": false},
            {"name": "b", "path": "/b", "read_only": true},
        ])
    );
    assert_eq!(s.ok(&["exec", "web", "--", "cat", "/a/f"]), "web-copy\n");
    assert_eq!(s.ok(&["exec", "web", "--", "ls", "-A", "/b"]), "");
}
