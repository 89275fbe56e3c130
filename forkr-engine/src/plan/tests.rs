use std::collections::BTreeMap;

use super::*;
use crate::api::{BoxInfo, BoxStatus, DataMount};
use crate::spec::{LoadOptions, WorkspaceId, load_sources};

const ID: &str = "demo.0000abcd";
const OWNER: &str = "forkr.workspace=demo.0000abcd";

/// Loads a workspace from one YAML text, with a fixed id so snapshots are stable.
fn ws(yaml: &str) -> Workspace {
    let root = tempfile::tempdir().unwrap();
    let opts = LoadOptions {
        default_project: "demo".into(),
        workspace_id: Some(WorkspaceId(ID.into())),
        ..LoadOptions::default()
    };
    match load_sources(root.path(), &[("forkr.yaml", yaml)], &opts) {
        Ok(ws) => ws,
        Err(e) => panic!("{}", e.render(false)),
    }
}

/// A running box as the server reports one created with defaults by this workspace.
fn info(name: &str) -> BoxInfo {
    BoxInfo {
        name: name.into(),
        project: "demo".into(),
        status: BoxStatus::Running,
        base: "box-base".into(),
        forked_from: None,
        url: format!("https://{name}.demo.example.test"),
        port: 8080,
        created_at: "2026-01-01T00:00:00Z".into(),
        updated_at: "2026-01-01T00:00:00Z".into(),
        started_at: None,
        published: Vec::new(),
        tags: vec![OWNER.into()],
        data: Vec::new(),
        env: BTreeMap::new(),
        cpus: 1.0,
        ram_mb: 1024,
        storage_gb: 10.0,
        termination_grace_seconds: 10,
        pid: None,
    }
}

fn observed(boxes: Vec<BoxInfo>) -> Observed {
    Observed {
        project: "demo".into(),
        boxes,
        bases: vec![ObservedBase {
            name: "box-base".into(),
            latest: "box-base".into(),
            versions: vec![ObservedBaseVersion {
                version: "box-base".into(),
                kind: "debootstrap".into(),
                ..Default::default()
            }],
            tags: Vec::new(),
        }],
        publish_domain: Some("example.test".into()),
        ..Observed::default()
    }
}

fn ops(plan: &Plan) -> Vec<(String, Op)> {
    plan.actions.iter().map(|a| (a.id.clone(), a.op)).collect()
}

fn render(plan: &Plan) -> String {
    plan.render(&RenderOptions::default())
}

#[test]
fn no_changes() {
    let desired = ws("boxes:\n  web: {}\n");
    let plan = plan(&desired, &observed(vec![info("web")]), &PlanOptions::default());
    assert!(plan.is_empty(), "{}", render(&plan));
    assert_eq!(plan.summary, Summary::default());
    assert!(render(&plan).starts_with("No changes."), "{}", render(&plan));
}

#[test]
fn create_everything_for_a_new_box() {
    let desired = ws(
        "boxes:\n  web:\n    port: 3000\n    env: { APP_ENV: dev }\n    memory: 512Mi\n    tags: [web]\n    snapshots: [clean]\n    publish: [www]\n",
    );
    let plan = plan(&desired, &observed(vec![]), &PlanOptions::default());
    assert_eq!(
        ops(&plan),
        vec![
            ("box.web".into(), Op::Create),
            ("snapshot.web.clean".into(), Op::Create),
            ("publish.web.www.example.test".into(), Op::Create),
        ]
    );
    assert_eq!(
        plan.waves,
        vec![
            vec!["box.web".to_string()],
            vec!["snapshot.web.clean".into(), "publish.web.www.example.test".into()]
        ]
    );
    let Request::CreateBox { create } = &plan.actions[0].request else { panic!("not a create") };
    assert_eq!(create.tags, vec![OWNER.to_string(), "web".into()]);
    assert_eq!(create.port, Some(3000));
    assert_eq!(create.memory.as_deref(), Some("512Mi"));
    assert_eq!(plan.summary_line(), "Plan: 3 to add, 0 to change, 0 to replace, 0 to destroy.");
    insta::assert_snapshot!("create_render", render(&plan));
}

