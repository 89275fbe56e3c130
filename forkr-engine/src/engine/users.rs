//! Project users (document 004): per-project accounts that `exec --user NAME` runs as.
//!
//! - UIDs start at 20000 and are assigned sequentially per project (max(existing) + 1, by the store),
//!   GID = UID, home `/home/<name>` in the project's `/home` system volume, shell `/bin/bash` unless
//!   given.
//! - The home directory is made on the host side, in the volume, when the user is created (owner
//!   UID:GID, mode 0750), and again at exec time if it went missing. The volume is shared by every
//!   box of the project, so a box may have planted anything at `/home/<name>`: the directory is
//!   created with `mkdirat` and then opened with `O_NOFOLLOW|O_DIRECTORY` before `fchown`, so a
//!   planted symlink is never followed out of the volume.
//! - On every exec as a user, the box's `/etc/passwd` and `/etc/group` get that user's entry
//!   synthesised on the fly (document 004): any prior line for the same user is removed and a fresh
//!   one appended; entries for other users, and the base's own entries, stay. Our passwd lines carry
//!   [`GECOS`] as a marker, so a stale line of a deleted project user that held the same UID is
//!   recognised and removed too (otherwise `whoami` would print the old name). Writes go through
//!   [`super::fs`] (resolved inside the root, atomic rename), keep the file's mode, and are skipped
//!   when the file already holds exactly the right entry, so repeated execs do not rewrite it.
//! - Deleting a user keeps its home directory: `/home` holds user data that survives box delete
//!   (document 004), and a user re-created under the same name finds it again (its top directory is
//!   re-owned to the new UID).

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::{Engine, blocking, fs, now};
use crate::api::{CreateUser, UpdateUser, UserDeleted, UserInfo};
use crate::name::{NameKind, validate};
use crate::store::UserRow;
use crate::{Error, ErrorKind, Result};

/// The default login shell (document 004).
pub const DEFAULT_SHELL: &str = "/bin/bash";
/// The GECOS field of synthesised passwd lines; marks a line as Forkr's own.
pub const GECOS: &str = "forkr project user";
/// Mode of a new home directory (owner and the user's own group, like Ubuntu's `HOME_MODE`).
const HOME_MODE: u32 = 0o750;
/// Largest `/etc/passwd` or `/etc/group` the engine edits.
const ACCOUNT_FILE_LIMIT: u64 = 4 << 20;

/// Serialises the read-modify-write of account files in this process: two execs as different
/// users at the same moment must not drop each other's line.
static ACCOUNT_FILES: Mutex<()> = Mutex::new(());

/// What an exec as a project user runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

fn home_of(name: &str) -> String {
    format!("/home/{name}")
}

fn info(row: &UserRow) -> UserInfo {
    UserInfo {
        name: row.name.clone(),
        project: row.project.clone(),
        uid: row.uid,
        gid: row.uid,
        home: home_of(&row.name),
        shell: row.shell.clone(),
        created_at: row.created_at.clone(),
    }
}

/// A login shell must be an absolute path that fits in a passwd line.
pub fn validate_shell(shell: &str) -> Result<()> {
    let ok = shell.starts_with('/')
        && shell.len() <= 256
        && !shell.contains(':')
        && !shell.chars().any(|c| c.is_control() || c.is_whitespace());
    if !ok {
        return Err(Error::bad_request(
            "invalid_shell",
            format!(
                "invalid shell {shell:?}: give an absolute path inside the box such as /bin/bash \
                 (no ':', spaces or control characters, at most 256 bytes)"
            ),
        ));
    }
    Ok(())
}

fn user_not_found(project: &str, name: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        "not_found",
        format!(
            "user {name:?} not found in project {project:?}; create it with `4kr user create {name} -p {project}`"
        ),
    )
}

/// The passwd line of a project user.
pub fn passwd_line(name: &str, uid: u32, shell: &str) -> String {
    format!("{name}:x:{uid}:{uid}:{GECOS}:{}:{shell}", home_of(name))
}

/// The group line of a project user's own group (GID = UID).
pub fn group_line(name: &str, gid: u32) -> String {
    format!("{name}:x:{gid}:")
}

/// Puts `line` into the account file `existing` for the user `name`: removes every line for that
/// name and every line in `stale` (see [`stale_names`]), then appends `line`. Returns `None` when
/// the file already has `line` as its only entry for the user and nothing stale, so it needs no
/// write.
pub fn merge_entry(existing: &str, name: &str, stale: &[String], line: &str) -> Option<String> {
    let first = |l: &str| l.split(':').next().unwrap_or("").to_owned();
    let is_ours = |l: &str| {
        let f = first(l);
        f == name || stale.contains(&f)
    };
    let ours: Vec<&str> = existing.lines().filter(|l| is_ours(l)).collect();
    if ours == [line] {
        return None;
    }
    let mut out: String = existing.lines().filter(|l| !is_ours(l)).flat_map(|l| [l, "\n"]).collect();
    out.push_str(line);
    out.push('\n');
    Some(out)
}

