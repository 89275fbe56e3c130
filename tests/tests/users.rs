//! Issue 5, items 4 and 5 end to end: project users (document 004) and `4kr inject` (document 002),
//! through the real `4kr` and `forkr-server`.

use std::path::Path;
use std::process::Output;

use forkr_tests::Server;
use serde_json::{Value, json};

fn parse(s: &Server, args: &[&str]) -> Value {
    serde_json::from_str(&s.ok(args)).unwrap_or_else(|e| panic!("4kr {args:?} did not print JSON: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `POST /v1/projects/{project}/users` straight to the API: (status, body).
fn post_user(s: &Server, project: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/projects/{project}/users", s.url))
        .bearer_auth(&s.token)
        .json(&body)
        .send()
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

#[test]
fn create_list_update_delete_with_sequential_uids() {
    let s = Server::start();
    assert_eq!(s.ok(&["user", "create", "alice"]), "alice: created (uid 20000, home /home/alice)\n");
    assert_eq!(s.ok(&["user", "create", "bob"]), "bob: created (uid 20001, home /home/bob)\n");
    let carol = parse(&s, &["user", "create", "carol", "--json"]);
    assert_eq!(
        carol,
        json!({"name": "carol", "project": "default", "uid": 20002, "gid": 20002, "home": "/home/carol",
               "shell": "/bin/bash", "created_at": carol["created_at"]})
    );
    // Sequential per project: another project starts at 20000 again.
    assert_eq!(parse(&s, &["user", "create", "alice", "-p", "other", "--json"])["uid"], 20000);
    assert_eq!(parse(&s, &["user", "create", "other:zed", "--json"])["uid"], 20001);

    let table = s.ok(&["user", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("UID") && lines[0].contains("SHELL"),
        "{table}"
    );
    assert!(lines[1].starts_with("alice") && lines[1].contains("20000") && lines[1].contains("/home/alice"));
    let listed = parse(&s, &["user", "list", "--json"]);
    let uids: Vec<u64> = listed.as_array().unwrap().iter().map(|u| u["uid"].as_u64().unwrap()).collect();
    assert_eq!(uids, [20000, 20001, 20002]);

    // Duplicates are a 409.
    let (status, body) = post_user(&s, "default", json!({"name": "alice"}));
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    let err = s.fails(&["user", "create", "alice"]);
    assert!(err.contains("user \"alice\" already exists in project \"default\""), "{err}");

    // Reserved system names and malformed names are a 400, from the server as from the CLI.
    for name in ["root", "daemon", "nobody", "www-data"] {
        let (status, body) = post_user(&s, "default", json!({"name": name}));
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["error"]["code"], "invalid_name");
        assert!(body["error"]["message"].as_str().unwrap().contains("reserved system name"), "{body}");
        let err = s.fails(&["user", "create", name]);
        assert!(err.contains("reserved system name"), "{err}");
    }
    for name in ["Alice", "a.b", "a b", "", &"x".repeat(33)] {
        let (status, body) = post_user(&s, "default", json!({"name": name}));
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_name")), "{name:?}: {body}");
    }
    assert_eq!(post_user(&s, "default", json!({"name": &"x".repeat(32)})).0, 201);
    let (status, body) = post_user(&s, "default", json!({"name": "sheller", "shell": "bash"}));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_shell")), "{body}");

    // Update: the shell is what may change.
    assert_eq!(s.ok(&["user", "update", "alice", "--shell", "/bin/sh"]), "alice: updated (shell /bin/sh)\n");
    assert_eq!(parse(&s, &["user", "update", "alice", "--shell", "/bin/zsh", "-j"])["shell"], "/bin/zsh");
    let err = s.fails(&["user", "update", "alice"]);
    assert!(err.contains("no updates provided"), "{err}");
    let err = s.fails(&["user", "update", "ghost", "--shell", "/bin/sh"]);
    assert!(err.contains("user \"ghost\" not found in project \"default\""), "{err}");

    // Delete: per user a line; the UID of a deleted user in the middle is not reused.
    assert_eq!(s.ok(&["user", "delete", "bob"]), "bob: deleted\n");
    let err = s.fails(&["user", "delete", "alice", "--json"]);
    assert!(err.contains("--json is not supported for user delete"), "{err}");
    assert_eq!(parse(&s, &["user", "create", "dave", "--json"])["uid"], 20004);
    let names: Vec<String> = parse(&s, &["user", "list", "-j"])
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["alice".to_owned(), "carol".to_owned(), "x".repeat(32), "dave".to_owned()]);
    // The other project is untouched.
    assert_eq!(parse(&s, &["user", "list", "-p", "other", "-j"]).as_array().unwrap().len(), 2);
}

#[test]
fn exec_as_a_project_user() {
    let s = Server::start();
    s.ok(&["create", "web"]);
    s.ok(&["user", "create", "alice"]);
    s.ok(&["user", "create", "bob"]);

    assert_eq!(s.ok(&["exec", "web", "--user", "alice", "--", "id", "-u"]), "20000\n");
    assert_eq!(s.ok(&["exec", "web", "--user", "alice", "--", "id", "-g"]), "20000\n");
    assert_eq!(
        s.ok(&["exec", "web", "--user", "alice", "--", "id", "-G"]),
        "20000\n",
        "no supplementary groups"
    );
    assert_eq!(
        s.ok(&["exec", "web", "--user", "alice", "--sh", "--", "echo $HOME $USER $LOGNAME"]),
        "/home/alice alice alice\n"
    );
    // whoami and id -un go through the synthesised passwd/group entries.
    assert_eq!(s.ok(&["exec", "web", "--user", "alice", "--", "whoami"]), "alice\n");
    assert_eq!(s.ok(&["exec", "web", "--user", "alice", "--", "id", "-gn"]), "alice\n");
    // The home exists in the project's /home volume, owned by the user, and is writable by it.
    assert_eq!(s.ok(&["exec", "web", "--", "stat", "-c", "%u:%g %a", "/home/alice"]), "20000:20000 750\n");
    assert_eq!(
        s.ok(&["exec", "web", "--user", "alice", "--sh", "--", "echo hi > ~/f && cat ~/f && stat -c %u ~/f"]),
        "hi\n20000\n"
    );
    // The user cannot write what root owns.
    let out = s.run(&["exec", "web", "--user", "alice", "--sh", "--", "echo x > /etc/passwd"]);
    assert!(!out.status.success(), "a project user wrote /etc/passwd");

    // The base's own entries stay; alice's line is there once however often she execs.
    let passwd = s.ok(&["exec", "web", "--", "cat", "/etc/passwd"]);
    let alice_line = "alice:x:20000:20000:forkr project user:/home/alice:/bin/bash";
    assert_eq!(passwd, format!("root:x:0:0:root:/root:/bin/bash\n{alice_line}\n"));
    // Other users' entries accumulate.
    assert_eq!(s.ok(&["exec", "web", "--user", "bob", "--", "whoami"]), "bob\n");
    let passwd = s.ok(&["exec", "web", "--", "cat", "/etc/passwd"]);
    assert_eq!(
        passwd,
        format!(
            "root:x:0:0:root:/root:/bin/bash\n{alice_line}\nbob:x:20001:20001:forkr project user:/home/bob:/bin/bash\n"
        )
    );
    assert_eq!(
        s.ok(&["exec", "web", "--", "cat", "/etc/group"]),
        "root:x:0:\nalice:x:20000:\nbob:x:20001:\n"
    );
    // A changed shell: the old line goes, a fresh one is appended.
    s.ok(&["user", "update", "alice", "--shell", "/bin/sh"]);
    assert_eq!(s.ok(&["exec", "web", "--user", "alice", "--", "id", "-u"]), "20000\n");
    let passwd = s.ok(&["exec", "web", "--", "cat", "/etc/passwd"]);
    assert!(passwd.ends_with("alice:x:20000:20000:forkr project user:/home/alice:/bin/sh\n"), "{passwd}");
    assert_eq!(passwd.lines().filter(|l| l.starts_with("alice:")).count(), 1, "{passwd}");

    // Root stays root; `--user root` is root too.
    assert_eq!(s.ok(&["exec", "web", "--", "id", "-u"]), "0\n");
    assert_eq!(s.ok(&["exec", "web", "--user", "root", "--", "id", "-u"]), "0\n");

    // Unknown and malformed users.
    let err = s.fails(&["exec", "web", "--user", "ghost", "--", "true"]);
    assert!(err.contains("user \"ghost\" not found in project \"default\""), "{err}");
    assert!(err.contains("4kr user create ghost"), "{err}");
    let err = s.fails(&["exec", "web", "--user", "Bad.Name", "--", "true"]);
    assert!(err.contains("invalid user name"), "{err}");
    let err = s.fails(&["exec", "web", "--user", "daemon", "--", "true"]);
    assert!(err.contains("reserved system name"), "{err}");
    // Users are per project.
    s.ok(&["create", "elsewhere", "-p", "other"]);
    let err = s.fails(&["exec", "other:elsewhere", "--user", "alice", "--", "true"]);
    assert!(err.contains("not found in project \"other\""), "{err}");

    // Background exec runs as the user too.
    let pid = s.ok(&["exec", "web", "--user", "alice", "--bg", "--", "sh", "-c", "id -u > /home/alice/bg"]);
    assert!(pid.starts_with("pid="), "{pid}");
    let mut got = String::new();
    for _ in 0..100 {
        got = s.ok(&["exec", "web", "--", "sh", "-c", "cat /home/alice/bg 2>/dev/null || true"]);
        if !got.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(got, "20000\n");

    // /home is the project's: a second box sees alice's files; they survive the box.
    s.ok(&["create", "api"]);
    assert_eq!(s.ok(&["exec", "api", "--user", "alice", "--", "cat", "/home/alice/f"]), "hi\n");
    s.ok(&["delete", "--force", "web"]);
    assert_eq!(s.ok(&["exec", "api", "--", "cat", "/home/alice/f"]), "hi\n");
}

/// Writes `content` at `home/rel`, creating the folders.
fn put(home: &Path, rel: &str, content: &str) {
    let p = home.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// `4kr inject args` with `HOME` set to a fake home and no other git config variables.
fn inject(s: &Server, home: &Path, args: &[&str]) -> Output {
    let mut full = vec!["inject"];
    full.extend_from_slice(args);
    s.cmd(&full)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("GIT_CONFIG_GLOBAL")
        .output()
        .expect("run 4kr inject")
}

#[test]
fn inject_copies_credentials_with_documented_modes() {
    let s = Server::start();
    s.ok(&["create", "web"]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    put(h, ".codex/auth.json", "{\"token\":\"t\"}\n");
    put(h, ".codex/config.toml", "model = \"o3\"\n");
    put(h, ".ssh/id_ed25519", "PRIVATE\n");
    put(h, ".ssh/id_ed25519.pub", "ssh-ed25519 AAAA me\n");
    put(h, ".ssh/id_rsa", "other key, not the first choice\n");
    put(h, ".gitconfig", "[user]\n\tname = Me\n");

    let out = inject(&s, h, &["web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).lines().last(),
        Some("OK: injected codex auth/config, ssh keypair, git config into default:web")
    );
    assert!(!stderr(&out).contains("note: skipped"), "{}", stderr(&out));
    // The tiny base has no ssh: the GitHub test is skipped with a note.
    assert!(stderr(&out).contains("ssh is not installed in the box"), "{}", stderr(&out));

    let stat = |p: &str| s.ok(&["exec", "web", "--", "stat", "-c", "%a %u", p]);
    for (path, mode) in [
        ("/root/.codex/auth.json", "600 0"),
        ("/root/.codex/codex.toml", "644 0"),
        ("/root/.ssh/id_ed25519", "600 0"),
        ("/root/.ssh/id_ed25519.pub", "644 0"),
        ("/root/.gitconfig", "644 0"),
        ("/root/.ssh", "700 0"),
    ] {
        assert_eq!(stat(path), format!("{mode}\n"), "{path}");
    }
    assert_eq!(s.ok(&["exec", "web", "--", "cat", "/root/.codex/codex.toml"]), "model = \"o3\"\n");
    assert_eq!(s.ok(&["exec", "web", "--", "cat", "/root/.ssh/id_ed25519"]), "PRIVATE\n");
    assert_eq!(s.ok(&["exec", "web", "--", "cat", "/root/.gitconfig"]), "[user]\n\tname = Me\n");
    let out = s.run(&["exec", "web", "--", "test", "-e", "/root/.ssh/id_rsa"]);
    assert!(!out.status.success(), "only the first key of the documented order is copied");
    let known = s.ok(&["exec", "web", "--", "cat", "/root/.ssh/known_hosts"]);
    assert_eq!(known.lines().filter(|l| l.starts_with("github.com ")).count(), 3, "{known}");

    // Again: same result, known_hosts not duplicated, the box's own lines kept.
    s.ok(&["exec", "web", "--sh", "--", "echo 'example.com ssh-ed25519 AAAAkeep' >> /root/.ssh/known_hosts"]);
    let out = inject(&s, h, &["web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let known = s.ok(&["exec", "web", "--", "cat", "/root/.ssh/known_hosts"]);
    assert_eq!(known.lines().count(), 4, "{known}");
    assert!(known.contains("example.com ssh-ed25519 AAAAkeep"), "{known}");
}

#[test]
fn inject_skips_missing_defaults_and_refuses_missing_explicit_paths() {
    let s = Server::start();
    s.ok(&["create", "web"]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // Only codex auth and an RSA key pair; no codex config, no git config anywhere.
    put(h, ".codex/auth.json", "{}\n");
    put(h, ".ssh/id_rsa", "RSA\n");
    put(h, ".ssh/id_rsa.pub", "ssh-rsa AAAA me\n");

    let out = inject(&s, h, &["web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("note: skipped codex config: "), "{err}");
    assert!(err.contains("note: skipped git config: "), "{err}");
    assert_eq!(stdout(&out).lines().last(), Some("OK: injected codex auth, ssh keypair into default:web"));
    assert_eq!(s.ok(&["exec", "web", "--", "stat", "-c", "%a", "/root/.ssh/id_rsa"]), "600\n");
    let out = s.run(&["exec", "web", "--", "test", "-e", "/root/.codex/codex.toml"]);
    assert!(!out.status.success(), "a skipped file was written");

    // An empty HOME: nothing to copy is not an error either.
    let empty = tempfile::tempdir().unwrap();
    let out = inject(&s, empty.path(), &["web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().last(), Some("OK: injected nothing into default:web"));

    // A path given explicitly that does not exist is an error, and nothing is copied.
    s.ok(&["create", "clean"]);
    let missing = h.join("no-such-key");
    let out = inject(&s, h, &["clean", "--ssh-key", missing.to_str().unwrap()]);
    assert!(!out.status.success(), "inject with a missing --ssh-key succeeded");
    assert!(
        stderr(&out).contains(&format!("--ssh-key {}: no such file", missing.display())),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("OK:"), "{}", stdout(&out));
    for p in ["/root/.codex", "/root/.ssh"] {
        let out = s.run(&["exec", "clean", "--", "test", "-e", p]);
        assert!(!out.status.success(), "{p} was written although inject failed");
    }
    let out = inject(&s, h, &["clean", "--codex-toml", "/nonexistent/config.toml"]);
    assert!(stderr(&out).contains("--codex-toml /nonexistent/config.toml: no such file"), "{}", stderr(&out));
    // An explicit path that exists overrides the default.
    put(h, "elsewhere/config.toml", "x = 1\n");
    let out = inject(&s, h, &["clean", "--codex-toml", h.join("elsewhere/config.toml").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.ok(&["exec", "clean", "--", "cat", "/root/.codex/codex.toml"]), "x = 1\n");

    // An unknown box, and --json, are errors.
    let out = inject(&s, h, &["ghost"]);
    assert!(stderr(&out).contains("box \"ghost\" not found"), "{}", stderr(&out));
    let out = inject(&s, h, &["web", "--json"]);
    assert!(stderr(&out).contains("--json is not supported for inject"), "{}", stderr(&out));
}