#[test]
fn port_change_is_an_update_in_place() {
    let desired = ws("boxes:\n  web:\n    port: 3000\n    cpu: 500m\n");
    let plan = plan(&desired, &observed(vec![info("web")]), &PlanOptions::default());
    assert_eq!(ops(&plan), vec![("box.web".into(), Op::Update)]);
    let a = &plan.actions[0];
    let fields: Vec<(&str, String, String)> = a
        .changes
        .iter()
        .map(|c| {
            (c.field.as_str(), c.before.as_ref().unwrap().to_string(), c.after.as_ref().unwrap().to_string())
        })
        .collect();
    assert_eq!(fields, vec![("port", "8080".into(), "3000".into()), ("cpu", "1.0".into(), "0.5".into())]);
    let Request::UpdateBox { update, .. } = &a.request else { panic!("not an update") };
    assert_eq!(update.settings.get("PORT").map(String::as_str), Some("3000"));
    assert_eq!(update.settings.get("CPU").map(String::as_str), Some("500m"));
    assert_eq!(update.tags, None);
    let text = render(&plan);
    assert!(text.contains("~ port = 8080 -> 3000"), "{text}");
    assert!(text.contains("Plan: 0 to add, 1 to change, 0 to replace, 0 to destroy."), "{text}");
}

#[test]
fn env_change_replaces_and_keeps_the_root() {
    let desired = ws("boxes:\n  web:\n    env: { A: \"2\", B: new }\n    port: 9000\n");
    let mut web = info("web");
    web.env.insert("A".into(), "1".into());
    web.env.insert("OLD".into(), "x".into());
    web.env.insert("BOX_NAME".into(), "web".into()); // injected: ignored
    let plan = plan(&desired, &observed(vec![web]), &PlanOptions::default());
    assert_eq!(ops(&plan), vec![("box.web".into(), Op::Replace)]);
    let a = &plan.actions[0];
    assert!(a.keep_root);
    assert_eq!(a.reason.as_deref(), Some("env changed"));
    let Request::ReplaceBox { create, keep_root } = &a.request else { panic!("not a replace") };
    assert!(*keep_root);
    assert_eq!(create.port, Some(9000));
    let forcing: Vec<&str> =
        a.changes.iter().filter(|c| c.forces_replacement).map(|c| c.field.as_str()).collect();
    assert_eq!(forcing, vec!["env.A", "env.B", "env.OLD"]);
    insta::assert_snapshot!("replace_keep_root_render", render(&plan));
}

#[test]
fn base_change_replaces_from_scratch() {
    let desired = ws("boxes:\n  web:\n    base: other-base\n");
    let plan = plan(&desired, &observed(vec![info("web")]), &PlanOptions::default());
    let a = &plan.actions[0];
    assert_eq!(a.op, Op::Replace);
    assert!(!a.keep_root);
    assert_eq!(a.reason.as_deref(), Some("its base changes from box-base to other-base"));
}

#[test]
fn base_versions_satisfy_their_alias() {
    let desired = ws("boxes:\n  web: {}\n  pinned:\n    base: box-base-v20260101120000\n");
    let mut web = info("web");
    web.base = "box-base-v20260202120000".into();
    let mut pinned = info("pinned");
    pinned.base = "box-base-v20260202120000".into();
    let plan = plan(&desired, &observed(vec![web, pinned]), &PlanOptions::default());
    assert_eq!(ops(&plan), vec![("box.pinned".into(), Op::Replace)]);
}

#[test]
fn deletion_needs_prune_and_ownership() {
    let desired = ws("boxes:\n  web: {}\n");
    let mut foreign = info("foreign");
    foreign.tags = vec!["forkr.workspace=other.11111111".into()];
    let mut manual = info("manual");
    manual.tags = vec!["team-a".into()];
    let obs = observed(vec![info("web"), info("old"), foreign, manual]);

    let without = plan(&desired, &obs, &PlanOptions::default());
    assert!(without.is_empty());
    assert_eq!(
        without.warnings,
        vec!["1 object created by this workspace is no longer in the files: box old. Run with --prune to delete it.".to_string()]
    );

    let with = plan(&desired, &obs, &PlanOptions { prune: true, ..PlanOptions::default() });
    assert_eq!(ops(&with), vec![("box.old".into(), Op::Delete)]);
    assert!(render(&with).contains("  - box \"old\""), "{}", render(&with));
    assert_eq!(with.summary.destroy, 1);
}

#[test]
fn boxes_of_another_workspace_are_conflicts_and_untagged_ones_are_adopted() {
    let desired = ws("boxes:\n  taken: {}\n  manual: {}\n");
    let mut taken = info("taken");
    taken.tags = vec!["forkr.workspace=other.11111111".into()];
    let mut manual = info("manual");
    manual.tags = vec![];
    let plan = plan(&desired, &observed(vec![taken, manual]), &PlanOptions::default());
    assert_eq!(ops(&plan), vec![("box.manual".into(), Op::Update)]);
    assert!(plan.actions[0].reason.as_deref().unwrap().contains("adopts"));
    assert_eq!(plan.conflicts.len(), 1);
    assert!(plan.conflicts[0].contains("other.11111111"), "{:?}", plan.conflicts);
}

