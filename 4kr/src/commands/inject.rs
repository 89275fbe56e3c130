//! `inject <box>`: copies local credentials into a box (document 002).
//!
//! | local (default) | in the box | mode |
//! |---|---|---|
//! | `--codex-auth` (`~/.codex/auth.json`) | `/root/.codex/auth.json` | 0600 |
//! | `--codex-toml` (`~/.codex/config.toml`) | `/root/.codex/codex.toml` | 0644 |
//! | `--ssh-key` (first of `~/.ssh/id_ed25519`, `id_rsa`, `id_ecdsa`) | `/root/.ssh/<keyname>` | 0600 |
//! | the key's `.pub` | `/root/.ssh/<keyname>.pub` | 0644 |
//! | git config: `GIT_CONFIG_GLOBAL`, `$XDG_CONFIG_HOME/git/config`, `~/.config/git/config`, `~/.gitconfig` (first that exists) | `/root/.gitconfig` | 0644 |
//!
//! `/root/.ssh/known_hosts` is seeded with GitHub's published host keys (lines already there are
//! kept), and with a key injected, `ssh -T git@github.com` is tried in the box; its outcome is a
//! note, never a failure (the box may have no network or no ssh). A default file that does not
//! exist is skipped with a note on stderr; a path given explicitly that does not exist is an error,
//! raised before anything is copied. Every file goes through the server's file API (`PUT …/files`),
//! so the writes resolve inside the box like `4kr cp`. The last line on stdout is
//! `OK: injected codex auth/config, ssh keypair[, git config] into <project>:<box>`, listing what
//! was actually copied.

use std::path::{Path, PathBuf};

use clap::Args;
use forkr_engine::api::{ExecOutput, ExecRequest, FileWritten};
use forkr_engine::{Error, ErrorKind};
use reqwest::Method;

use crate::cli::{NoJsonOpt, ProjectOpt};
use crate::client::Client;
use crate::ctx::{BoxId, Ctx};
use crate::env::Env;
use crate::error::{CliError, Result};

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,
    /// Codex auth file [default: ~/.codex/auth.json].
    #[arg(long, value_name = "PATH")]
    pub codex_auth: Option<PathBuf>,
    /// Codex config, copied as /root/.codex/codex.toml [default: ~/.codex/config.toml].
    #[arg(long, value_name = "PATH")]
    pub codex_toml: Option<PathBuf>,
    /// SSH private key; its .pub goes along [default: first of ~/.ssh/id_ed25519, id_rsa,
    /// id_ecdsa].
    #[arg(long, value_name = "PATH")]
    pub ssh_key: Option<PathBuf>,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: NoJsonOpt,
}

/// GitHub's SSH host keys as published in `https://api.github.com/meta` (`ssh_keys`) and the
/// "GitHub's SSH key fingerprints" page; pinned so the box never trusts a key on first use.
pub const GITHUB_KNOWN_HOSTS: &[&str] = &[
    "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    "github.com ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=",
    "github.com ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCj7ndNxQowgcQnjshcLrqPEiiphnt+VTTvDP6mHBL9j1aNUkY4Ue1gvwnGLVlOhGeYrnZaMgRK6+PKCUXaDbC7qtbW8gIkhL7aGCsOr/C56SJMy/BCZfxd1nWzAOxSDPgVsmerOBYfNqltV9/hWCqBywINIR+5dIg6JTJ72pcEpEjcYgXkE2YEFXV1JHnsKgbLWNlhScqb2UmyRkQyytRLtL+38TGxkxCflmO+5Z8CSSNY7GidjMIZ7Q4zMjA2n1nGrlTDkzwDCsw+wqFPGQA179cnfGWOWRVruj16z6XyvxvjJwbz0wQZ75XK5tKSb7FNyeIEs4TT4jk+S4dhPeAUC5y+bDYirYgM4GC7uEnztnZyaVWQ7B381AK4Qdrwt51ZqExKbQpTUNn+EjqoTwvqNj4kqx5QUCI0ThS/YkOxJCXmPUWZbhjpCg56i+2aB6CmK2JGhn57K5mj0MNdBXA4/WnwH6XoPWJzK5Nyu2zB3nAZp+S5hpQs+p1vN1/wsjk=",
];

/// Where the seeded host keys go.
pub const KNOWN_HOSTS: &str = "/root/.ssh/known_hosts";

/// What one copied file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    CodexAuth,
    CodexConfig,
    SshKey,
    SshPub,
    GitConfig,
}

