//! Wire types of the HTTP API: what `forkr-server` accepts and returns and what `4kr` sends and reads.
//!
//! Routes (all under `/v1`, all behind `Authorization: Bearer <token>`):
//!
//! | method | path | body → answer |
//! |---|---|---|
//! | GET | `/projects/{p}/boxes` | → `Vec<BoxInfo>` |
//! | POST | `/projects/{p}/boxes` | `CreateBox` → 201 `BoxInfo` |
//! | GET | `/projects/{p}/boxes/{b}` | → `BoxInfo` |
//! | PATCH | `/projects/{p}/boxes/{b}` | `UpdateBox` → `BoxInfo` (400 `no_updates`) |
//! | DELETE | `/projects/{p}/boxes/{b}?force=bool` | → `Deleted` (409 `fork_running`) |
//! | POST | `/projects/{p}/boxes/{b}/stop`, `/resume` | → `BoxInfo` |
//! | POST | `/projects/{p}/boxes/{b}/exec` | `ExecRequest` → `ExecOutput` or, with `bg`, `BgStarted` |
//! | GET (WS) | `/projects/{p}/boxes/{b}/exec/ws` | first text frame `ExecRequest`, then [`ws`] frames |
//! | GET (WS) | `/projects/{p}/boxes/{b}/console?rows&cols` | a PTY in [`ws`] frames |
//! | POST | `/projects/{p}/boxes/{b}/ps` | `PsRequest` → `ExecOutput` |
//! | GET | `/projects/{p}/boxes/{b}/logs?pid=N&follow=bool` | → the log bytes (streamed with follow) |
//! | GET | `/projects/{p}/boxes/{b}/files?path=/abs` | → raw bytes, mode in `x-forkr-mode` |
//! | PUT | `/projects/{p}/boxes/{b}/files?path=/abs&mode=0644` | raw bytes → `FileWritten` |
//! | GET | `/openapi.json` | the OpenAPI document (no auth) |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The documented error body: `{"error":{"code":"...","message":"..."}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine code such as `not_found`, `fork_running`, `no_updates`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

/// The state of a box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BoxStatus {
    /// PID 1 is running.
    Running,
    /// The root exists, no process runs.
    Stopped,
    /// PID 1 died on its own; `resume` starts it again.
    Exited,
}

impl BoxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BoxStatus::Running => "running",
            BoxStatus::Stopped => "stopped",
            BoxStatus::Exited => "exited",
        }
    }
}

/// A data mount as the API carries it: volume `name` at `path`, read-only or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DataMount {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub read_only: bool,
}

/// `POST /projects/{p}/boxes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBox {
    pub name: String,
    /// Base (alias, exact version, or `alias:tag`). Default `box-base`. Not with `fork`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Box to clone. Not with `base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<String>,
    /// Container environment (`KEY=VALUE` pairs from `--env`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// CPU request: cores as a number (`2`, `0.5`) or millicores (`500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory limit: `512Mi`, `2Gi`, `1G`, or a plain number of MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Data volume mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<DataMount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The port the box serves on (published hosts route here). Default 8080.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_seconds: Option<u64>,
}

/// `PATCH /projects/{p}/boxes/{b}`: settings as `KEY=VALUE` (only the documented allowlist acts) and
/// tags.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UpdateBox {
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// When present, replaces the box's tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// A box as `show` and `list` report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BoxInfo {
    pub name: String,
    pub project: String,
    pub status: BoxStatus,
    /// The base version the root was cloned from (for forks, the source's base).
    pub base: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<String>,
    pub url: String,
    pub port: u16,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default)]
    pub published: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub data: Vec<DataMount>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cpus: f64,
    pub ram_mb: u64,
    pub storage_gb: f64,
    pub termination_grace_seconds: u64,
    /// Host PID of the box's PID 1 while running (local runtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// `DELETE` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    pub name: String,
    /// `true` when the box existed and was removed now, `false` when it was already gone.
    pub deleted: bool,
    /// Some files could not be removed yet; the server retries in the background (HTTP 202).
    #[serde(default)]
    pub cleanup_pending: bool,
}

