use std::collections::BTreeSet;
use std::path::Path;

use super::*;
use crate::api::DataMount;
use crate::spec::model::Publish;

/// A temporary workspace root with helper files.
struct Root(tempfile::TempDir);

impl Root {
    fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
        std::fs::write(dir.path().join("scripts/setup.sh"), "echo setup\n").unwrap();
        Root(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn load(&self, files: &[(&str, &str)]) -> Result<Workspace, SpecErrors> {
        load_sources(self.path(), files, &LoadOptions::default())
    }

    fn load_known(&self, files: &[(&str, &str)], known: Known) -> Result<Workspace, SpecErrors> {
        let opts = LoadOptions { known: Some(known), ..LoadOptions::default() };
        load_sources(self.path(), files, &opts)
    }
}

/// `(file:line:col, code)` of every problem.
fn places(e: &SpecErrors) -> Vec<(String, &'static str)> {
    e.problems().iter().map(|p| (p.location(), p.code())).collect()
}

fn err(r: Result<Workspace, SpecErrors>) -> SpecErrors {
    match r {
        Ok(ws) => panic!("expected problems, loaded {ws:#?}"),
        Err(e) => e,
    }
}

fn known(bases: &[&str], volumes: &[&str], boxes: &[&str]) -> Known {
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    Known { bases: set(bases), volumes: set(volumes), boxes: set(boxes) }
}

#[test]
fn files_are_merged_and_values_resolved() {
    let root = Root::new();
    let ws = root
        .load(&[
            ("a.yaml", "project: web-app\nvolumes:\n  app-data: { size: 2Gi }\n"),
            (
                "b.yaml",
                "boxes:\n  web:\n    base: box-base\n    env: { A: 1, B: x, C: true, D: 1.5 }\n    cpu: 500m\n    memory: 1Gi\n    port: 3000\n    termination_grace_seconds: 5\n    tags: [z, a]\n    data: { app-data: \"/srv/data:ro\" }\n    publish: [www, { host: app.example.com, force: true }]\n    snapshots: [clean, { name: seeded, description: with fixtures }]\n    sync: [{ from: src, to: /work/src, exclude: [\"target/**\"] }]\n  worker:\n    fork: web\n",
            ),
            ("c.yaml", "bases:\n  app-base:\n    from: box-base\n    script: { file: scripts/setup.sh }\n"),
        ])
        .unwrap();
    assert_eq!(ws.project, "web-app");
    assert!(ws.id.as_str().starts_with("web-app."));
    let web = &ws.boxes["web"];
    assert_eq!(web.source, BoxSource::Base("box-base".into()));
    let env: Vec<(&str, &str)> = web.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(env, vec![("A", "1"), ("B", "x"), ("C", "true"), ("D", "1.5")]);
    assert_eq!(web.cpu.as_ref().unwrap().cores, 0.5);
    assert_eq!(web.memory, Some((1024, "1Gi".into())));
    assert_eq!(web.port, Some(3000));
    assert_eq!(web.termination_grace_seconds, Some(5));
    assert_eq!(web.tags, Some(vec!["a".into(), "z".into()]));
    assert_eq!(
        web.data,
        vec![DataMount { name: "app-data".into(), path: "/srv/data".into(), read_only: true }]
    );
    assert_eq!(
        web.publish[1],
        Publish { subdomain: None, domain: None, host: Some("app.example.com".into()), force: true }
    );
    assert_eq!(web.snapshots[1].description.as_deref(), Some("with fixtures"));
    assert_eq!(web.sync[0].from, root.path().join("src"));
    assert_eq!(ws.boxes["worker"].source, BoxSource::Fork("web".into()));
    assert_eq!(ws.boxes["worker"].tags, None);
    assert_eq!(ws.volumes["app-data"].size_mib, Some(2048));
    let base = &ws.bases["app-base"];
    assert_eq!(
        base.build,
        BaseBuild::Script { content: "echo setup\n".into(), file: Some("scripts/setup.sh".into()) }
    );
    assert_eq!(base.tag, crate::spec::model::sha256_hex(b"echo setup\n"));
}

#[test]
fn defaults_project_and_base_and_id_override() {
    let root = Root::new();
    let opts = LoadOptions {
        default_project: "fallback".into(),
        workspace_id: Some(WorkspaceId("fixed.00000000".into())),
        ..LoadOptions::default()
    };
    let ws = load_sources(
        root.path(),
        &[("a.yaml", "boxes:\n  hello: {}\n"), ("empty.yaml", "# nothing yet\n")],
        &opts,
    )
    .unwrap();
    assert_eq!(ws.project, "fallback");
    assert_eq!(ws.id.as_str(), "fixed.00000000");
    assert_eq!(ws.boxes["hello"].source, BoxSource::Base("box-base".into()));
}

#[test]
fn load_dir_reads_forkr_folder_but_not_config() {
    let root = Root::new();
    let dir = root.path().join(".forkr");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("boxes.yaml"), "boxes:\n  a: {}\n").unwrap();
    std::fs::write(dir.join("more.yml"), "boxes:\n  b: {}\n").unwrap();
    std::fs::write(dir.join("config.yaml"), "profile: x\nnot_a_workspace_key: 1\n").unwrap();
    std::fs::write(dir.join(".hidden.yaml"), "nonsense: [\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
    let ws = load_dir(root.path(), &LoadOptions::default()).unwrap();
    assert_eq!(ws.boxes.keys().collect::<Vec<_>>(), vec!["a", "b"]);

    let e = err(load_dir(&root.path().join("nowhere"), &LoadOptions::default()));
    assert_eq!(places(&e), vec![(String::new(), "no_workspace")]);
}

#[test]
fn declared_project_and_the_project_override() {
    let root = Root::new();
    let dir = root.path().join(".forkr");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.yaml"), "boxes:\n  a: {}\n").unwrap();
    assert_eq!(declared_project(root.path()), None);
    std::fs::write(dir.join("b.yaml"), "# project: not-this\nproject: \"web-app\" # the app\n").unwrap();
    std::fs::write(dir.join("config.yaml"), "project: from-config\n").unwrap();
    assert_eq!(declared_project(root.path()).as_deref(), Some("web-app"));

    let ws = load_dir(root.path(), &LoadOptions::default()).unwrap();
    assert_eq!(ws.project, "web-app");
    let opts = LoadOptions { project: Some("preview-7".into()), ..LoadOptions::default() };
    let over = load_dir(root.path(), &opts).unwrap();
    assert_eq!(over.project, "preview-7");
    // Another project is another owner.
    assert_ne!(over.id, ws.id);
    assert!(over.id.as_str().starts_with("preview-7."));
}

#[test]
fn workspace_root_is_the_nearest_folder_with_workspace_files() {
    let root = Root::new();
    let home = root.path();
    std::fs::create_dir_all(home.join(".forkr")).unwrap();
    std::fs::write(home.join(".forkr/config.yaml"), "profile: x\n").unwrap();
    let repo = home.join("repo");
    std::fs::create_dir_all(repo.join(".forkr")).unwrap();
    std::fs::create_dir_all(repo.join("src/deep")).unwrap();
    std::fs::write(repo.join(".forkr/forkr.yaml"), "boxes: {}\n").unwrap();
    assert_eq!(find_workspace_root(&repo.join("src/deep")), Some(repo.clone()));
    assert_eq!(find_workspace_root(&repo), Some(repo));
    // Only a setup config above: no workspace.
    assert_eq!(find_workspace_root(&home.join("src")), None);
}

#[test]
fn problems_in_many_files_are_all_reported_with_positions() {
    let root = Root::new();
    let e = err(root.load(&[
        ("a.yaml", "boxes:\n  web:\n    prot: 80\n"),
        ("b.yaml", "boxes: [oops\n"),
        ("c.yaml", "boxes:\n  api:\n    port: 70000\n  db:\n    env:\n      TERM: xterm\n"),
    ]));
    assert_eq!(
        places(&e),
        vec![
            ("a.yaml:3:5".into(), "unknown_key"),
            ("b.yaml:1:8".into(), "yaml_syntax"),
            ("c.yaml:3:11".into(), "invalid_port"),
            ("c.yaml:6:7".into(), "reserved_env"),
        ]
    );
    assert_eq!(e.problems()[0].help_text(), Some("did you mean `port`?"));
}

#[test]
fn a_broken_box_does_not_hide_the_next_one() {
    let root = Root::new();
    let e = err(root.load(&[(
        "a.yaml",
        "boxes:\n  one:\n    port: x\n    cpu: 0\n  two:\n    env: { BOX_NAME: a }\n    memory: lots\n",
    )]));
    let codes: Vec<&str> = e.problems().iter().map(|p| p.code()).collect();
    // `one`'s type error does not hide its invalid cpu; `two` has two problems of its own.
    assert_eq!(codes, vec!["wrong_type", "invalid_value", "reserved_env", "invalid_value"]);
    // A broken list item drops the list, not the box: the port is still checked.
    let e = err(root.load(&[(
        "a.yaml",
        "boxes:
  one:
    sync: [{ from: src }]
    env: { TERM: x }
",
    )]));
    let codes: Vec<&str> = e.problems().iter().map(|p| p.code()).collect();
    assert_eq!(codes, vec!["missing_key", "reserved_env"]);
}

#[test]
fn duplicate_names_across_files_point_at_both() {
    let root = Root::new();
    let e = err(root.load(&[
        ("a.yaml", "boxes:\n  web: {}\n"),
        ("b.yaml", "\nboxes:\n  web: {}\nvolumes:\n  v: {}\n"),
        ("c.yaml", "volumes:\n  v: {}\n"),
    ]));
    assert_eq!(
        places(&e),
        vec![("b.yaml:3:3".into(), "duplicate_name"), ("c.yaml:2:3".into(), "duplicate_name")]
    );
    let json = e.to_json();
    assert_eq!(json[0].message, "box `web` is defined twice");
    assert_eq!(json[0].related[0].file.as_deref(), Some("a.yaml"));
    assert_eq!(json[0].related[0].line, Some(2));
}

#[test]
fn duplicate_keys_in_one_mapping() {
    let root = Root::new();
    let e = err(root.load(&[("a.yaml", "boxes:\n  web:\n    port: 1\n    port: 2\n  web: {}\n")]));
    assert_eq!(
        places(&e),
        vec![("a.yaml:4:5".into(), "duplicate_key"), ("a.yaml:5:3".into(), "duplicate_key")]
    );
}

#[test]
fn project_names_and_mismatch() {
    let root = Root::new();
    let e = err(root.load(&[
        ("a.yaml", "project: one\n"),
        ("b.yaml", "project: two\n"),
        ("c.yaml", "project: Bad_Name\n"),
    ]));
    assert_eq!(
        places(&e),
        vec![("b.yaml:1:10".into(), "project_mismatch"), ("c.yaml:1:10".into(), "invalid_name")]
    );
}

#[test]
fn invalid_names_of_every_kind() {
    let root = Root::new();
    let e = err(root.load(&[(
        "a.yaml",
        "bases:\n  -bad:\n    script: x\nvolumes:\n  Vol: {}\nboxes:\n  Web: {}\n  ok:\n    snapshots: [\"a b\"]\n    data: { Bad_Vol: /data }\n",
    )]));
    assert_eq!(
        places(&e),
        vec![
            ("a.yaml:2:3".into(), "invalid_name"),
            ("a.yaml:5:3".into(), "invalid_name"),
            ("a.yaml:7:3".into(), "invalid_name"),
            ("a.yaml:9:17".into(), "invalid_name"),
            ("a.yaml:10:13".into(), "invalid_name"),
        ]
    );
}

#[test]
fn reserved_and_invalid_env_names() {
    let root = Root::new();
    let text = "boxes:\n  web:\n    env:\n      FORKR_PROJECT: a\n      BOX_NAME: a\n      FORKR_API_URL: a\n      FORKR_API_HOST: a\n      TERM: a\n      1BAD: a\n      GOOD_1: a\n";
    let e = err(root.load(&[("a.yaml", text)]));
    let codes: Vec<&str> = e.problems().iter().map(|p| p.code()).collect();
    assert_eq!(codes, vec!["reserved_env"; 5].into_iter().chain(["invalid_env_name"]).collect::<Vec<_>>());
    assert_eq!(e.problems()[4].message(), "`TERM`: environment variable is reserved");
    assert_eq!(e.problems()[0].location(), "a.yaml:4:7");
}

#[test]
fn mount_paths() {
    let root = Root::new();
    let text = "volumes:\n  a: {}\n  b: {}\n  c: {}\n  d: {}\n  e: {}\n  f: {}\nboxes:\n  web:\n    data:\n      a: relative/path\n      b: /etc/app\n      c: /proc\n      d: /srv/x:rx\n      e: /srv/data\n      f: /srv/data:ro\n";
    let e = err(root.load(&[("a.yaml", text)]));
    assert_eq!(
        places(&e),
        vec![
            ("a.yaml:11:10".into(), "invalid_mount"),
            ("a.yaml:12:10".into(), "invalid_mount"),
            ("a.yaml:13:10".into(), "invalid_mount"),
            ("a.yaml:14:10".into(), "invalid_mount"),
            ("a.yaml:16:10".into(), "duplicate_mount"),
        ]
    );
    assert!(e.problems()[1].message().contains("under /etc"), "{}", e.problems()[1].message());
}

#[test]
fn ports_out_of_range() {
    let root = Root::new();
    let e = err(root.load(&[(
        "a.yaml",
        "boxes:\n  a: { port: 0 }\n  b: { port: 65536 }\n  c: { port: 65535 }\n  d: { port: -1 }\n",
    )]));
    assert_eq!(
        places(&e),
        vec![
            ("a.yaml:2:14".into(), "invalid_port"),
            ("a.yaml:3:14".into(), "invalid_port"),
            ("a.yaml:5:14".into(), "invalid_port")
        ]
    );
    assert_eq!(e.problems()[0].message(), "`boxes.a.port` must be between 1 and 65535, found 0");
}

#[test]
fn base_with_fork() {
    let root = Root::new();
    let e = err(root.load(&[("a.yaml", "boxes:\n  src: {}\n  web:\n    base: box-base\n    fork: src\n")]));
    assert_eq!(places(&e), vec![("a.yaml:5:5".into(), "base_with_fork")]);
    assert!(e.problems()[0].message().contains("--base cannot be used with --fork"));
}

#[test]
fn references_must_exist_in_files_or_on_the_server() {
    let root = Root::new();
    let text = "bases:\n  mine:\n    from: box-bsae\n    script: x\nboxes:\n  a:\n    base: app-base\n  b:\n    fork: missing\n  c:\n    data: { nodata: /data }\n  d:\n    base: mine\n  e:\n    fork: a\n  f:\n    base: \"server-base:abc123\"\n  g:\n    fork: on-server\n";
    let e = err(
        root.load_known(&[("a.yaml", text)], known(&["box-base", "server-base"], &["other"], &["on-server"]))
    );
    assert_eq!(
        places(&e),
        vec![
            ("a.yaml:3:11".into(), "unknown_reference"),
            ("a.yaml:7:11".into(), "unknown_reference"),
            ("a.yaml:9:11".into(), "unknown_reference"),
            ("a.yaml:11:13".into(), "unknown_reference"),
        ]
    );
    assert_eq!(e.problems()[0].help_text().unwrap().split('?').next(), Some("did you mean `box-base`"));
    // Offline, anything not in the files may exist on the server.
    root.load(&[("a.yaml", text)]).unwrap();
}

#[test]
fn cycles_and_self_references() {
    let root = Root::new();
    let text = "bases:\n  x: { from: y, script: a }\n  y: { from: x, script: a }\n  z: { from: z, script: a }\nboxes:\n  a: { fork: b }\n  b: { fork: c }\n  c: { fork: a }\n  d: { fork: d }\n";
    let e = err(root.load(&[("a.yaml", text)]));
    assert_eq!(
        places(&e),
        vec![
            ("a.yaml:2:14".into(), "reference_cycle"),
            ("a.yaml:4:14".into(), "reference_cycle"),
            ("a.yaml:6:14".into(), "reference_cycle"),
            ("a.yaml:9:14".into(), "reference_cycle"),
        ]
    );
    assert_eq!(e.problems()[2].message(), "boxes `a` → `b` → `c` → `a` form a cycle through `fork`");
}

#[test]
fn base_build_sources() {
    let root = Root::new();
    std::fs::write(root.path().join("rootfs.tar.gz"), b"not really a tarball").unwrap();
    std::fs::create_dir_all(root.path().join("docker")).unwrap();
    std::fs::write(root.path().join("docker/Dockerfile"), "FROM debian\n").unwrap();
    let ws = root
        .load(&[(
            "a.yaml",
            "bases:\n  t: { tarball: rootfs.tar.gz }\n  d: { dockerfile: docker/Dockerfile }\n  s: { script: \"echo hi\\n\" }\n",
        )])
        .unwrap();
    assert_eq!(ws.bases["t"].tag, crate::spec::model::sha256_hex(b"not really a tarball"));
    assert_eq!(
        ws.bases["d"].build,
        BaseBuild::Dockerfile {
            dockerfile: root.path().join("docker/Dockerfile"),
            context: root.path().join("docker")
        }
    );
    assert_eq!(ws.bases["s"].from, None);

    let e = err(root.load(&[(
        "a.yaml",
        "bases:\n  none: {}\n  two: { script: a, tarball: rootfs.tar.gz }\n  df: { dockerfile: docker/Dockerfile, from: box-base }\n  ctx: { script: a, context: docker }\n  missing: { script: { file: nope.sh } }\n  abs: { tarball: /abs.tar.gz }\n  empty: { script: \"  \" }\n",
    )]));
    assert_eq!(
        places(&e),
        vec![
            ("a.yaml:2:3".into(), "missing_key"),
            ("a.yaml:3:21".into(), "conflicting_keys"),
            ("a.yaml:4:40".into(), "conflicting_keys"),
            ("a.yaml:5:21".into(), "conflicting_keys"),
            ("a.yaml:6:30".into(), "missing_file"),
            ("a.yaml:7:19".into(), "invalid_path"),
            ("a.yaml:8:20".into(), "invalid_value"),
        ]
    );
}

#[test]
fn sync_entries() {
    let root = Root::new();
    let e = err(root.load(&[(
        "a.yaml",
        "boxes:\n  web:\n    sync:\n      - { from: nope, to: /work }\n      - { from: src, to: work }\n      - { from: src, to: /proc/x }\n      - { from: src, to: /w, include: [\"a[\"] }\n",
    )]));
    assert_eq!(
        places(&e),
        vec![
            ("a.yaml:4:17".into(), "missing_file"),
            ("a.yaml:5:26".into(), "invalid_path"),
            ("a.yaml:6:26".into(), "invalid_path"),
            ("a.yaml:7:40".into(), "invalid_glob"),
        ]
    );
}

#[test]
fn publishes() {
    let root = Root::new();
    let e = err(root.load(&[(
        "a.yaml",
        "boxes:\n  a:\n    publish: [\"Bad Name\", {}, { host: a.example.com, subdomain: a }, { host: b.example.com, domain: example.com }, www]\n  b:\n    publish: [www]\n",
    )]));
    assert_eq!(
        places(&e),
        vec![
            ("a.yaml:3:15".into(), "invalid_publish"),
            ("a.yaml:3:27".into(), "missing_key"),
            ("a.yaml:3:33".into(), "conflicting_keys"),
            ("a.yaml:3:93".into(), "conflicting_keys"),
            ("a.yaml:5:15".into(), "duplicate_publish"),
        ]
    );
}

#[test]
fn tags() {
    let root = Root::new();
    let e =
        err(root
            .load(&[("a.yaml", "boxes:\n  a:\n    tags: [ok, \"forkr.workspace=x\", \"has space\", ok]\n")]));
    let codes: Vec<&str> = e.problems().iter().map(|p| p.code()).collect();
    assert_eq!(codes, vec!["reserved_tag", "invalid_tag", "duplicate_tag"]);
}

#[test]
fn rendered_diagnostics_carry_file_line_col_label_and_help() {
    let root = Root::new();
    let e = err(root.load(&[("boxes.yaml", "boxes:\n  web:\n    prot: 80\n")]));
    let text = e.render(false);
    assert!(text.contains("boxes.yaml:3:5"), "{text}");
    assert!(text.contains("unknown key `prot` in `boxes.web`"), "{text}");
    assert!(text.contains("did you mean `port`?"), "{text}");
    assert!(text.contains("1 problem found"), "{text}");
    assert_eq!(
        e.to_lines(),
        "boxes.yaml:3:5: error[unknown_key]: unknown key `prot` in `boxes.web` (help: did you mean `port`?)\n"
    );
    let as_error: crate::Error = e.into();
    assert_eq!(as_error.code(), "invalid_workspace");
    assert!(as_error.message().contains("boxes.yaml:3:5"));
}

#[test]
fn config_file() {
    let cfg = load_config(
        "config.yaml",
        "profile: staging\nprofiles:\n  staging:\n    url: https://x\n    insecure: true\n",
    )
    .unwrap();
    assert_eq!(cfg.profile.as_deref(), Some("staging"));
    assert_eq!(cfg.profiles["staging"].insecure, Some(true));
    let e = load_config("config.yaml", "profle: x\nprofiles:\n  s:\n    tokn: y\n").unwrap_err();
    assert_eq!(
        places(&e),
        vec![("config.yaml:1:1".into(), "unknown_key"), ("config.yaml:4:5".into(), "unknown_key")]
    );
    assert_eq!(load_config("config.yaml", "").unwrap(), SetupConfig::default());
}