/// Names of Forkr-made passwd lines (marked with [`GECOS`]) that hold `uid` under another name than
/// `name`: a deleted project user whose UID was handed out again. Their passwd and group lines go.
pub fn stale_names(passwd: &str, name: &str, uid: u32) -> Vec<String> {
    passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7 && f[0] != name && f[2].parse::<u32>().ok() == Some(uid) && f[4] == GECOS)
                .then(|| f[0].to_owned())
        })
        .collect()
}

/// Reads an account file of a box root; a missing one reads as empty (a base without accounts).
fn read_account_file(root: &Path, path: &str) -> Result<(String, u32)> {
    match fs::read_file(root, path, ACCOUNT_FILE_LIMIT) {
        Ok((bytes, mode)) => Ok((String::from_utf8_lossy(&bytes).into_owned(), mode)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok((String::new(), 0o644)),
        Err(e) => Err(e),
    }
}

/// Synthesises `user`'s entries in the box root's `/etc/passwd` and `/etc/group` (document 004).
pub fn sync_account_files(root: &Path, name: &str, uid: u32, shell: &str) -> Result<()> {
    let _serial = ACCOUNT_FILES.lock().unwrap_or_else(|p| p.into_inner());
    let (passwd, passwd_mode) = read_account_file(root, "/etc/passwd")?;
    let stale = stale_names(&passwd, name, uid);
    if let Some(new) = merge_entry(&passwd, name, &stale, &passwd_line(name, uid, shell)) {
        fs::write_file(root, "/etc/passwd", new.as_bytes(), passwd_mode, true)?;
    }
    let (group, group_mode) = read_account_file(root, "/etc/group")?;
    if let Some(new) = merge_entry(&group, name, &stale, &group_line(name, uid)) {
        fs::write_file(root, "/etc/group", new.as_bytes(), group_mode, true)?;
    }
    Ok(())
}

fn open_volume(volume: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(volume, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::io(format!("opening the /home volume {}", volume.display()), e.into()))
}

/// Makes `/home/<name>` in the project's home volume (host path `volume`), owned by `uid`:`uid`
/// with mode 0750. An existing directory is re-owned only when `reown` is set (user create); exec
/// leaves one alone. Nothing is ever followed: a symlink or file at the name is an error.
pub fn make_home(volume: &Path, name: &str, uid: u32, reown: bool) -> Result<()> {
    validate(NameKind::User, name)?;
    let dir = open_volume(volume)?;
    let created = match nix::sys::stat::mkdirat(&dir, name, Mode::from_bits_truncate(HOME_MODE)) {
        Ok(()) => true,
        Err(Errno::EEXIST) => false,
        Err(e) => return Err(Error::io(format!("creating /home/{name}"), e.into())),
    };
    if !created && !reown {
        return Ok(());
    }
    let home = nix::fcntl::openat(
        &dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR => Error::conflict(
            "home_not_directory",
            format!(
                "/home/{name} exists in the project's /home volume but is not a directory; remove it \
                 (e.g. `4kr exec <box> -- rm /home/{name}`) and try again"
            ),
        ),
        e => Error::io(format!("opening /home/{name}"), e.into()),
    })?;
    let id = Some(nix::unistd::Uid::from_raw(uid));
    nix::unistd::fchown(&home, id, Some(nix::unistd::Gid::from_raw(uid)))
        .map_err(|e| Error::io(format!("chown /home/{name}"), e.into()))?;
    if created {
        // mkdirat's mode is filtered by the umask; set it exactly.
        nix::sys::stat::fchmod(&home, Mode::from_bits_truncate(HOME_MODE))
            .map_err(|e| Error::io(format!("chmod /home/{name}"), e.into()))?;
    }
    Ok(())
}

impl Engine {
    fn require_user(&self, project: &str, name: &str) -> Result<UserRow> {
        self.store.get_user(project, name)?.ok_or_else(|| user_not_found(project, name))
    }

    /// `POST /projects/{p}/users`: the next UID of the project, and the home directory.
    pub async fn create_user(self: &Arc<Self>, project: &str, req: CreateUser) -> Result<UserInfo> {
        validate(NameKind::Project, project)?;
        validate(NameKind::User, &req.name)?;
        let shell = req.shell.unwrap_or_else(|| DEFAULT_SHELL.to_owned());
        validate_shell(&shell)?;
        let row = self.store.insert_user(project, &req.name, &shell, &now())?;
        let this = self.clone();
        let (p, n, uid) = (project.to_owned(), row.name.clone(), row.uid);
        let made = blocking(move || {
            this.ensure_project_volumes(&p)?;
            make_home(&this.layout.home(&p), &n, uid, true)
        })
        .await;
        if let Err(e) = made {
            // No user without a home: the row goes again, so a retry gets the same UID.
            if let Err(undo) = self.store.delete_user(project, &row.name) {
                tracing::warn!(project, user = %row.name, error = %undo, "could not remove the user row after a failed create");
            }
            return Err(e);
        }
        Ok(info(&row))
    }