#[test]
fn target_limits_to_the_box_and_its_dependencies() {
    let desired = ws(
        "volumes:\n  data: {}\n  unrelated: {}\nboxes:\n  builder: {}\n  web:\n    fork: builder\n    data: { data: /data }\n  api: {}\n",
    );
    let obs = observed(vec![info("gone")]);
    let plan = plan(
        &desired,
        &obs,
        &PlanOptions { targets: vec!["web".into()], prune: true, ..PlanOptions::default() },
    );
    assert_eq!(
        ops(&plan),
        vec![
            ("volume.data".into(), Op::Create),
            ("box.builder".into(), Op::Create),
            ("box.web".into(), Op::Create)
        ]
    );
    let web = plan.action("box.web").unwrap();
    assert_eq!(web.depends_on, vec!["box.builder".to_string(), "volume.data".into()]);
    assert_eq!(web.wave, 1);

    let unknown =
        super::plan(&desired, &obs, &PlanOptions { targets: vec!["nope".into()], ..PlanOptions::default() });
    assert!(unknown.is_empty());
    assert!(unknown.warnings[0].contains("--target nope"), "{:?}", unknown.warnings);
}

#[test]
fn dependency_order_and_waves() {
    let desired = ws(
        "bases:\n  app: { from: box-base, script: \"echo app\\n\" }\n  app-plus: { from: app, script: \"echo plus\\n\" }\nvolumes:\n  data: { size: 1Gi }\nboxes:\n  builder:\n    base: app-plus\n    data: { data: /data }\n    snapshots: [ready]\n    publish: [build]\n  test-1: { fork: builder }\n  test-2: { fork: builder }\n",
    );
    let plan = plan(&desired, &observed(vec![]), &PlanOptions::default());
    assert_eq!(
        plan.waves,
        vec![
            vec!["base.app".to_string(), "volume.data".into()],
            vec!["base.app-plus".into()],
            vec!["box.builder".into()],
            vec![
                "box.test-1".into(),
                "box.test-2".into(),
                "snapshot.builder.ready".into(),
                "publish.builder.build.example.test".into()
            ],
        ]
    );
    // Actions are listed in wave order.
    let waves: Vec<usize> = plan.actions.iter().map(|a| a.wave).collect();
    assert!(waves.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(plan.actions_by_wave().iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1, 1, 4]);
}

#[test]
fn a_base_with_a_new_script_rebuilds_and_replaces_its_boxes() {
    let desired = ws(
        "bases:\n  app:\n    script: |\n      apt-get install -y nginx\n      echo done\nboxes:\n  web: { base: app }\n  other: {}\n",
    );
    let mut obs = observed(vec![info("other"), BoxInfo { base: "app".into(), ..info("web") }]);
    obs.bases.push(ObservedBase {
        name: "app".into(),
        latest: "app".into(),
        versions: vec![ObservedBaseVersion {
            version: "app".into(),
            kind: "script".into(),
            tag: Some("oldtag".into()),
            parent: Some("box-base".into()),
            script: Some("apt-get install -y apache2\necho done\n".into()),
            created_at: String::new(),
        }],
        tags: vec![OWNER.into()],
    });
    let plan = plan(&desired, &obs, &PlanOptions::default());
    assert_eq!(ops(&plan), vec![("base.app".into(), Op::Update), ("box.web".into(), Op::Replace)]);
    let web = plan.action("box.web").unwrap();
    assert!(!web.keep_root);
    assert_eq!(web.depends_on, vec!["base.app".to_string()]);
    insta::assert_snapshot!("base_rebuild_render", render(&plan));

    // The same script again: nothing to do.
    let Request::BuildBase { tag, .. } = &plan.actions[0].request else { panic!("not a build") };
    obs.bases[1].versions[0].tag = Some(tag.clone());
    obs.boxes[1].base = "app".into();
    assert!(super::plan(&desired, &obs, &PlanOptions::default()).is_empty());
}

