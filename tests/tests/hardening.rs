//! Issue 7, item 1: path safety. A box is hostile: it plants symlinks, `..` chains, hard links,
//! device nodes and races, then asks the server (through the real `4kr` and the raw API) to read or
//! write through them. Host "markers" outside the data dir prove that nothing on the host was read
//! (the secret never appears in an answer) or written (the marker dir is byte-for-byte unchanged
//! and no `pwned-<tag>` file appears where an escaped write would land).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use forkr_tests::Server;
use support::{Markers, Tally, delete_file, get_file, put_file, sh};

const BOX: &str = "victim";

/// Plants the classic escape links in the box (and in its `/home` system volume).
fn plant_links(s: &Server, m: &Markers) {
    let dir = m.dir();
    sh(
        s,
        BOX,
        &format!(
            "set -e; mkdir -p /work /home/u; \
             ln -s / /hostroot; \
             ln -s ../../../../../../../.. /work/up; \
             ln -s {dir}/secret /work/abs-secret; \
             ln -s {dir}/victim /work/abs-victim; \
             ln -s {dir} /work/dirlink; \
             ln -s /proc/self/root /work/proclink; \
             ln -s /proc/1/root /work/proc1link; \
             ln -s / /home/u/hostroot; \
             ln -s {dir}/victim /home/u/abs-victim"
        ),
    );
}

/// Every way we know to name the host secret from inside the box's tree.
fn secret_paths(m: &Markers) -> Vec<String> {
    let dir = m.dir();
    vec![
        format!("{dir}/secret"),
        format!("/hostroot{dir}/secret"),
        format!("/../../../../../../..{dir}/secret"),
        format!("/work/../../../../..{dir}/secret"),
        format!("/work/up{dir}/secret"),
        "/work/abs-secret".to_owned(),
        "/work/dirlink/secret".to_owned(),
        format!("/work/proclink{dir}/secret"),
        format!("/work/proc1link{dir}/secret"),
        format!("/proc/self/root{dir}/secret"),
        format!("/proc/1/root{dir}/secret"),
        format!("/home/../../../../..{dir}/secret"),
        format!("/home/u/hostroot{dir}/secret"),
        format!("/box/all/../../../../..{dir}/secret"),
        format!("/box/proj/../../../..{dir}/secret"),
        format!("/box/bin/./../../../../..{dir}/secret"),
        format!("//..//..//{dir}//secret"),
        format!("/work/up/../../..{dir}/./secret"),
    ]
}

/// Every way we know to name a host file to overwrite or create.
fn write_paths(m: &Markers) -> Vec<String> {
    let (dir, pwned) = (m.dir(), m.pwned());
    let mut v = Vec::new();
    for name in ["victim", pwned.as_str()] {
        v.extend([
            format!("{dir}/{name}"),
            format!("/hostroot{dir}/{name}"),
            format!("/../../../../../../..{dir}/{name}"),
            format!("/work/up{dir}/{name}"),
            format!("/work/dirlink/{name}"),
            format!("/work/proclink{dir}/{name}"),
            format!("/home/u/hostroot{dir}/{name}"),
            format!("/home/../../../../..{dir}/{name}"),
            format!("/box/all/../../../..{dir}/{name}"),
        ]);
    }
    v.extend([
        "/work/abs-victim".to_owned(),
        "/home/u/abs-victim".to_owned(),
        format!("/hostroot/{pwned}"),
        format!("/hostroot/tmp/{pwned}"),
        format!("/../../../../tmp/{pwned}"),
        format!("/work/up/tmp/{pwned}"),
        format!("/work/up/etc/{pwned}"),
    ]);
    v
}