/// One local file to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub item: Item,
    pub local: PathBuf,
    pub remote: String,
    pub mode: u32,
}

/// Everything `inject` will copy, and the notes for what it skips.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub copies: Vec<Copy>,
    pub notes: Vec<String>,
}

impl Plan {
    fn has(&self, item: Item) -> bool {
        self.copies.iter().any(|c| c.item == item)
    }

    /// The file name of the injected private key, if any.
    pub fn ssh_key_name(&self) -> Option<&str> {
        self.copies.iter().find(|c| c.item == Item::SshKey).and_then(|c| c.remote.rsplit('/').next())
    }

    /// What was copied, in the documented words: `codex auth/config, ssh keypair, git config`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        match (self.has(Item::CodexAuth), self.has(Item::CodexConfig)) {
            (true, true) => parts.push("codex auth/config"),
            (true, false) => parts.push("codex auth"),
            (false, true) => parts.push("codex config"),
            (false, false) => {}
        }
        match (self.has(Item::SshKey), self.has(Item::SshPub)) {
            (true, true) => parts.push("ssh keypair"),
            (true, false) => parts.push("ssh key"),
            _ => {}
        }
        if self.has(Item::GitConfig) {
            parts.push("git config");
        }
        if parts.is_empty() { "nothing".to_owned() } else { parts.join(", ") }
    }
}

/// An explicitly given path: `~/` expands to `$HOME`, a relative path is relative to `cwd`.
fn expand(raw: &Path, home: Option<&Path>, cwd: &Path) -> PathBuf {
    if let (Ok(rest), Some(home)) = (raw.strip_prefix("~"), home) {
        return home.join(rest);
    }
    if raw.is_absolute() { raw.to_path_buf() } else { cwd.join(raw) }
}

fn missing_explicit(flag: &str, path: &Path) -> CliError {
    CliError::from(Error::new(
        ErrorKind::NotFound,
        "not_found",
        format!("{flag} {}: no such file", path.display()),
    ))
    .with_help(format!("give an existing file to {flag}, or leave the flag out to use the default"))
}

/// Decides what to copy from the local files: defaults under `HOME` (skipped with a note when
/// missing) or the explicit paths (an error when missing).
pub fn plan(env: &Env, cwd: &Path, a: &InjectArgs) -> Result<Plan> {
    let home = env.get("HOME").map(PathBuf::from);
    let home = home.as_deref();
    let mut p = Plan::default();
    let under_home = |rel: &str| home.map(|h| h.join(rel));
    let is_file = |path: &Path| path.is_file();

    // Codex auth and config: an explicit path or the default.
    for (flag, explicit, default, item, remote, mode, what) in [
        (
            "--codex-auth",
            &a.codex_auth,
            ".codex/auth.json",
            Item::CodexAuth,
            "/root/.codex/auth.json",
            0o600,
            "codex auth",
        ),
        (
            "--codex-toml",
            &a.codex_toml,
            ".codex/config.toml",
            Item::CodexConfig,
            "/root/.codex/codex.toml",
            0o644,
            "codex config",
        ),
    ] {
        match explicit {
            Some(raw) => {
                let path = expand(raw, home, cwd);
                if !is_file(&path) {
                    return Err(missing_explicit(flag, &path));
                }
                p.copies.push(Copy { item, local: path, remote: remote.to_owned(), mode });
            }
            None => match under_home(default) {
                Some(path) if is_file(&path) => {
                    p.copies.push(Copy { item, local: path, remote: remote.to_owned(), mode })
                }
                Some(path) => p.notes.push(format!("skipped {what}: {} not found", path.display())),
                None => p.notes.push(format!("skipped {what}: HOME is not set ({flag} names the file)")),
            },
        }
    }

    // The SSH key pair.
    let key = match &a.ssh_key {
        Some(raw) => {
            let path = expand(raw, home, cwd);
            if !is_file(&path) {
                return Err(missing_explicit("--ssh-key", &path));
            }
            Some(path)
        }
        None => {
            let candidates: Vec<PathBuf> = ["id_ed25519", "id_rsa", "id_ecdsa"]
                .iter()
                .filter_map(|k| under_home(&format!(".ssh/{k}")))
                .collect();
            let found = candidates.iter().find(|c| is_file(c)).cloned();
            if found.is_none() {
                p.notes.push(match home {
                    Some(h) => format!(
                        "skipped ssh keypair: none of id_ed25519, id_rsa, id_ecdsa in {}",
                        h.join(".ssh").display()
                    ),
                    None => "skipped ssh keypair: HOME is not set (--ssh-key names the key)".to_owned(),
                });
            }
            found
        }
    };
    if let Some(key) = key {
        let name = key.file_name().and_then(|n| n.to_str()).filter(|n| !n.is_empty()).ok_or_else(|| {
            CliError::usage(format!("--ssh-key {}: the file name must be valid UTF-8", key.display()))
        })?;
        let remote = format!("/root/.ssh/{name}");
        let mut public = key.clone().into_os_string();
        public.push(".pub");
        let public = PathBuf::from(public);
        p.copies.push(Copy { item: Item::SshKey, local: key.clone(), remote: remote.clone(), mode: 0o600 });
        if is_file(&public) {
            p.copies.push(Copy {
                item: Item::SshPub,
                local: public,
                remote: format!("{remote}.pub"),
                mode: 0o644,
            });
        } else {
            p.notes.push(format!("skipped the public key: {} not found", public.display()));
        }
    }

    // Git config: the first that exists, in git's own order.
    let git = [
        env.get("GIT_CONFIG_GLOBAL").map(PathBuf::from),
        env.get("XDG_CONFIG_HOME").map(|x| Path::new(x).join("git/config")),
        under_home(".config/git/config"),
        under_home(".gitconfig"),
    ];
    match git.iter().flatten().find(|g| is_file(g)) {
        Some(g) => p.copies.push(Copy { item: Item::GitConfig, local: g.clone(), remote: "/root/.gitconfig".into(), mode: 0o644 }),
        None => p.notes.push("skipped git config: no GIT_CONFIG_GLOBAL, $XDG_CONFIG_HOME/git/config, ~/.config/git/config or ~/.gitconfig".into()),
    }
    Ok(p)
}