#[test]
fn forks_compare_only_their_overrides_and_follow_a_recreated_source() {
    let desired = ws("boxes:\n  builder: {}\n  test:\n    fork: builder\n    env: { MODE: test }\n");
    let mut builder = info("builder");
    builder.env.insert("SHARED".into(), "1".into());
    let mut test = info("test");
    test.forked_from = Some("builder".into());
    test.env.insert("SHARED".into(), "1".into());
    test.env.insert("MODE".into(), "test".into());
    test.tags.push("inherited".into());
    test.port = 3000;
    // builder's env has a key the files do not list: builder is replaced keeping its root, which
    // leaves the fork alone.
    let p = plan(&desired, &observed(vec![builder.clone(), test.clone()]), &PlanOptions::default());
    assert_eq!(ops(&p), vec![("box.builder".into(), Op::Replace)]);
    assert!(p.actions[0].keep_root);

    // A builder recreated from scratch takes its forks along.
    let p = plan(
        &desired,
        &observed(vec![builder, test]),
        &PlanOptions { replace: vec!["builder".into()], ..PlanOptions::default() },
    );
    assert_eq!(ops(&p), vec![("box.builder".into(), Op::Replace), ("box.test".into(), Op::Replace)]);
    assert_eq!(p.action("box.test").unwrap().reason.as_deref(), Some("its fork source builder is recreated"));
    assert_eq!(p.action("box.test").unwrap().wave, 1);
}

#[test]
fn volumes_grow_but_never_shrink() {
    let desired = ws("volumes:\n  big: { size: 2Gi }\n  small: { size: 1Gi }\n");
    let mut obs = observed(vec![]);
    obs.volumes = vec![
        ObservedVolume { name: "big".into(), size_mib: Some(1024), tags: vec![OWNER.into()] },
        ObservedVolume { name: "small".into(), size_mib: Some(4096), tags: vec![OWNER.into()] },
    ];
    let plan = plan(&desired, &obs, &PlanOptions::default());
    assert_eq!(ops(&plan), vec![("volume.big".into(), Op::Update)]);
    assert!(plan.warnings[0].contains("do not shrink"), "{:?}", plan.warnings);
}

#[test]
fn publishes_converge_and_move_hosts() {
    let desired =
        ws("boxes:\n  web:\n    publish: [www, { host: app.example.org }]\n  api:\n    publish: [api]\n");
    let mut web = info("web");
    web.published = vec!["www.example.test".into(), "api.example.test".into()];
    let api = info("api");
    let plan = plan(&desired, &observed(vec![web, api]), &PlanOptions::default());
    assert_eq!(
        ops(&plan),
        vec![
            ("publish.web.app.example.org".into(), Op::Create),
            ("publish.web.api.example.test".into(), Op::Delete),
            ("publish.api.api.example.test".into(), Op::Create),
        ]
    );
    // The host moves: it is published on `api` only after `web` let go of it.
    let moved = plan.action("publish.api.api.example.test").unwrap();
    assert_eq!(moved.depends_on, vec!["publish.web.api.example.test".to_string()]);
    assert_eq!(moved.wave, 1);
}

#[test]
fn data_mount_change_keeps_root() {
    let desired = ws("volumes:\n  a: {}\nboxes:\n  web:\n    data: { a: \"/srv/a:ro\" }\n");
    let mut web = info("web");
    web.data = vec![DataMount { name: "a".into(), path: "/srv/a".into(), read_only: false }];
    let mut obs = observed(vec![web]);
    obs.volumes = vec![ObservedVolume { name: "a".into(), size_mib: None, tags: vec![OWNER.into()] }];
    let plan = plan(&desired, &obs, &PlanOptions::default());
    let a = plan.action("box.web").unwrap();
    assert_eq!(a.op, Op::Replace);
    assert!(a.keep_root);
    assert_eq!(a.changes[0].field, "data.a");
}

#[test]
fn forks_keep_inherited_volume_clones_unless_the_files_list_mounts() {
    let desired = ws("boxes:\n  src: {}\n  copy: { fork: src }\n");
    let mut copy = info("copy");
    copy.forked_from = Some("src".into());
    copy.data = vec![DataMount { name: "box-copy-data".into(), path: "/data".into(), read_only: false }];
    assert!(plan(&desired, &observed(vec![info("src"), copy]), &PlanOptions::default()).is_empty());
}

#[test]
fn missing_snapshots_are_taken() {
    let desired = ws("boxes:\n  web:\n    snapshots: [a, { name: b, description: second }]\n");
    let mut obs = observed(vec![info("web")]);
    obs.snapshots.insert("web".into(), vec![ObservedSnapshot { name: "a".into(), ..Default::default() }]);
    let plan = plan(&desired, &obs, &PlanOptions::default());
    assert_eq!(ops(&plan), vec![("snapshot.web.b".into(), Op::Create)]);
    assert!(plan.actions[0].depends_on.is_empty());
}