/// `POST …/exec` and the first frame of `…/exec/ws`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// argv; with `sh`, joined by spaces and run as one shell string. Empty means a login shell.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// Treat `cmd` as a shell string.
    #[serde(default)]
    pub sh: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory inside the box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wd: Option<String>,
    /// Project user to run as (default root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Start detached; answer `BgStarted`.
    #[serde(default)]
    pub bg: bool,
    /// Allocate a PTY (WebSocket only).
    #[serde(default)]
    pub tty: bool,
    /// Initial PTY size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cols: Option<u16>,
    /// Bytes for stdin (buffered exec only), UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

/// Buffered exec result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecOutput {
    pub exit_code: i32,
    /// Standard output, lossily decoded as UTF-8.
    pub stdout: String,
    pub stderr: String,
}

/// Background exec result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BgStarted {
    /// PID of the process inside the box.
    pub pid: u32,
}

/// `POST …/ps`: extra `ps` arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PsRequest {
    #[serde(default)]
    pub args: Vec<String>,
}

/// `PUT …/files` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileWritten {
    pub path: String,
    pub size: u64,
    pub mode: u32,
}

/// The response header carrying a file's permission bits (octal) on `GET …/files`.
pub const MODE_HEADER: &str = "x-forkr-mode";

/// Binary WebSocket frames of exec and console: one channel byte, then the payload.
///
/// Client → server: [`ws::STDIN`] bytes, [`ws::RESIZE`] with a JSON `{"rows":R,"cols":C}`,
/// [`ws::CLOSE_STDIN`] (empty payload) to send EOF. Server → client: [`ws::STDOUT`] and
/// [`ws::STDERR`] bytes, then one [`ws::EXIT`] frame whose payload is the exit code as decimal text,
/// then a normal close. Errors before the process starts arrive as a text frame holding an
/// [`ErrorBody`] followed by a close.
pub mod ws {
    pub const STDIN: u8 = 0;
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    pub const EXIT: u8 = 3;
    pub const RESIZE: u8 = 4;
    pub const CLOSE_STDIN: u8 = 5;
}

/// Resize payload of a [`ws::RESIZE`] frame.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct Resize {
    pub rows: u16,
    pub cols: u16,
}

/// One base version (a read-only subvolume).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BaseVersion {
    pub version: String,
    /// The base name (alias) this version belongs to.
    pub name: String,
    /// How it was made: `import`, `save`, `build`, `script`.
    pub kind: String,
    /// sha256 of the build script or Dockerfile, for built versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub builder: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Bytes used; absent while still being measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    pub arch: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The build script, for versions built with `base build --script`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
}

/// A base name with its versions (`base show`); `base list` returns these with the newest version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BaseInfo {
    pub name: String,
    /// The version the alias points at (the newest).
    pub latest: String,
    pub version_count: usize,
    /// Oldest first.
    pub versions: Vec<BaseVersion>,
}

/// `POST /projects/{p}/boxes/{b}/snapshots`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshot {
    /// Snapshot name (`^[a-zA-Z0-9_.-]+$`); default: the next `vN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A root snapshot (checkpoint) of a box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotInfo {
    pub name: String,
    pub r#box: String,
    pub project: String,
    /// Bytes used; absent while still being measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// RFC3339.
    pub created_at: String,
    #[serde(default)]
    pub description: String,
}

/// What happened to a path since a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    /// `+`, `~`, `-` as `diff status` prints them.
    pub fn symbol(self) -> char {
        match self {
            ChangeKind::Added => '+',
            ChangeKind::Modified => '~',
            ChangeKind::Deleted => '-',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PathChange {
    pub path: String,
    pub kind: ChangeKind,
}

/// `GET …/diff/status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DiffStatus {
    /// The snapshot compared against.
    pub against: String,
    /// Sorted by path; empty means no changes.
    pub changes: Vec<PathChange>,
}

/// Status of one file against a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    Added,
    Deleted,
    Modified,
    Unchanged,
}

