//! Issue 3 end to end, part two: bases (save, import, build from a script, versions, aliases, tags,
//! delete) and the safety of tarball imports, through the real `4kr` and `forkr-server`.

use std::path::{Path, PathBuf};
use std::process::Command;

use forkr_tests::{Server, tiny_base_tarball};

/// `base show <name> --json`.
fn show(s: &Server, name: &str) -> serde_json::Value {
    serde_json::from_str(&s.ok(&["base", "show", name, "--json"])).expect("base show --json")
}

/// The version names of a base, oldest first.
fn versions(s: &Server, name: &str) -> Vec<String> {
    show(s, name)["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap().to_owned())
        .collect()
}

/// `base list` rows as cells.
fn base_rows(s: &Server) -> Vec<Vec<String>> {
    let out = s.ok(&["base", "list"]);
    let mut it = out.lines();
    let header: Vec<&str> = it.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "VERSION", "SIZE", "CREATED"]);
    it.map(|l| l.split_whitespace().map(str::to_owned).collect()).collect()
}

fn base_names(s: &Server) -> Vec<String> {
    base_rows(s).into_iter().map(|r| r[0].clone()).collect()
}

/// `NAME-vYYYYMMDDHHMMSS`.
fn is_timestamped(version: &str, name: &str) -> bool {
    version
        .strip_prefix(name)
        .and_then(|r| r.strip_prefix("-v"))
        .is_some_and(|ts| ts.len() == 14 && ts.chars().all(|c| c.is_ascii_digit()) && ts.starts_with("20"))
}

/// A `.tar.gz` holding just `etc/overlay-marker`: not a root filesystem on its own, only on a parent.
fn overlay_tarball(dir: &Path) -> PathBuf {
    let root = dir.join("overlay-root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/overlay-marker"), "overlay\n").unwrap();
    let tarball = dir.join("overlay.tar.gz");
    let st = Command::new("tar").arg("-C").arg(&root).arg("-czf").arg(&tarball).arg(".").status().unwrap();
    assert!(st.success());
    tarball
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Subvolumes and directories left in the server's scratch area (`fs/tmp`).
fn scratch_entries(s: &Server) -> Vec<String> {
    match std::fs::read_dir(s.data.path().join("fs/tmp")) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => vec![],
    }
}

fn base_dirs(s: &Server) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(s.data.path().join("fs/bases"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn save_a_stopped_box_then_create_from_it() {
    let s = Server::start();
    s.ok(&["create", "web-1"]);
    s.ok(&["exec", "web-1", "--", "sh", "-c", "echo baked > /root/marker"]);
    s.ok(&["stop", "web-1"]);
    assert_eq!(s.ok(&["base", "save", "my-base", "web-1"]), "my-base: saved from default:web-1\n");

    let rows = base_rows(&s);
    let row = rows.iter().find(|r| r[0] == "my-base").unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(row[1], "my-base");
    let info = show(&s, "my-base");
    assert_eq!(info["versions"][0]["kind"], "save");
    assert_eq!(info["versions"][0]["parent"], "box-base");
    assert_eq!(info["versions"][0]["arch"], "x86_64");

    s.ok(&["create", "web-2", "--base", "my-base"]);
    assert_eq!(s.show("web-2")["base"], "my-base");
    assert_eq!(s.ok(&["exec", "web-2", "--", "cat", "/root/marker"]), "baked\n");
    // A base is read-only: the new box writes to its own clone only.
    s.ok(&["exec", "web-2", "--", "sh", "-c", "echo mine > /root/marker"]);
    s.ok(&["create", "web-3", "-b", "my-base"]);
    assert_eq!(s.ok(&["exec", "web-3", "--", "cat", "/root/marker"]), "baked\n");

    // -p is the box's project; a qualified ref works too.
    s.ok(&["create", "api", "-p", "team"]);
    assert_eq!(s.ok(&["base", "save", "team-base", "api", "-p", "team"]), "team-base: saved from team:api\n");
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["base", "save", "team-base", "team:api", "--json"])).unwrap();
    assert!(is_timestamped(json["version"].as_str().unwrap(), "team-base"), "{json}");
    let err = s.fails(&["base", "save", "x", "missing"]);
    assert!(err.contains("not found"), "{err}");
    let err = s.fails(&["base", "save", "my base", "web-1"]);
    assert!(err.starts_with("Error: invalid base name \"my base\""), "{err}");
}