    /// `GET /projects/{p}/users`, by UID.
    pub fn list_users(&self, project: &str) -> Result<Vec<UserInfo>> {
        validate(NameKind::Project, project)?;
        Ok(self.store.list_users(project)?.iter().map(info).collect())
    }

    /// `GET /projects/{p}/users/{user}`.
    pub fn get_user(&self, project: &str, name: &str) -> Result<UserInfo> {
        validate(NameKind::Project, project)?;
        validate(NameKind::User, name)?;
        Ok(info(&self.require_user(project, name)?))
    }

    /// `PATCH /projects/{p}/users/{user}`: the shell (name, UID and home are fixed). The next exec as
    /// the user writes the new shell into a box's passwd.
    pub fn update_user(&self, project: &str, name: &str, req: UpdateUser) -> Result<UserInfo> {
        validate(NameKind::Project, project)?;
        validate(NameKind::User, name)?;
        let Some(shell) = req.shell else {
            return Err(Error::bad_request(
                "no_updates",
                "no updates provided (give a new shell with --shell)",
            ));
        };
        validate_shell(&shell)?;
        if !self.store.set_user_shell(project, name, &shell)? {
            return Err(user_not_found(project, name));
        }
        self.get_user(project, name)
    }

    /// `DELETE /projects/{p}/users/{user}`: idempotent; the home directory stays (see the module
    /// docs), and so do passwd lines in boxes (a later user with the same UID replaces them).
    pub fn delete_user(&self, project: &str, name: &str) -> Result<UserDeleted> {
        validate(NameKind::Project, project)?;
        validate(NameKind::User, name)?;
        let deleted = self.store.delete_user(project, name)?;
        Ok(UserDeleted { name: name.to_owned(), deleted })
    }