#[test]
fn cp_get_put_never_leave_the_box() {
    let s = Server::start();
    let m = Markers::new();
    s.ok(&["create", BOX]);
    plant_links(&s, &m);
    let mut tally = Tally::default();
    let local = s.work.path().join("got");

    // Reads: through the raw API (paths verbatim) and through `4kr get`.
    for path in secret_paths(&m) {
        let r = get_file(&s, BOX, &path);
        m.assert_not_leaked(&format!("GET {path}"), &r.body);
        assert!(r.status >= 400, "GET {path} returned {}: {}", r.status, r.text());
        support::assert_error_shape(&r);
        tally.one();

        let _ = std::fs::remove_file(&local);
        let out = s.run(&["get", &format!("{BOX}:{path}"), local.to_str().unwrap()]);
        assert!(!out.status.success(), "4kr get {path} succeeded");
        m.assert_not_leaked(&format!("4kr get {path}"), &out.stdout);
        m.assert_not_leaked(&format!("4kr get {path}"), &out.stderr);
        if let Ok(data) = std::fs::read(&local) {
            m.assert_not_leaked(&format!("4kr get {path} (file)"), &data);
        }
        tally.one();
    }

    // Writes: the raw API with and without mkdirs, and `4kr put`. A write may land inside the box
    // (that is where `..` and absolute links resolve); it must never land on the host.
    let payload = s.work.path().join("payload");
    std::fs::write(&payload, "written by an attack\n").unwrap();
    for path in write_paths(&m) {
        for mkdirs in [false, true] {
            let r = put_file(&s, BOX, &path, b"written by an attack\n", mkdirs);
            assert!(r.status < 500, "PUT {path}: {} {}", r.status, r.text());
            if r.status >= 400 {
                support::assert_error_shape(&r);
            }
            tally.one();
        }
        let _ = s.run(&["put", payload.to_str().unwrap(), &format!("{BOX}:{path}")]);
        tally.one();
        let r = delete_file(&s, BOX, &path);
        assert!(r.status < 500, "DELETE {path}: {} {}", r.status, r.text());
        tally.one();
        m.assert_untouched(&[s.work.path(), s.data.path()]);
    }

    // A symlink at the target name is replaced by the file, not followed.
    sh(&s, BOX, &format!("ln -sf {}/victim /work/abs-victim", m.dir()));
    let r = put_file(&s, BOX, "/work/abs-victim", b"inside\n", false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(sh(&s, BOX, "[ -L /work/abs-victim ] && echo link || cat /work/abs-victim"), "inside\n");
    tally.one();

    m.assert_untouched(&[s.work.path(), s.data.path()]);
    tally.report("cp/get/put path attacks", 100);
}

#[test]
fn a_symlink_swapped_in_during_copies_never_redirects_them() {
    let s = Server::start();
    let m = Markers::new();
    s.ok(&["create", BOX]);
    // Inside the box, /work/race flips as fast as it can between a real directory (holding a
    // box-side `secret`) and a symlink to the host marker dir, or to `/`.
    let dir = m.dir();
    let flipper = format!(
        "mkdir -p /work; i=0; while [ ! -e /work/stop ]; do \
           rm -rf /work/race.new; mkdir /work/race.new; echo box-side > /work/race.new/secret; \
           mv -T /work/race.new /work/race 2>/dev/null || {{ rm -rf /work/race; mv /work/race.new /work/race; }}; \
           rm -rf /work/race.link; \
           if [ $((i % 2)) = 0 ]; then ln -s {dir} /work/race.link; else ln -s / /work/race.link; fi; \
           mv -T /work/race.link /work/race 2>/dev/null || {{ rm -rf /work/race; mv /work/race.link /work/race; }}; \
           i=$((i+1)); done"
    );
    s.ok(&["exec", BOX, "--bg", "--", "sh", "-c", &flipper]);

    let mut tally = Tally::default();
    let (mut got_box_side, mut refused) = (0, 0);
    let pwned = m.pwned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut rounds = 0;
    // Bounded: 400 rounds of (2 reads + 2 writes) or 20 s, whichever comes first.
    while rounds < 400 && Instant::now() < deadline {
        for path in ["/work/race/secret".to_owned(), format!("/work/race{dir}/secret")] {
            let r = get_file(&s, BOX, &path);
            m.assert_not_leaked(&format!("racing GET {path}"), &r.body);
            assert!(r.status < 500, "racing GET {path}: {} {}", r.status, r.text());
            if r.status == 200 {
                assert_eq!(r.text(), "box-side\n", "racing GET {path} read something else");
                got_box_side += 1;
            } else {
                refused += 1;
            }
            tally.one();
        }
        for path in [format!("/work/race/{pwned}"), format!("/work/race{dir}/{pwned}")] {
            let r = put_file(&s, BOX, &path, b"raced\n", rounds % 2 == 0);
            assert!(r.status < 500, "racing PUT {path}: {} {}", r.status, r.text());
            tally.one();
        }
        rounds += 1;
    }
    // A few through the real CLI too.
    let local = s.work.path().join("raced");
    for _ in 0..20 {
        let _ = std::fs::remove_file(&local);
        let out = s.run(&["get", &format!("{BOX}:/work/race/secret"), local.to_str().unwrap()]);
        if let Ok(data) = std::fs::read(&local) {
            m.assert_not_leaked("racing 4kr get", &data);
        }
        m.assert_not_leaked("racing 4kr get", &out.stderr);
        tally.one();
    }
    sh(&s, BOX, "touch /work/stop");
    eprintln!("race: {rounds} rounds, {got_box_side} reads saw the box's file, {refused} were refused");
    assert!(got_box_side > 0, "the race never saw the directory state: the test did not race");
    m.assert_untouched(&[s.work.path(), s.data.path()]);
    tally.report("symlink-swap race", 200);
}

#[test]
fn hard_links_fifos_and_device_nodes() {
    let s = Server::start();
    let m = Markers::new();
    s.ok(&["create", BOX]);
    let mut tally = Tally::default();

    // A put to one name of a hard-linked pair replaces that name; the other keeps its content.
    sh(&s, BOX, "mkdir -p /work && echo original > /work/h1 && ln /work/h1 /work/h2");
    assert_eq!(put_file(&s, BOX, "/work/h2", b"replaced\n", false).status, 200);
    assert_eq!(sh(&s, BOX, "cat /work/h1 /work/h2"), "original\nreplaced\n");
    assert_eq!(get_file(&s, BOX, "/work/h1").text(), "original\n");
    tally.one();

    // A box cannot make a hard link to anything outside its root: nothing of the host is visible,
    // and links across the box's mounts fail.
    let out = s.run(&["exec", BOX, "--", "sh", "-c", &format!("ln {}/secret /work/hl", m.dir())]);
    assert!(!out.status.success(), "a host file was reachable for a hard link");
    let out = s.run(&["exec", BOX, "--", "sh", "-c", "ln /etc/hosts /work/hosts-link"]);
    assert!(!out.status.success(), "hard link to the bind-mounted /etc/hosts");
    let out = s.run(&["exec", BOX, "--", "sh", "-c", "ln /etc/passwd /home/passwd-link"]);
    assert!(!out.status.success(), "hard link across the /home mount");
    tally.one();
    tally.one();
    tally.one();

    // FIFOs and device nodes a box planted are refused; the server never even opens them (a FIFO
    // open would block, a device open can have side effects on the host, e.g. a watchdog).
    sh(&s, BOX, "mkfifo /work/fifo && mknod /work/null c 1 3 && mknod /work/zero c 1 5");
    let root = s.data.path().join("fs/roots/default").join(BOX);
    let watch = OpenWatch::new(&[&root.join("work/fifo"), &root.join("work/null"), &root.join("work/zero")]);
    for p in ["/work/fifo", "/work/null", "/work/zero"] {
        let r = get_file(&s, BOX, p);
        r.error(400, "not_a_file");
        tally.one();
        let out = s.run(&["get", &format!("{BOX}:{p}"), s.work.path().join("dev").to_str().unwrap()]);
        assert!(!out.status.success(), "4kr get {p} succeeded");
        tally.one();
        // A put replaces the node by a regular file (rename over it), never writes into it.
        let r = put_file(&s, BOX, p, b"regular now\n", false);
        assert_eq!(r.status, 200, "{}", r.text());
        tally.one();
    }
    assert_eq!(watch.opened(), Vec::<String>::new(), "the server opened nodes the box planted");
    assert_eq!(sh(&s, BOX, "cat /work/fifo /work/null"), "regular now\nregular now\n");

    // A setuid file may be put into the box (the box runs as root anyway), but `4kr get` never makes
    // a setuid or setgid file on this machine from what a box says.
    sh(&s, BOX, "cp /bin/busybox /work/suid && chmod 6755 /work/suid");
    let local = s.work.path().join("suid");
    s.ok(&["get", &format!("{BOX}:/work/suid"), local.to_str().unwrap()]);
    let mode = std::fs::metadata(&local).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode & 0o6000, 0, "4kr get created a set-id file: {mode:o}");
    assert_eq!(mode, 0o755);
    tally.one();

    m.assert_untouched(&[s.work.path(), s.data.path()]);
    tally.report("hard link / FIFO / device attacks", 10);
}