/// `known_hosts` with GitHub's keys appended where missing; `None` when all are there.
pub fn seed_known_hosts(existing: &str) -> Option<String> {
    let have: Vec<&str> = existing.lines().map(str::trim).collect();
    let missing: Vec<&str> = GITHUB_KNOWN_HOSTS.iter().copied().filter(|k| !have.contains(k)).collect();
    if missing.is_empty() {
        return None;
    }
    let mut out = existing.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for k in missing {
        out.push_str(k);
        out.push('\n');
    }
    Some(out)
}

/// `'…'` for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The in-box script run after the copies: tightens the directories (the file API makes them
/// 0755) and, with a key, tries GitHub. Exit 127: no ssh in the box.
pub fn post_script(key: Option<&str>) -> String {
    let mut s = String::from("chmod 700 /root/.ssh /root/.codex 2>/dev/null\n");
    if let Some(key) = key {
        s.push_str("command -v ssh >/dev/null 2>&1 || exit 127\n");
        s.push_str("t=; command -v timeout >/dev/null 2>&1 && t='timeout 20'\n");
        s.push_str(&format!(
            "$t ssh -T -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=yes -i {} git@github.com 2>&1\n",
            sh_quote(&format!("/root/.ssh/{key}"))
        ));
    }
    s
}

/// What the ssh test's output means, as a note.
pub fn ssh_test_note(out: &ExecOutput) -> String {
    let text = format!("{}{}", out.stdout, out.stderr);
    if text.contains("successfully authenticated") {
        return "ssh -T git@github.com: GitHub accepted the key".to_owned();
    }
    if out.exit_code == 127 {
        return "ssh is not installed in the box; skipped `ssh -T git@github.com`".to_owned();
    }
    let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no output");
    format!("ssh -T git@github.com did not authenticate (exit {}): {first}", out.exit_code)
}

/// The file and exec routes inject uses (the existing API; nothing inject-specific on the server).
impl Client {
    fn inject_url(&self, id: &BoxId, tail: &str) -> String {
        self.api_url(&format!("/projects/{}/boxes/{}{tail}", id.project, id.name))
    }

    /// `PUT …/files?path=&mode=&mkdirs=true`.
    pub async fn put_file_mkdirs(
        &self,
        id: &BoxId,
        path: &str,
        mode: u32,
        body: Vec<u8>,
    ) -> Result<FileWritten> {
        let rb = self
            .request(Method::PUT, &self.inject_url(id, "/files"))?
            .query(&[
                ("path", path.to_owned()),
                ("mode", format!("{mode:04o}")),
                ("mkdirs", "true".to_owned()),
            ])
            .body(body);
        self.json(rb).await
    }