#[test]
fn import_with_and_without_parent_and_versioning() {
    let s = Server::start();
    let full = tiny_base_tarball(s.work.path());
    let overlay = overlay_tarball(s.work.path());

    // Without a parent: a fresh filesystem from the tarball.
    assert_eq!(s.ok(&["base", "import", "plain", "--file", path_str(&full)]), "plain: imported\n");
    // With a parent (-p is --parent here): the tarball on top of the parent.
    assert_eq!(
        s.ok(&["base", "import", "layer", "--file", path_str(&overlay), "-p", "box-base"]),
        "layer: imported on box-base\n"
    );
    assert_eq!(show(&s, "layer")["versions"][0]["parent"], "box-base");
    s.ok(&["create", "on-layer", "--base", "layer"]);
    assert_eq!(s.ok(&["exec", "on-layer", "--", "cat", "/etc/overlay-marker"]), "overlay\n");
    assert_eq!(s.ok(&["exec", "on-layer", "--", "echo", "parent tools work"]), "parent tools work\n");

    // The overlay alone is no root filesystem: refused, and nothing is left behind.
    let err = s.fails(&["base", "import", "broken", "--file", path_str(&overlay)]);
    assert!(err.contains("cannot verify the base architecture"), "{err}");
    assert!(!base_names(&s).contains(&"broken".to_owned()));
    let err = s.fails(&["base", "import", "x", "--file", path_str(&s.work.path().join("missing.tar.gz"))]);
    assert!(err.starts_with("Error: cannot read "), "{err}");
    let not_gzip = s.work.path().join("not.tar.gz");
    std::fs::write(&not_gzip, "plain text").unwrap();
    let err = s.fails(&["base", "import", "x", "--file", path_str(&not_gzip)]);
    assert!(err.contains("not a gzip-compressed tar archive"), "{err}");
    let err = s.fails(&["base", "import", "x", "--file", path_str(&full), "--parent", "nope"]);
    assert!(err.contains("base \"nope\" not found"), "{err}");

    // Versioning: later writes get -vYYYYMMDDHHMMSS and the alias moves to the newest.
    s.ok(&["create", "old", "--base", "plain"]);
    let second = s.ok(&["base", "import", "plain", "--file", path_str(&full)]);
    let v2 = second.trim_end().strip_suffix(": imported").unwrap_or_else(|| panic!("{second}")).to_owned();
    assert!(is_timestamped(&v2, "plain"), "{v2}");
    let third = s.ok(&["base", "import", "plain", "--file", path_str(&full), "--json"]);
    let v3 =
        serde_json::from_str::<serde_json::Value>(&third).unwrap()["version"].as_str().unwrap().to_owned();
    assert!(is_timestamped(&v3, "plain") && v3 != v2, "{v3}");
    assert_eq!(versions(&s, "plain"), ["plain".to_owned(), v2.clone(), v3.clone()]);

    let rows = base_rows(&s);
    let row = rows.iter().find(|r| r[0] == "plain").unwrap();
    assert_eq!(row[1], v3, "base list shows the newest version");
    let text = s.ok(&["base", "show", "plain"]);
    assert!(
        text.starts_with(&format!("name:           plain\nlatest_version: {v3}\nversion_count:  3\n")),
        "{text}"
    );
    let table_header: Vec<&str> = text.lines().nth(4).unwrap_or_default().split_whitespace().collect();
    assert_eq!(table_header, ["VERSION", "KIND", "TAG", "BUILDER", "PARENT", "SIZE", "CREATED"]);

    // The alias means the newest; an exact version pins; existing boxes keep theirs.
    s.ok(&["create", "new", "--base", "plain"]);
    assert_eq!(s.show("new")["base"], v3.as_str());
    s.ok(&["create", "pinned", "--base", &v2]);
    assert_eq!(s.show("pinned")["base"], v2.as_str());
    assert_eq!(s.show("old")["base"], "plain");
}