#[test]
fn diff_file_resolves_inside_each_tree() {
    let s = Server::start();
    let m = Markers::new();
    s.ok(&["create", BOX]);
    let dir = m.dir();
    let mut tally = Tally::default();
    // Links in the snapshot and links added after it.
    sh(&s, BOX, &format!("mkdir -p /work && ln -s {dir}/secret /work/snap-link && ln -s / /work/snap-root"));
    s.ok(&["snapshot", "create", BOX, "v0"]);
    plant_links(&s, &m);
    sh(&s, BOX, &format!("rm /work/snap-link && ln -s {dir}/victim /work/snap-link"));
    let mut paths = secret_paths(&m);
    paths.extend([
        "/work/snap-link".to_owned(),
        format!("/work/snap-root{dir}/secret"),
        format!("/work/snap-root{dir}/victim"),
    ]);
    for path in &paths {
        let out = s.run(&["diff", "file", BOX, path]);
        m.assert_not_leaked(&format!("diff file {path}"), &out.stdout);
        m.assert_not_leaked(&format!("diff file {path}"), &out.stderr);
        let r = support::send(
            support::req(&s, reqwest::Method::GET, &format!("/v1/projects/default/boxes/{BOX}/diff/file"))
                .query(&[("path", path.as_str()), ("against", "v0")]),
        );
        m.assert_not_leaked(&format!("GET diff/file {path}"), &r.body);
        assert!(r.status < 500, "diff file {path}: {} {}", r.status, r.text());
        tally.one();
        tally.one();
    }
    // Snapshot names are names, not paths.
    for against in ["../v0", "../../checkpoints", "v0/../v0", "/etc", ".."] {
        let r = support::send(
            support::req(&s, reqwest::Method::GET, &format!("/v1/projects/default/boxes/{BOX}/diff/file"))
                .query(&[("path", "/etc/passwd"), ("against", against)]),
        );
        assert_eq!(r.status, 400, "against {against:?}: {}", r.text());
        support::assert_error_shape(&r);
        tally.one();
    }
    m.assert_untouched(&[s.work.path(), s.data.path()]);
    tally.report("diff file attacks", 40);
}

