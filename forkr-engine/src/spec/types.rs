//! The file format of `.forkr/*.yaml` and `.forkr/config.yaml`, as Rust types.
//!
//! These types are the single source of truth: serde reads the files with them, `schemars` turns
//! them into `schemas/forkr.schema.json` and `schemas/config.schema.json` (which editors use through
//! the `# yaml-language-server: $schema=...` line), and the loader checks files against that same
//! generated schema before anything else, so an editor and `4kr validate` never disagree about
//! structure. Rules that a JSON Schema cannot express well (name patterns, reserved variables, mount
//! paths, references between objects) live in `validate.rs`.
//!
//! Every field carries a doc comment (it becomes the schema `description` and the help text of a
//! diagnostic) and an example (the schema's `examples`); a test enforces both.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One `.forkr/*.yaml` file. Every such file except `config.yaml` is read and the files are merged:
/// a name may appear in only one of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Forkr workspace", example = example_workspace())]
pub struct WorkspaceFile {
    /// The project every box, volume and snapshot of this workspace lives in. When no file sets it,
    /// the CLI's project resolution applies (`--project`, `FORKR_PROJECT`, git root name, `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"web-app")]
    pub project: Option<String>,

    /// Bases to build, by name: reusable read-only templates that boxes start from.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(example = example_bases())]
    #[schemars(extend("propertyNames" = { "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]*$" }))]
    pub bases: BTreeMap<String, BaseSpec>,

    /// Data volumes, by name: persistent disks that survive box deletion and are mounted into boxes
    /// with `data`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(example = example_volumes())]
    #[schemars(extend("propertyNames" = { "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" }))]
    pub volumes: BTreeMap<String, VolumeSpec>,

    /// Boxes, by name: persistent Linux sandboxes cloned from a base or forked from another box.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(example = example_boxes())]
    #[schemars(extend("propertyNames" = { "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" }))]
    pub boxes: BTreeMap<String, BoxSpec>,
}

/// A base built by this workspace. Exactly one of `script`, `dockerfile` or `tarball` says how.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = json!({ "from": "box-base", "script": "apt-get install -y nginx\n" }))]
pub struct BaseSpec {
    /// The parent base (an alias, an exact version or `alias:tag`): a script runs in a transient box
    /// cloned from it, a tarball is extracted on top of it. Default for scripts: `box-base`. Not
    /// used with `dockerfile`, whose `FROM` line picks the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"box-base")]
    pub from: Option<String>,

    /// A shell script run as root in a transient box on `from`; the result becomes a new version of
    /// this base. Inline text, or `{ file: path }` relative to the workspace root. The version's
    /// tag is the script's sha256, so an unchanged script builds nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"apt-get update && apt-get install -y nginx\n")]
    pub script: Option<ScriptSource>,

    /// A Dockerfile (path relative to the workspace root) built with docker, podman or nerdctl for
    /// linux/amd64; its root filesystem becomes a new version of this base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"docker/Dockerfile")]
    pub dockerfile: Option<String>,

    /// The build context of `dockerfile` (a folder relative to the workspace root). Default: the
    /// folder holding the Dockerfile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"docker")]
    pub context: Option<String>,

    /// A `.tar.gz` of a root filesystem (path relative to the workspace root), extracted on top of
    /// `from` when given, otherwise into an empty filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"images/rootfs.tar.gz")]
    pub tarball: Option<String>,
}

/// A build script: inline shell text, or a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ScriptSource {
    /// The script text itself (use a YAML block scalar `|` for several lines).
    Inline(String),
    /// A script file.
    File(ScriptFile),
}

/// A script kept in its own file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = json!({ "file": "scripts/setup.sh" }))]
pub struct ScriptFile {
    /// Path of the script, relative to the workspace root (the folder holding `.forkr/`).
    #[schemars(example = &"scripts/setup.sh")]
    pub file: String,
}

/// A data volume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = json!({ "size": "10Gi" }))]
pub struct VolumeSpec {
    /// Size of the volume: `512Mi`, `10Gi`, `1T` (binary suffixes Ki/Mi/Gi/Ti, decimal K/M/G/T) or
    /// a plain number of MiB. Default: the server's default volume size. A volume only grows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"10Gi")]
    pub size: Option<Quantity>,
}

/// A box: a persistent sandbox whose root filesystem is a copy-on-write clone of a base, or of
/// another box with `fork`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = json!({ "base": "box-base", "port": 8080, "env": { "APP_ENV": "dev" } }))]
pub struct BoxSpec {
    /// The base to clone the root filesystem from: an alias (its newest version), an exact version
    /// or `alias:tag`. Default: `box-base`. Cannot be used with `fork`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"box-base")]
    pub base: Option<String>,

    /// Another box to clone (root filesystem and settings); this box's own settings override the
    /// inherited ones. Cannot be used with `base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"builder")]
    pub fork: Option<String>,