#[test]
fn script_builds_tags_and_no_ops() {
    let s = Server::start();
    let script = s.work.path().join("tools.sh");
    std::fs::write(&script, "echo building tools\necho v1 > /etc/tools-marker\n").unwrap();
    let sha = sha256(&script);

    let out = s.ok(&["base", "build", "tools", "--script", path_str(&script)]);
    assert_eq!(out, format!("building tools\ntools: built (tag {sha})\n"));
    // The same script again on the same parent does nothing.
    let out = s.ok(&["base", "build", "tools", "--script", path_str(&script)]);
    assert_eq!(out, format!("tools: unchanged (the newest version was built from this script, tag {sha})\n"));
    assert_eq!(versions(&s, "tools"), ["tools"]);
    let v = &show(&s, "tools")["versions"][0];
    assert_eq!((v["kind"].as_str(), v["tag"].as_str()), (Some("script"), Some(sha.as_str())));

    // alias:tag resolves to the version built from that script.
    s.ok(&["create", "t1", "--base", &format!("tools:{sha}")]);
    assert_eq!(s.show("t1")["base"], "tools");
    assert_eq!(s.ok(&["exec", "t1", "--", "cat", "/etc/tools-marker"]), "v1\n");
    // The build script itself is not left in the base.
    let out = s.run(&["exec", "t1", "--", "test", "-e", "/.forkr-build.sh"]);
    assert_eq!(out.status.code(), Some(1));

    // A changed script builds a new version; the old tag still resolves to the old one.
    std::fs::write(&script, "echo v2 > /etc/tools-marker\n").unwrap();
    let sha2 = sha256(&script);
    let out = s.ok(&["base", "build", "tools", "--script", path_str(&script), "--json"]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["unchanged"], false);
    let v2 = r["version"]["version"].as_str().unwrap().to_owned();
    assert!(is_timestamped(&v2, "tools"), "{v2}");
    s.ok(&["create", "t2", "--base", &format!("tools:{sha}")]);
    assert_eq!(s.show("t2")["base"], "tools");
    s.ok(&["create", "t3", "--base", "tools"]);
    assert_eq!(s.ok(&["exec", "t3", "--", "cat", "/etc/tools-marker"]), "v2\n");
    let err = s.fails(&["create", "t4", "--base", "tools:0000"]);
    assert!(err.contains("base \"tools\" has no version tagged \"0000\""), "{err}");

    // show --tag filters by the script's sha256; the counts stay those of the base.
    let tagged: serde_json::Value =
        serde_json::from_str(&s.ok(&["base", "show", "tools", "--tag", &sha2, "--json"])).unwrap();
    assert_eq!(tagged["version_count"], 2);
    assert_eq!(tagged["versions"].as_array().unwrap().len(), 1);
    assert_eq!(tagged["versions"][0]["version"], v2.as_str());
    let text = s.ok(&["base", "show", "tools", "--tag", &sha]);
    assert!(text.contains(&sha) && !text.contains(&sha2), "{text}");

    // --parent: a build on another base, whose files it sees.
    let child = s.work.path().join("child.sh");
    std::fs::write(&child, "cat /etc/tools-marker > /etc/child-marker\n").unwrap();
    s.ok(&["base", "build", "child", "--script", path_str(&child), "-p", "tools"]);
    assert_eq!(show(&s, "child")["versions"][0]["parent"], v2.as_str());
    s.ok(&["create", "c1", "--base", "child"]);
    assert_eq!(s.ok(&["exec", "c1", "--", "cat", "/etc/child-marker"]), "v2\n");

    // A failing script is an error with its output, and builds nothing.
    let bad = s.work.path().join("bad.sh");
    std::fs::write(&bad, "echo about to fail\nexit 3\n").unwrap();
    let err = s.fails(&["base", "build", "tools", "--script", path_str(&bad)]);
    assert!(err.contains("build script exited with code 3") && err.contains("about to fail"), "{err}");
    assert_eq!(versions(&s, "tools").len(), 2);
    let err = s.fails(&["base", "build", "tools", "--script", path_str(&s.work.path().join("none.sh"))]);
    assert!(err.starts_with("Error: cannot read the build script "), "{err}");
    // No transient build box is left over.
    assert_eq!(s.ok(&["list", "-p", "forkr-builds", "--json"]).trim(), "[]");
}