/// One tar entry, written with a raw header so paths the `tar` crate's safe setters refuse
/// (absolute, `..`) can be put into the archive.
enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Mode(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    Char(&'a str, u32, u32),
    Block(&'a str, u32, u32),
    Fifo(&'a str),
    /// A PAX extended header whose `path` overrides the next entry's name.
    PaxPath(&'a str),
}

fn raw_tarball(path: &Path, entries: &[Entry]) {
    fn put(field: &mut [u8], value: &str) {
        field.fill(0);
        field[..value.len()].copy_from_slice(value.as_bytes());
    }
    let file = std::fs::File::create(path).unwrap();
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()));
    for e in entries {
        if let Entry::PaxPath(p) = e {
            b.append_pax_extensions([("path", p.as_bytes())]).unwrap();
            continue;
        }
        let mut h = tar::Header::new_ustar();
        let (name, data, kind, link, mode, dev): (&str, &[u8], tar::EntryType, Option<&str>, u32, _) = match e
        {
            Entry::Dir(n) => (n, b"", tar::EntryType::Directory, None, 0o755, None),
            Entry::File(n, d) => (n, d, tar::EntryType::Regular, None, 0o644, None),
            Entry::Mode(n, d, m) => (n, d, tar::EntryType::Regular, None, *m, None),
            Entry::Symlink(n, t) => (n, b"", tar::EntryType::Symlink, Some(*t), 0o777, None),
            Entry::HardLink(n, t) => (n, b"", tar::EntryType::Link, Some(*t), 0o644, None),
            Entry::Char(n, ma, mi) => (n, b"", tar::EntryType::Char, None, 0o666, Some((*ma, *mi))),
            Entry::Block(n, ma, mi) => (n, b"", tar::EntryType::Block, None, 0o660, Some((*ma, *mi))),
            Entry::Fifo(n) => (n, b"", tar::EntryType::Fifo, None, 0o644, None),
            Entry::PaxPath(_) => unreachable!(),
        };
        put(&mut h.as_old_mut().name, name);
        if let Some(t) = link {
            put(&mut h.as_old_mut().linkname, t);
        }
        if let Some((ma, mi)) = dev {
            h.set_device_major(ma).unwrap();
            h.set_device_minor(mi).unwrap();
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

/// The tiny base's entries: a root filesystem with `/bin/sh` so the import's architecture check
/// passes and only the hostile part can fail it.
fn with_busybox<'a>(busybox: &'a [u8], extra: Vec<Entry<'a>>) -> Vec<Entry<'a>> {
    let mut v = vec![
        Entry::Dir("bin/"),
        Entry::Mode("bin/busybox", busybox, 0o755),
        Entry::Symlink("bin/sh", "busybox"),
    ];
    v.extend(extra);
    v
}

fn base_names(s: &Server) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["base", "list", "--json"])).unwrap();
    v.as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn hostile_base_tarballs() {
    let s = Server::start();
    let m = Markers::new();
    let (dir, pwned) = (m.dir().to_owned(), m.pwned());
    let busybox = std::fs::read("/usr/bin/busybox").unwrap();
    let up = format!("../../../../../../../..{dir}");
    let abs_pwned = format!("{dir}/{pwned}");
    let rel_pwned = format!("../../../../../../..{dir}/{pwned}");
    let through_root = format!("r{dir}/{pwned}");
    let through_up = format!("a/up/{pwned}");
    let victim_link = format!("{dir}/victim");
    let pax_abs = format!("{dir}/{pwned}");
    let mut tally = Tally::default();

    // Each must be refused with a clear 400 and leave nothing behind.
    let refused: Vec<(&str, Vec<Entry>)> = vec![
        ("absolute name", vec![Entry::File(&abs_pwned, b"x")]),
        ("dot-dot name", vec![Entry::File(&rel_pwned, b"x")]),
        ("dot-dot in the middle", vec![Entry::Dir("etc/"), Entry::File("etc/../../x", b"x")]),
        ("pax absolute path", vec![Entry::PaxPath(&pax_abs), Entry::File("harmless", b"x")]),
        ("pax dot-dot path", vec![Entry::PaxPath(&rel_pwned), Entry::File("harmless", b"x")]),
        ("write through a symlink to /", vec![Entry::Symlink("r", "/"), Entry::File(&through_root, b"x")]),
        ("write through a symlink out", vec![Entry::Symlink("d", &dir), Entry::File("d/pwned", b"x")]),
        (
            "write through a relative symlink",
            vec![Entry::Dir("a/"), Entry::Symlink("a/up", &up), Entry::File(&through_up, b"x")],
        ),
        ("directory through a symlink", vec![Entry::Symlink("d", &dir), Entry::Dir("d/sub/")]),
        ("hard link to an absolute host path", vec![Entry::HardLink("passwd", "/etc/passwd")]),
        ("hard link with dot-dot", vec![Entry::HardLink("passwd", "../../../../../../etc/passwd")]),
        (
            "hard link through a symlink",
            vec![Entry::Symlink("r", "/"), Entry::HardLink("passwd", "r/etc/passwd")],
        ),
        (
            "hard link to the victim through a symlink",
            vec![Entry::Symlink("d", &dir), Entry::HardLink("v", "d/victim")],
        ),
    ];
    for (what, entries) in refused {
        let tarball = s.work.path().join("hostile.tar.gz");
        raw_tarball(&tarball, &with_busybox(&busybox, entries));
        for parent in [None, Some("box-base")] {
            let mut args = vec!["base", "import", "hostile", "--file", tarball.to_str().unwrap()];
            if let Some(p) = parent {
                args.extend(["--parent", p]);
            }
            let err = s.fails(&args);
            assert!(
                err.starts_with("Error: ") && err.contains("outside the root filesystem"),
                "{what}: {err}"
            );
            assert!(!base_names(&s).contains(&"hostile".to_owned()), "{what}: registered");
            m.assert_untouched(&[s.work.path(), s.data.path()]);
            tally.one();
        }
    }

    // Each is accepted, with the hostile part neutralised.
    let accepted: Vec<(&str, Vec<Entry>, &str)> = vec![
        // A link that points out is only a link: it resolves inside the box at run time.
        (
            "symlink out as a plain link",
            vec![Entry::Symlink("esc", &victim_link)],
            "[ -L /esc ] && ! cat /esc",
        ),
        (
            "file replacing an earlier symlink",
            vec![Entry::Symlink("f", &victim_link), Entry::File("f", b"replaced\n")],
            "[ ! -L /f ] && grep -qx replaced /f",
        ),
        (
            "symlink replacing an earlier file",
            vec![Entry::File("g", b"first\n"), Entry::Symlink("g", &victim_link)],
            "[ -L /g ]",
        ),
        (
            "device nodes are skipped",
            vec![Entry::Dir("dev/"), Entry::Char("dev/mem", 1, 1), Entry::Block("dev/vda", 254, 0)],
            "[ ! -e /dev/vda ]",
        ),
        // The extractor makes no FIFOs (the tar crate writes them as empty regular files).
        ("fifo", vec![Entry::Fifo("fifo")], "[ ! -p /fifo ]"),
        ("setuid is kept inside the box", vec![Entry::Mode("suid", b"#!/bin/sh\n", 0o4755)], "[ -u /suid ]"),
        ("leading ./ and //", vec![Entry::File("./a//b", b"ok\n")], "grep -qx ok /a/b"),
    ];
    for (i, (what, entries, check)) in accepted.into_iter().enumerate() {
        let tarball = s.work.path().join(format!("ok-{i}.tar.gz"));
        raw_tarball(&tarball, &with_busybox(&busybox, entries));
        let name = format!("ok-{i}");
        s.ok(&["base", "import", &name, "--file", tarball.to_str().unwrap()]);
        let b = format!("chk-{i}");
        s.ok(&["create", &b, "--base", &name]);
        let out = s.run(&["exec", &b, "--", "sh", "-c", check]);
        assert!(
            out.status.success(),
            "{what}: check {check:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        s.ok(&["delete", "--force", &b]);
        m.assert_untouched(&[s.work.path(), s.data.path()]);
        tally.one();
    }

    // Nothing half-made is left: no scratch, no unregistered base directory.
    let scratch: Vec<_> = std::fs::read_dir(s.data.path().join("fs/tmp")).unwrap().flatten().collect();
    assert!(scratch.is_empty(), "scratch left: {scratch:?}");
    assert!(!s.data.path().join("fs/bases/hostile").exists());
    tally.report("hostile tarballs", 30);
}

#[test]
fn the_data_dir_is_closed_to_other_host_users() {
    let s = Server::start();
    // Box roots hold setuid files a box made; host users other than root must not reach them.
    let fs_mode = std::fs::metadata(s.data.path().join("fs")).unwrap().permissions().mode() & 0o777;
    assert_eq!(fs_mode & 0o077, 0, "fs/ is {fs_mode:o}: other host users could run a box's setuid files");
    let token_mode = std::fs::metadata(s.data.path().join("token")).unwrap().permissions().mode() & 0o777;
    assert_eq!(token_mode, 0o600);
    let db_mode = std::fs::metadata(s.data.path().join("forkr.db")).unwrap().permissions().mode() & 0o777;
    assert_eq!(db_mode & 0o077, 0, "forkr.db is {db_mode:o}: it holds token hashes and box environments");
}

/// Watches files for opens with inotify (`IN_OPEN`), to prove the server never opened them.
struct OpenWatch {
    fd: std::os::fd::OwnedFd,
    names: Vec<(i32, String)>,
}

impl OpenWatch {
    fn new(paths: &[&Path]) -> OpenWatch {
        use nix::libc;
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: plain syscall; the fd is owned right away.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(raw >= 0, "inotify_init1: {}", std::io::Error::last_os_error());
        // SAFETY: fresh descriptor.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let mut names = Vec::new();
        for p in paths {
            let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
            // IN_DONT_FOLLOW: watch the node itself. SAFETY: valid fd and C string.
            let wd =
                unsafe { libc::inotify_add_watch(raw, c.as_ptr(), libc::IN_OPEN | libc::IN_DONT_FOLLOW) };
            assert!(wd >= 0, "inotify_add_watch {}: {}", p.display(), std::io::Error::last_os_error());
            names.push((wd, p.display().to_string()));
        }
        OpenWatch { fd, names }
    }

    /// The watched paths that were opened since [`OpenWatch::new`].
    fn opened(&self) -> Vec<String> {
        use nix::libc;
        use std::os::fd::AsRawFd;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reading into a local buffer of the given size.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            let mut off = 0usize;
            while off + std::mem::size_of::<libc::inotify_event>() <= n as usize {
                // SAFETY: the kernel wrote whole events; read_unaligned copes with the byte buffer.
                let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
                if ev.mask & libc::IN_OPEN != 0
                    && let Some((_, name)) = self.names.iter().find(|(wd, _)| *wd == ev.wd)
                    && !out.contains(name)
                {
                    out.push(name.clone());
                }
                off += std::mem::size_of::<libc::inotify_event>() + ev.len as usize;
            }
        }
        out
    }
}