    /// Resolves `exec --user NAME` in a box: looks the user up, makes sure its home exists and
    /// synthesises its passwd and group entries in the box root.
    pub(crate) async fn exec_user(
        self: &Arc<Self>,
        project: &str,
        r#box: &str,
        name: &str,
    ) -> Result<ExecUser> {
        validate(NameKind::User, name)?;
        let row = self.require_user(project, name)?;
        let this = self.clone();
        let (p, b, user) = (project.to_owned(), r#box.to_owned(), row.clone());
        blocking(move || {
            make_home(&this.layout.home(&p), &user.name, user.uid, false)?;
            sync_account_files(&this.layout.root(&p, &b), &user.name, user.uid, &user.shell)
        })
        .await?;
        Ok(ExecUser { name: row.name.clone(), uid: row.uid, gid: row.uid, home: home_of(&row.name) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    const BASE_PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nalice2:x:1000:1000::/home/alice2:/bin/sh\n";

    #[test]
    fn lines() {
        assert_eq!(
            passwd_line("alice", 20000, "/bin/bash"),
            "alice:x:20000:20000:forkr project user:/home/alice:/bin/bash"
        );
        assert_eq!(group_line("alice", 20000), "alice:x:20000:");
    }

    #[test]
    fn merge_replaces_only_the_same_user_and_is_idempotent() {
        let line = passwd_line("alice", 20000, "/bin/bash");
        let once = merge_entry(BASE_PASSWD, "alice", &[], &line).unwrap();
        assert_eq!(once, format!("{BASE_PASSWD}{line}\n"));
        assert_eq!(merge_entry(&once, "alice", &[], &line), None, "a second exec rewrites nothing");
        // Another user accumulates; alice's line stays.
        let bob = passwd_line("bob", 20001, "/bin/bash");
        let both = merge_entry(&once, "bob", &[], &bob).unwrap();
        assert_eq!(both, format!("{BASE_PASSWD}{line}\n{bob}\n"));
        // A changed shell: the old line goes, the fresh one is appended at the end.
        let sh = passwd_line("alice", 20000, "/bin/sh");
        assert_eq!(merge_entry(&both, "alice", &[], &sh).unwrap(), format!("{BASE_PASSWD}{bob}\n{sh}\n"));
        // Duplicates of the user collapse into one line; a file without a final newline is fine.
        let dup = format!("{line}\nroot:x:0:0:root:/root:/bin/bash\n{line}");
        assert_eq!(
            merge_entry(&dup, "alice", &[], &line).unwrap(),
            format!("root:x:0:0:root:/root:/bin/bash\n{line}\n")
        );
        assert_eq!(merge_entry("", "alice", &[], &line).unwrap(), format!("{line}\n"));
        // A name that only starts like the user's is another user.
        let alicex = "alicex:x:1:1::/:/bin/sh\n";
        assert_eq!(merge_entry(alicex, "alice", &[], &line).unwrap(), format!("{alicex}{line}\n"));
    }

    #[test]
    fn stale_lines_are_only_our_own_with_the_same_uid() {
        let old = passwd_line("gone", 20001, "/bin/bash");
        let passwd = format!("{BASE_PASSWD}builder:x:20001:20001::/b:/bin/sh\n{old}\n");
        assert_eq!(stale_names(&passwd, "carol", 20001), ["gone"]);
        assert!(stale_names(&passwd, "gone", 20001).is_empty());
        assert!(stale_names(&passwd, "carol", 20002).is_empty());
        let merged =
            merge_entry(&passwd, "carol", &["gone".to_owned()], &passwd_line("carol", 20001, "/bin/bash"));
        let merged = merged.unwrap();
        assert!(!merged.contains("gone:"), "{merged}");
        assert!(merged.contains("builder:x:20001"), "the base's own entry stays: {merged}");
    }

    #[test]
    fn shells() {
        for ok in ["/bin/bash", "/bin/sh", "/usr/bin/zsh"] {
            validate_shell(ok).unwrap();
        }
        for bad in ["bash", "", "/bin/ba sh", "/bin:/x", "/bin/bash\n", &format!("/{}", "x".repeat(300))] {
            assert_eq!(validate_shell(bad).unwrap_err().code(), "invalid_shell", "{bad:?}");
        }
    }

    #[test]
    fn account_files_in_a_root_keep_mode_and_other_entries() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), BASE_PASSWD).unwrap();
        std::fs::set_permissions(root.join("etc/passwd"), std::fs::Permissions::from_mode(0o640)).unwrap();
        sync_account_files(root, "alice", 20000, "/bin/bash").unwrap();
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert_eq!(passwd, format!("{BASE_PASSWD}{}\n", passwd_line("alice", 20000, "/bin/bash")));
        assert_eq!(std::fs::metadata(root.join("etc/passwd")).unwrap().permissions().mode() & 0o7777, 0o640);
        // A root without /etc/group gets one with 0644.
        assert_eq!(std::fs::read_to_string(root.join("etc/group")).unwrap(), "alice:x:20000:\n");
        assert_eq!(std::fs::metadata(root.join("etc/group")).unwrap().permissions().mode() & 0o7777, 0o644);
        // Idempotent: the file is not rewritten (same inode).
        let ino = std::fs::metadata(root.join("etc/passwd")).unwrap().ino();
        sync_account_files(root, "alice", 20000, "/bin/bash").unwrap();
        assert_eq!(std::fs::metadata(root.join("etc/passwd")).unwrap().ino(), ino);
    }

    #[test]
    fn account_files_are_written_inside_the_root_only() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "host\n").unwrap();
        let d = tempfile::tempdir().unwrap();
        // The box made /etc a link to a host directory: the write lands in the root, never outside.
        std::os::unix::fs::symlink(outside.path(), d.path().join("etc")).unwrap();
        let _ = sync_account_files(d.path(), "alice", 20000, "/bin/bash");
        assert_eq!(std::fs::read_to_string(outside.path().join("passwd")).unwrap(), "host\n");
    }

    #[test]
    fn homes_are_owned_by_the_user_and_links_are_not_followed() {
        let vol = tempfile::tempdir().unwrap();
        make_home(vol.path(), "alice", 20000, true).unwrap();
        let meta = std::fs::metadata(vol.path().join("alice")).unwrap();
        assert_eq!((meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777), (20000, 20000, 0o750));
        // Exec-time ensure leaves an existing home alone; create re-owns it.
        make_home(vol.path(), "alice", 20005, false).unwrap();
        assert_eq!(std::fs::metadata(vol.path().join("alice")).unwrap().uid(), 20000);
        make_home(vol.path(), "alice", 20005, true).unwrap();
        assert_eq!(std::fs::metadata(vol.path().join("alice")).unwrap().uid(), 20005);
        // A planted link to a host directory is refused and its target keeps its owner.
        let target = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(target.path(), vol.path().join("bob")).unwrap();
        let e = make_home(vol.path(), "bob", 20001, true).unwrap_err();
        assert_eq!(e.code(), "home_not_directory");
        assert_eq!(std::fs::metadata(target.path()).unwrap().uid(), 0);
        assert!(make_home(vol.path(), "../x", 20002, true).is_err());
    }
}