    /// Environment variables of every process in the box. Changing them replaces the box (it is
    /// restarted with the new environment on the same root filesystem, so its files are kept).
    /// Reserved: FORKR_PROJECT, BOX_NAME, FORKR_API_URL, FORKR_API_HOST, TERM.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(example = json!({ "APP_ENV": "production", "WORKERS": 4 }))]
    pub env: BTreeMap<String, EnvValue>,

    /// CPU request: cores as a number (`2`, `0.5`) or millicores (`500m`). Changes in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"500m")]
    pub cpu: Option<Cpu>,

    /// Memory limit: `512Mi`, `2Gi`, `1G`, or a plain number of MiB. Changes in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"512Mi")]
    pub memory: Option<Quantity>,

    /// The port the box serves on; published hosts route here. Default 8080. Changes in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535), example = 8080)]
    pub port: Option<u32>,

    /// Seconds between SIGTERM and SIGKILL when the box stops (at most 86400). Changes in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 86400), example = 30)]
    pub termination_grace_seconds: Option<u64>,

    /// Free-form labels, for `4kr list` filters and your own tooling. The `forkr.` prefix is
    /// reserved (the workspace's ownership tag uses it). Changes in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = json!(["web", "team-a"]))]
    pub tags: Option<Vec<String>>,

    /// Data volumes to mount: `VOLUME: /path`, with `:ro` (read-only) or `:rw` (default). The path
    /// is absolute and not under /proc, /sys, /dev, /run, /etc or /volumes. Changing mounts
    /// replaces the box (keeping its root filesystem).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(example = json!({ "app-data": "/srv/data", "shared": "/srv/shared:ro" }))]
    #[schemars(extend("propertyNames" = { "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" }))]
    pub data: BTreeMap<String, String>,

    /// Hostnames to publish the box on (TLS, routed to `port`): a subdomain of the server's publish
    /// domain (`@` for the bare domain), or `{ host: full.name }`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(example = json!(["www", { "host": "app.example.com" }]))]
    pub publish: Vec<PublishSpec>,

    /// Named snapshots of the root filesystem to make sure exist; missing ones are taken after the
    /// box is created. Existing snapshots are never changed or deleted by `apply`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(example = json!(["clean", { "name": "seeded", "description": "after loading fixtures" }]))]
    pub snapshots: Vec<SnapshotSpec>,

    /// Local folders mirrored into the box by `4kr apply --watch` (and once by `apply`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(example = json!([{ "from": "src", "to": "/work/src", "exclude": ["target/**"] }]))]
    pub sync: Vec<SyncSpec>,
}

/// An environment value. Numbers and booleans are accepted and turned into their text; quote a
/// value to keep it verbatim (`"1.50"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum EnvValue {
    /// Text, used as is.
    Text(String),
    /// An integer, used as its decimal text.
    Integer(i64),
    /// A number, used as its shortest decimal text.
    Number(f64),
    /// `true` or `false`, used as that text.
    Bool(bool),
}

impl EnvValue {
    /// The value as the box's process environment will see it.
    pub fn as_text(&self) -> String {
        match self {
            EnvValue::Text(s) => s.clone(),
            EnvValue::Integer(i) => i.to_string(),
            EnvValue::Number(f) => f.to_string(),
            EnvValue::Bool(b) => b.to_string(),
        }
    }
}

/// A CPU amount: cores as a number, or a string such as `"2"`, `"0.5"` or `"500m"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Cpu {
    /// Cores, e.g. `0.5` or `2`.
    Cores(f64),
    /// Cores (`"1.5"`) or millicores (`"500m"`) as text.
    Text(String),
}

/// A size: a string with a unit (`512Mi`, `2Gi`, `1G`) or a plain number of MiB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Quantity {
    /// A number of MiB.
    Mib(u64),
    /// A number with a unit: Ki, Mi, Gi, Ti (powers of 1024) or K, M, G, T (powers of 1000).
    Text(String),
}

/// A host to publish a box on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PublishSpec {
    /// A subdomain of the server's publish domain; `@` is the bare domain.
    Subdomain(String),
    /// A host with options.
    Detailed(PublishDetail),
}

/// A publish with options. Give `subdomain` (optionally with `domain`) or `host`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = json!({ "host": "app.example.com", "force": true }))]
pub struct PublishDetail {
    /// A subdomain of `domain` (or of the server's publish domain); `@` is the bare domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"www")]
    pub subdomain: Option<String>,

    /// The full hostname. Cannot be used with `subdomain` or `domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"app.example.com")]
    pub host: Option<String>,

    /// The domain `subdomain` is under, instead of the server's publish domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"example.org")]
    pub domain: Option<String>,

    /// Take the host over when another box already publishes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(example = true)]
    pub force: bool,
}