#[test]
fn delete_refuses_while_used_then_force_and_cascade() {
    let s = Server::start();
    let full = tiny_base_tarball(s.work.path());
    let overlay = overlay_tarball(s.work.path());

    // 409 while a box uses it; --force deletes anyway and the box keeps its own root.
    s.ok(&["base", "import", "used", "--file", path_str(&full)]);
    s.ok(&["create", "user1", "--base", "used"]);
    let err = s.fails(&["base", "delete", "used"]);
    assert_eq!(
        err.trim_end(),
        "Error: base version \"used\" is used by box default:user1; delete the box first or pass --force"
    );
    assert_eq!(s.ok(&["base", "delete", "used", "--force"]), "used: deleted\n");
    assert!(!base_names(&s).contains(&"used".to_owned()));
    assert_eq!(s.ok(&["exec", "user1", "--", "echo", "still fine"]), "still fine\n");

    // 409 while a child base exists; --cascade removes the child first, then the parent.
    s.ok(&["base", "import", "par", "--file", path_str(&full)]);
    s.ok(&["base", "import", "kid", "--file", path_str(&overlay), "--parent", "par"]);
    let err = s.fails(&["base", "delete", "par"]);
    assert!(err.contains("base version \"par\" is the parent of \"kid\"; pass --cascade"), "{err}");
    let err = s.fails(&["base", "delete", "par", "--cascade", "--force"]);
    assert_eq!(err.trim_end(), "Error: --force and --cascade cannot be used together");
    assert_eq!(s.ok(&["base", "delete", "par", "--cascade"]), "kid: deleted\npar: deleted\n");
    let names = base_names(&s);
    assert!(!names.contains(&"par".to_owned()) && !names.contains(&"kid".to_owned()), "{names:?}");
    // --cascade still refuses when a box uses a child.
    s.ok(&["base", "import", "par", "--file", path_str(&full)]);
    s.ok(&["base", "import", "kid", "--file", path_str(&overlay), "-p", "par"]);
    s.ok(&["create", "kid-user", "--base", "kid"]);
    let err = s.fails(&["base", "delete", "par", "--cascade"]);
    assert!(err.contains("is used by box default:kid-user"), "{err}");

    // One exact version: the alias falls back to the remaining newest.
    s.ok(&["base", "import", "ver", "--file", path_str(&full)]);
    let out = s.ok(&["base", "import", "ver", "--file", path_str(&full)]);
    let v2 = out.trim_end().strip_suffix(": imported").unwrap().to_owned();
    let deleted: serde_json::Value = serde_json::from_str(&s.ok(&["base", "delete", &v2, "--json"])).unwrap();
    assert_eq!(deleted, serde_json::json!({ "deleted": [v2] }));
    assert_eq!(versions(&s, "ver"), ["ver"]);
    assert_eq!(s.ok(&["base", "delete", "ver"]), "ver: deleted\n");

    let err = s.fails(&["base", "delete", "never-was"]);
    assert!(err.contains("base \"never-was\" not found"), "{err}");
    // Every deleted base's subvolume is gone from disk.
    assert_eq!(base_dirs(&s), ["box-base", "kid", "par"]);
}