    /// A small file of the box, or `None` when it does not exist.
    pub async fn read_file_opt(&self, id: &BoxId, path: &str) -> Result<Option<Vec<u8>>> {
        match self.get_file(id, path).await {
            Ok(resp) => resp.bytes().await.map(|b| Some(b.to_vec())).map_err(|e| {
                CliError::from(Error::internal(format!("reading {path} from forkr-server: {e}")))
            }),
            Err(e) if e.kind() == ErrorKind::NotFound && e.message().contains("no such file") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Buffered exec (`POST …/exec`).
    pub async fn exec_output(&self, id: &BoxId, req: &ExecRequest) -> Result<ExecOutput> {
        self.json(self.request(Method::POST, &self.inject_url(id, "/exec"))?.json(req)).await
    }
}

pub async fn inject(ctx: &Ctx, a: InjectArgs) -> Result<i32> {
    a.json.reject("inject")?;
    let id = ctx.resolve_named(&a.target, &a.project)?;
    let plan = plan(&ctx.env, &ctx.cwd, &a)?;
    let client = ctx.client()?;
    for c in &plan.copies {
        let data =
            std::fs::read(&c.local).map_err(|e| CliError::io(format!("reading {}", c.local.display()), e))?;
        client.put_file_mkdirs(&id, &c.remote, c.mode, data).await?;
    }
    let known = client.read_file_opt(&id, KNOWN_HOSTS).await?.unwrap_or_default();
    if let Some(seeded) = seed_known_hosts(&String::from_utf8_lossy(&known)) {
        client.put_file_mkdirs(&id, KNOWN_HOSTS, 0o644, seeded.into_bytes()).await?;
    }
    for note in &plan.notes {
        eprintln!("note: {note}");
    }
    let req = ExecRequest { cmd: vec![post_script(plan.ssh_key_name())], sh: true, ..Default::default() };
    match client.exec_output(&id, &req).await {
        Ok(out) if plan.ssh_key_name().is_some() => eprintln!("note: {}", ssh_test_note(&out)),
        Ok(_) => {}
        Err(e) if e.code() == "box_not_running" => {
            eprintln!(
                "note: {id} is not running, so ~/.ssh stays 0755 and `ssh -T git@github.com` was not tried"
            )
        }
        Err(e) => return Err(e),
    }
    println!("OK: injected {} into {id}", plan.summary());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[(&str, &str)]) -> InjectArgs {
        let get = |k: &str| extra.iter().find(|(f, _)| *f == k).map(|(_, v)| PathBuf::from(v));
        InjectArgs {
            target: "web".into(),
            codex_auth: get("codex-auth"),
            codex_toml: get("codex-toml"),
            ssh_key: get("ssh-key"),
            project: ProjectOpt::default(),
            json: NoJsonOpt::default(),
        }
    }

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn everything_present() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        for f in [
            ".codex/auth.json",
            ".codex/config.toml",
            ".ssh/id_rsa",
            ".ssh/id_rsa.pub",
            ".ssh/id_ecdsa",
            ".gitconfig",
        ] {
            touch(&h.join(f));
        }
        let env = Env::from_pairs([("HOME", h.to_str().unwrap())]);
        let p = plan(&env, h, &args(&[])).unwrap();
        let got: Vec<(&str, u32)> = p.copies.iter().map(|c| (c.remote.as_str(), c.mode)).collect();
        assert_eq!(
            got,
            [
                ("/root/.codex/auth.json", 0o600),
                ("/root/.codex/codex.toml", 0o644),
                ("/root/.ssh/id_rsa", 0o600),
                ("/root/.ssh/id_rsa.pub", 0o644),
                ("/root/.gitconfig", 0o644),
            ]
        );
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        assert_eq!(p.summary(), "codex auth/config, ssh keypair, git config");
        assert_eq!(p.ssh_key_name(), Some("id_rsa"));
        // id_ed25519 wins over id_rsa.
        touch(&h.join(".ssh/id_ed25519"));
        assert_eq!(plan(&env, h, &args(&[])).unwrap().ssh_key_name(), Some("id_ed25519"));
    }