/// A snapshot to make sure exists: its name, or a name with a description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SnapshotSpec {
    /// The snapshot name (letters, digits, `_`, `.`, `-`).
    Name(String),
    /// A name with a description.
    Detailed(SnapshotDetail),
}

/// A named snapshot with a description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = json!({ "name": "seeded", "description": "after loading fixtures" }))]
pub struct SnapshotDetail {
    /// The snapshot name (letters, digits, `_`, `.`, `-`).
    #[schemars(example = &"seeded")]
    pub name: String,

    /// A note shown by `4kr snapshot list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"after loading fixtures")]
    pub description: Option<String>,
}

impl SnapshotSpec {
    pub fn name(&self) -> &str {
        match self {
            SnapshotSpec::Name(n) => n,
            SnapshotSpec::Detailed(d) => &d.name,
        }
    }

    pub fn description(&self) -> Option<&str> {
        match self {
            SnapshotSpec::Name(_) => None,
            SnapshotSpec::Detailed(d) => d.description.as_deref(),
        }
    }
}

/// A local folder mirrored into a box.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = json!({ "from": "src", "to": "/work/src", "include": ["**/*.rs"], "exclude": ["target/**"] }))]
pub struct SyncSpec {
    /// The local folder, relative to the workspace root.
    #[schemars(example = &"src")]
    pub from: String,

    /// The absolute path inside the box that mirrors `from`.
    #[schemars(example = &"/work/src")]
    pub to: String,

    /// Glob patterns (globset syntax, relative to `from`) of files to mirror. Default: everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(example = json!(["**/*.rs", "Cargo.toml"]))]
    pub include: Vec<String>,

    /// Glob patterns (relative to `from`) of files never mirrored; wins over `include`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(example = json!(["target/**", "**/*.tmp"]))]
    pub exclude: Vec<String>,
}

/// `.forkr/config.yaml` (or `$FORKR_SETUP_DIR/config.yaml`): the CLI's setup, read and written by
/// `4kr config set/get/list/unset`. It is not part of the workspace description.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Forkr CLI setup", example = json!({ "profile": "staging", "profiles": { "staging": { "url": "https://api.forkr.example.com" } } }))]
pub struct SetupConfig {
    /// The default profile: every command targets it unless `--profile` or `FORKR_PROFILE` says
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"staging")]
    pub profile: Option<String>,

    /// The API base URL when no profile supplies one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"https://api.forkr.example.com")]
    pub url: Option<String>,

    /// The bearer token sent to the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"f0rkr-t0ken")]
    pub token: Option<String>,

    /// The deployment domain; the API URL defaults to `https://api.<forkr_domain>` and the SSH host
    /// to `ssh.<forkr_domain>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"forkr.example.com")]
    pub forkr_domain: Option<String>,

    /// The default project when neither `--project` nor `FORKR_PROJECT` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"web-app")]
    pub project: Option<String>,

    /// Named targets, selected with `--profile NAME` or `FORKR_PROFILE`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(example = json!({ "staging": { "url": "https://api.forkr.example.com", "token": "f0rkr-t0ken" } }))]
    pub profiles: BTreeMap<String, ProfileConfig>,
}

/// One named target. `FORKR_PROFILE_<NAME>_<SUFFIX>` variables override its fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = json!({ "url": "https://api.forkr.example.com", "token": "f0rkr-t0ken" }))]
pub struct ProfileConfig {
    /// The API base URL (`FORKR_PROFILE_<NAME>_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"https://api.forkr.example.com")]
    pub url: Option<String>,

    /// The bearer token (`FORKR_PROFILE_<NAME>_TOKEN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"f0rkr-t0ken")]
    pub token: Option<String>,

    /// The deployment domain the API URL and SSH host derive from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"forkr.example.com")]
    pub forkr_domain: Option<String>,

    /// The SSH host (`FORKR_PROFILE_<NAME>_SSH_HOST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"ssh.forkr.example.com")]
    pub ssh_host: Option<String>,

    /// Skip TLS certificate checks (`FORKR_PROFILE_<NAME>_INSECURE`); for local test servers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = false)]
    pub insecure: Option<bool>,

    /// The IP address to connect to instead of resolving the host (`FORKR_PROFILE_<NAME>_IP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"203.0.113.10")]
    pub ip: Option<String>,
}

fn example_workspace() -> Value {
    json!({
        "project": "web-app",
        "volumes": example_volumes(),
        "boxes": example_boxes(),
    })
}

fn example_bases() -> Value {
    json!({ "app-base": { "from": "box-base", "script": { "file": "scripts/setup.sh" } } })
}

fn example_volumes() -> Value {
    json!({ "app-data": { "size": "10Gi" } })
}

fn example_boxes() -> Value {
    json!({
        "web": {
            "base": "box-base",
            "port": 8080,
            "data": { "app-data": "/srv/data" },
            "publish": ["www"],
        }
    })
}