/// One tar entry, written with a raw header so paths the `tar` crate's safe setters refuse (absolute,
/// `..`) can be put into the archive.
enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
}

fn raw_tarball(path: &Path, entries: &[Entry]) {
    fn put(field: &mut [u8], value: &str) {
        field.fill(0);
        field[..value.len()].copy_from_slice(value.as_bytes());
    }
    let file = std::fs::File::create(path).unwrap();
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()));
    for e in entries {
        let mut h = tar::Header::new_old();
        let (name, data, kind, link, mode): (&str, &[u8], tar::EntryType, Option<&str>, u32) = match e {
            Entry::Dir(n) => (n, b"", tar::EntryType::Directory, None, 0o755),
            Entry::File(n, d) => (n, d, tar::EntryType::Regular, None, 0o644),
            Entry::Symlink(n, t) => (n, b"", tar::EntryType::Symlink, Some(t), 0o777),
            Entry::HardLink(n, t) => (n, b"", tar::EntryType::Link, Some(t), 0o644),
        };
        put(&mut h.as_old_mut().name, name);
        if let Some(t) = link {
            put(&mut h.as_old_mut().linkname, t);
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
}

#[test]
fn hostile_tarballs_are_refused_and_leave_nothing_behind() {
    let s = Server::start();
    let outside = s.work.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let outside_str = path_str(&outside).to_owned();
    let dotdot_target = format!("../../../../../../../..{outside_str}");

    let cases: Vec<(&str, Vec<Entry>, &str)> = vec![
        (
            "absolute",
            vec![Entry::Dir("etc/"), Entry::File("/etc/evil-abs", b"x")],
            "points outside the root filesystem",
        ),
        (
            "dotdot",
            vec![Entry::Dir("etc/"), Entry::File("etc/../../evil-dotdot", b"x")],
            "points outside the root filesystem",
        ),
        (
            "symlink-abs",
            vec![Entry::Symlink("esc", &outside_str), Entry::File("esc/pwned", b"pwned")],
            "archive entry esc/pwned points outside the root filesystem",
        ),
        (
            "symlink-rel",
            vec![
                Entry::Dir("a/"),
                Entry::Symlink("a/esc", &dotdot_target),
                Entry::File("a/esc/pwned", b"pwned"),
            ],
            "archive entry a/esc/pwned points outside the root filesystem",
        ),
        (
            "hardlink",
            vec![Entry::HardLink("etc-passwd", "/etc/passwd")],
            "hard link etc-passwd points outside",
        ),
    ];
    for (name, entries, expect) in cases {
        let tarball = s.work.path().join(format!("{name}.tar.gz"));
        raw_tarball(&tarball, &entries);
        for parent in [None, Some("box-base")] {
            let mut args = vec!["base", "import", name, "--file", path_str(&tarball)];
            if let Some(p) = parent {
                args.extend(["--parent", p]);
            }
            let err = s.fails(&args);
            assert!(err.starts_with("Error: ") && err.contains(expect), "{name} ({parent:?}): {err}");
            assert!(!base_names(&s).contains(&name.to_owned()), "{name} was registered");
        }
    }
    // Nothing was written outside, nothing half-made is left in bases/ or the scratch area.
    let escaped: Vec<_> =
        std::fs::read_dir(&outside).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).collect();
    assert!(escaped.is_empty(), "files escaped the import: {escaped:?}");
    assert!(!s.work.path().join("evil-dotdot").exists());
    assert!(!Path::new("/etc/evil-abs").exists());
    assert_eq!(base_dirs(&s), ["box-base"]);
    assert!(scratch_entries(&s).is_empty(), "scratch left: {:?}", scratch_entries(&s));
    assert_eq!(base_names(&s), ["box-base"]);
}