/// `GET …/diff/file`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileDiff {
    pub path: String,
    pub against: String,
    pub status: FileStatus,
    /// Unified diff for a modified text file; a one-line note for binary files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// `POST /bases/{name}/save`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveBase {
    pub project: String,
    pub r#box: String,
    /// Ownership tags for the new version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// `POST /bases/{name}/build`: run `script` in a transient box on `parent`, save the result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildBase {
    pub script: String,
    /// Parent base (default `box-base`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Ownership tags for the new version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// Result of a script build.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BuildResult {
    pub version: BaseVersion,
    /// `true` when the newest version already had this script's tag and nothing was built.
    pub unchanged: bool,
    /// Output of the build script (empty when unchanged).
    #[serde(default)]
    pub log: String,
}

/// `DELETE /bases/{name}` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BasesDeleted {
    /// Versions removed, children first.
    pub deleted: Vec<String>,
}

// ---- data volumes ----
//
// | method | path (under `/v1/projects/{p}`) | body → answer |
// |---|---|---|
// | GET, POST | `/volumes` | → `Vec<VolumeInfo>`; `CreateVolume` → 201 `VolumeInfo` |
// | GET, PATCH | `/volumes/{v}` | → `VolumeInfo` (with `used_bytes`); `UpdateVolume` → `VolumeInfo` |
// | DELETE | `/volumes/{v}?force=bool` | → `VolumeDeleted` (409 `volume_in_use`) |
// | GET, POST | `/volumes/{v}/snapshots` | → `Vec<VolumeSnapshotInfo>`; `CreateSnapshot` → 201 |
// | DELETE | `/volumes/{v}/snapshots/{s}` | → 204 |
// | POST | `/volumes/{v}/snapshots/{s}/restore` | → `VolumeInfo` (409 `volume_in_use`) |
// | GET, POST | `/volumes/{v}/backups` | → `Vec<VolumeBackupInfo>`; `CreateVolumeBackup` → 201 |
// | DELETE | `/volumes/{v}/backups/{b}` | → 204 |
// | POST | `/volumes/{v}/backups/{b}/restore` | → `VolumeInfo` (409 `volume_in_use`) |

/// `POST /projects/{p}/volumes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVolume {
    /// Volume name (same pattern as box names).
    pub name: String,
    /// Size limit in bytes; absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// `PATCH /projects/{p}/volumes/{v}`: a new size limit and/or new tags.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateVolume {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// When present, replaces the volume's tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// A box that mounts a volume, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VolumeMount {
    pub r#box: String,
    pub path: String,
    #[serde(default)]
    pub read_only: bool,
}

/// A data volume as `volume show` and `volume list` report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VolumeInfo {
    pub name: String,
    pub project: String,
    /// The size limit in bytes; absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// `true` when a btrfs quota enforces `size_bytes` (writes beyond it fail with "Disk quota
    /// exceeded"); `false` when the size is only recorded.
    #[serde(default)]
    pub size_enforced: bool,
    /// Bytes the volume's files use (measured by `show`; absent in lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The volume this one was copied from by `create --fork`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_from: Option<String>,
    /// Boxes of the project that mount it.
    #[serde(default)]
    pub mounted_by: Vec<VolumeMount>,
    pub created_at: String,
}

/// `DELETE /projects/{p}/volumes/{v}` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VolumeDeleted {
    pub name: String,
    /// `true` when the volume existed and was removed now, `false` when it was already gone.
    pub deleted: bool,
    /// Boxes whose mount of the volume a forced delete removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detached_from: Vec<String>,
}

/// A read-only snapshot of a volume (a volume-checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VolumeSnapshotInfo {
    pub name: String,
    pub volume: String,
    pub project: String,
    /// Bytes used; absent while still being measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// RFC3339.
    pub created_at: String,
    #[serde(default)]
    pub description: String,
}