    #[test]
    fn missing_defaults_are_notes_and_missing_explicit_paths_errors() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        touch(&h.join(".codex/auth.json"));
        let env = Env::from_pairs([("HOME", h.to_str().unwrap())]);
        let p = plan(&env, h, &args(&[])).unwrap();
        assert_eq!(p.summary(), "codex auth");
        assert_eq!(p.notes.len(), 3, "{:?}", p.notes);
        assert!(p.notes[0].starts_with("skipped codex config: "), "{:?}", p.notes);
        assert!(p.notes[1].starts_with("skipped ssh keypair: "), "{:?}", p.notes);
        assert!(p.notes[2].starts_with("skipped git config: "), "{:?}", p.notes);

        for (flag, key) in
            [("--codex-auth", "codex-auth"), ("--codex-toml", "codex-toml"), ("--ssh-key", "ssh-key")]
        {
            let e = plan(&env, h, &args(&[(key, "nope/missing")])).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound, "{flag}");
            assert_eq!(e.message(), format!("{flag} {}: no such file", h.join("nope/missing").display()));
        }
        // Nothing at all, and no HOME: only notes.
        let p = plan(&Env::default(), h, &args(&[])).unwrap();
        assert_eq!((p.summary().as_str(), p.notes.len()), ("nothing", 4));
    }

    #[test]
    fn explicit_paths_expand_and_git_config_follows_gits_order() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        touch(&h.join("keys/deploy"));
        touch(&h.join("work/auth.json"));
        touch(&h.join(".gitconfig"));
        touch(&h.join("xdg/git/config"));
        touch(&h.join("global.gitconfig"));
        let xdg = h.join("xdg");
        let env =
            Env::from_pairs([("HOME", h.to_str().unwrap()), ("XDG_CONFIG_HOME", xdg.to_str().unwrap())]);
        let p =
            plan(&env, &h.join("work"), &args(&[("ssh-key", "~/keys/deploy"), ("codex-auth", "auth.json")]))
                .unwrap();
        let key = p.copies.iter().find(|c| c.item == Item::SshKey).unwrap();
        assert_eq!((key.local.clone(), key.remote.as_str()), (h.join("keys/deploy"), "/root/.ssh/deploy"));
        assert_eq!(p.copies[0].local, h.join("work/auth.json"));
        assert!(p.notes.iter().any(|n| n.contains("public key")), "{:?}", p.notes);
        assert_eq!(p.summary(), "codex auth, ssh key, git config");
        let git = |p: &Plan| p.copies.iter().find(|c| c.item == Item::GitConfig).unwrap().local.clone();
        assert_eq!(git(&p), h.join("xdg/git/config"));
        let global = h.join("global.gitconfig");
        let env =
            Env::from_pairs([("HOME", h.to_str().unwrap()), ("GIT_CONFIG_GLOBAL", global.to_str().unwrap())]);
        assert_eq!(git(&plan(&env, h, &args(&[])).unwrap()), global);
        let env = Env::from_pairs([("HOME", h.to_str().unwrap())]);
        assert_eq!(git(&plan(&env, h, &args(&[])).unwrap()), h.join(".gitconfig"));
    }

    #[test]
    fn known_hosts_are_seeded_once_and_keep_other_lines() {
        let seeded = seed_known_hosts("").unwrap();
        assert_eq!(seeded.lines().count(), 3);
        assert_eq!(seed_known_hosts(&seeded), None);
        let mine = "example.com ssh-ed25519 AAAA";
        let merged = seed_known_hosts(mine).unwrap();
        assert!(merged.starts_with(&format!("{mine}\n")), "{merged}");
        assert_eq!(merged.lines().count(), 4);
    }

    #[test]
    fn post_script_and_ssh_notes() {
        assert!(!post_script(None).contains("ssh -T"));
        let s = post_script(Some("it's"));
        assert!(s.contains(r"-i '/root/.ssh/it'\''s' git@github.com"), "{s}");
        let out =
            |code, stdout: &str| ExecOutput { exit_code: code, stdout: stdout.into(), stderr: String::new() };
        assert_eq!(
            ssh_test_note(&out(127, "")),
            "ssh is not installed in the box; skipped `ssh -T git@github.com`"
        );
        assert!(
            ssh_test_note(&out(
                1,
                "Hi me! You've successfully authenticated, but GitHub does not provide shell access."
            ))
            .contains("accepted")
        );
        assert_eq!(
            ssh_test_note(&out(255, "ssh: Could not resolve hostname github.com\n")),
            "ssh -T git@github.com did not authenticate (exit 255): ssh: Could not resolve hostname github.com"
        );
    }
}