#[test]
fn fingerprint_detects_relevant_changes_only() {
    let desired = ws("boxes:\n  web: {}\n");
    let obs = observed(vec![info("web")]);
    let plan = plan(&desired, &obs, &PlanOptions::default());
    plan.check_fresh(&obs).unwrap();

    // Stopping the box or adding an unrelated one does not stale the plan.
    let mut same = obs.clone();
    same.boxes[0].status = BoxStatus::Stopped;
    same.boxes[0].updated_at = "2026-02-02T00:00:00Z".into();
    let mut unrelated = info("someone-elses");
    unrelated.tags.clear();
    same.boxes.push(unrelated);
    plan.check_fresh(&same).unwrap();

    // An imperative port change does.
    let mut changed = obs.clone();
    changed.boxes[0].port = 9999;
    let err = plan.check_fresh(&changed).unwrap_err();
    assert_eq!(err.code(), "stale_plan");
    assert_eq!(err.kind().http_status(), 409);

    // So does a new box owned by this workspace (it could be pruned).
    let mut owned = obs.clone();
    owned.boxes.push(info("new-owned"));
    assert!(plan.check_fresh(&owned).is_err());
}

#[test]
fn json_form_is_stable_and_round_trips() {
    let desired = ws(
        "bases:\n  app: { script: \"echo hi\\n\" }\nvolumes:\n  data: { size: 1Gi }\nboxes:\n  web:\n    base: app\n    port: 3000\n    data: { data: /data }\n    publish: [www]\n    snapshots: [clean]\n",
    );
    let mut old = info("old");
    old.published = vec!["old.example.test".into()];
    let plan = plan(&desired, &observed(vec![old]), &PlanOptions { prune: true, ..PlanOptions::default() });
    let text = plan.to_json();
    insta::assert_snapshot!("plan_json", text);
    let back = Plan::from_json(&text).unwrap();
    assert_eq!(back.to_json(), text);

    let future = text.replacen("\"format_version\": 1", "\"format_version\": 99", 1);
    assert_eq!(Plan::from_json(&future).unwrap_err().code(), "unsupported_plan_format");
    assert_eq!(Plan::from_json("{}").unwrap_err().code(), "invalid_plan");
}

#[test]
fn plan_is_deterministic() {
    let desired = ws("boxes:\n  a: { port: 1 }\n  b: { fork: a }\n  c: { publish: [c] }\n");
    let obs = observed(vec![info("a"), info("z")]);
    let opts = PlanOptions { prune: true, ..PlanOptions::default() };
    assert_eq!(plan(&desired, &obs, &opts).to_json(), plan(&desired, &obs, &opts).to_json());
}

#[test]
fn colors_are_optional() {
    let desired = ws("boxes:\n  web: { port: 1 }\n");
    let p = plan(&desired, &observed(vec![info("web")]), &PlanOptions::default());
    assert!(!render(&p).contains('\x1b'));
    assert!(p.render(&RenderOptions { color: true }).contains("\x1b[33m~\x1b[0m"));
}

/// Plans 500 desired boxes against 500 observed ones (half of them drifted) and prints the time.
#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn bench_plan_500_boxes() {
    let mut yaml = String::from("boxes:\n");
    let mut boxes = Vec::new();
    for i in 0..500 {
        yaml.push_str(&format!(
            "  box-{i}:\n    port: {}\n    env: {{ N: \"{i}\" }}\n    tags: [t{}]\n",
            3000 + i % 2,
            i % 7
        ));
        let mut b = info(&format!("box-{i}"));
        b.port = 3000;
        b.env.insert("N".into(), i.to_string());
        b.tags = vec![OWNER.into(), format!("t{}", i % 7)];
        boxes.push(b);
    }
    let load_start = std::time::Instant::now();
    let desired = ws(&yaml);
    println!("load: 500 boxes from YAML (parse, schema check, validation): {:?}", load_start.elapsed());
    let obs = observed(boxes);
    let opts = PlanOptions::default();
    let _ = plan(&desired, &obs, &opts);
    let runs = 20;
    let start = std::time::Instant::now();
    let mut changes = 0;
    for _ in 0..runs {
        changes = plan(&desired, &obs, &opts).summary.change;
    }
    let per = start.elapsed() / runs;
    println!("plan: 500 desired vs 500 observed boxes ({changes} updates): {per:?} per plan");
    assert_eq!(changes, 250);
    assert!(per < std::time::Duration::from_millis(300), "{per:?}");
}