/// `POST /projects/{p}/volumes/{v}/backups`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVolumeBackup {
    /// Backup name (`^[a-zA-Z0-9_.-]+$`); default: the next `vN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A `.tar.gz` backup of a volume. Backups outlive the volume they were taken of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VolumeBackupInfo {
    pub name: String,
    pub volume: String,
    pub project: String,
    /// Size of the compressed archive in bytes.
    pub size: u64,
    /// RFC3339 (when the archive was finished).
    pub created_at: String,
}

/// `POST /projects/{p}/lock`: take the project's apply lock.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockRequest {
    /// Who holds it (shown to others who find it taken), e.g. `4kr apply on host (pid 123)`.
    pub holder: String,
    /// Seconds until the lock expires unless refreshed (1–3600).
    pub ttl_seconds: u64,
    /// With a saved plan: the fingerprint it was made against. The lock is refused with 409
    /// `stale_plan` when the server's state no longer matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// What `fingerprint` covers (from the plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub scope: Option<crate::plan::FingerprintScope>,
}

/// A held lock.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LockInfo {
    pub project: String,
    /// Pass to refresh and release.
    pub id: String,
    pub holder: String,
    /// RFC3339.
    pub expires_at: String,
}

// ---- publishing and ports ----
//
// | method | path (under `/v1/projects/{p}/boxes/{b}`) | body → answer |
// |---|---|---|
// | POST | `/publish` | `PublishRequest` → `Published` (409 `host_taken` unless `force`) |
// | POST | `/unpublish` | `UnpublishRequest` → `Published` (403 `host_not_owned`, 404 `not_published`) |
// | GET | `/ports` | → `Vec<ListeningPort>` |
// | GET | `/ports/{port}/wait?timeout_ms=N` | → `PortWait` (waits at most N ms, default 30000) |

/// `POST …/publish`. The host is `host` when given, otherwise `{subdomain}.{domain}` with the
/// server's publish domain by default; subdomain `@` is the apex (the bare domain).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    /// Explicit full hostname (not with `subdomain` or `domain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Overrides the server's publish domain (not with `host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Take the host over from the box that publishes it.
    #[serde(default)]
    pub force: bool,
}

/// `POST …/unpublish`: the host, resolved as for [`PublishRequest`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnpublishRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// The host a publish or unpublish acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Published {
    pub host: String,
}

/// A TCP socket listening inside a box (`port list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListeningPort {
    pub port: u16,
    /// The address it is bound to (`0.0.0.0` and `::` mean every address).
    pub address: String,
}

/// `port wait`: whether the port listens, and how long it took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PortWait {
    pub port: u16,
    /// `false`: the timeout passed first.
    pub listening: bool,
    pub waited_ms: u64,
}

// ---- project users (document 004) ----
//
// | method | path (under `/v1/projects/{p}`) | body → answer |
// |---|---|---|
// | GET, POST | `/users` | → `Vec<UserInfo>`; `CreateUser` → 201 `UserInfo` (409 `conflict`) |
// | GET, PATCH | `/users/{user}` | → `UserInfo`; `UpdateUser` → `UserInfo` (400 `no_updates`) |
// | DELETE | `/users/{user}` | → `UserDeleted` |

/// `POST /projects/{p}/users`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// User name: 1–32 characters of `[a-z0-9_-]`, not a reserved system name.
    pub name: String,
    /// Login shell; default `/bin/bash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
}

/// `PATCH /projects/{p}/users/{user}`: what may change after create (the UID, GID, name and home
/// are fixed).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// A new login shell (an absolute path inside the box).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
}

/// A project user as `user list` and `user create` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserInfo {
    pub name: String,
    pub project: String,
    /// From 20000, sequential per project.
    pub uid: u32,
    /// Always equal to `uid`.
    pub gid: u32,
    /// `/home/<name>` (in the project's `/home` volume).
    pub home: String,
    pub shell: String,
    /// RFC3339.
    pub created_at: String,
}

/// `DELETE /projects/{p}/users/{user}` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserDeleted {
    pub name: String,
    /// `true` when the user existed and was removed now, `false` when it was already gone.
    pub deleted: bool,
}
