//! The example workspaces in `examples/`: they load, they validate against the generated JSON
//! Schema, planning them against a simulated server converges (plan, apply, plan again: no
//! changes), and the broken one's diagnostics are snapshot-tested.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use forkr_engine::api::{BoxInfo, BoxStatus, CreateBox};
use forkr_engine::plan::{
    Observed, ObservedBase, ObservedBaseVersion, ObservedPublish, ObservedSnapshot, ObservedVolume, Op, Plan,
    PlanOptions, RenderOptions, Request, plan,
};
use forkr_engine::spec::model::{parse_cpu, parse_size_mib};
use forkr_engine::spec::schema::{SchemaKind, schema};
use forkr_engine::spec::{BaseBuild, LoadOptions, Publish, Workspace, load_dir};

const VALID: [&str; 3] = ["web-app", "ci", "minimal"];
const SCHEMA_LINE: &str = "# yaml-language-server: $schema=../../../schemas/forkr.schema.json";

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("examples")
}

fn yaml_files(example: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples().join(example).join(".forkr"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// A fresh server: only the default base `box-base` exists.
fn fresh_server(project: &str) -> Observed {
    Observed {
        project: project.to_owned(),
        bases: vec![ObservedBase {
            name: "box-base".into(),
            latest: "box-base".into(),
            versions: vec![ObservedBaseVersion {
                version: "box-base".into(),
                kind: "tarball".into(),
                ..Default::default()
            }],
            tags: Vec::new(),
        }],
        publish_domain: Some("forkr.test".into()),
        ..Observed::default()
    }
}

fn load(example: &str, server: &Observed) -> Workspace {
    let opts = LoadOptions { known: Some(server.known()), ..LoadOptions::default() };
    load_dir(&examples().join(example), &opts).unwrap_or_else(|e| panic!("{example}: {}", e.render(false)))
}

/// A stand-in for the server's apply: performs each request on `obs` the way the documents describe
/// the server (forks inherit base, env, tags, port and grace; the server injects variables).
fn apply(plan: &Plan, obs: &mut Observed) {
    let mut clock = 0;
    for wave in plan.actions_by_wave() {
        for a in wave {
            clock += 1;
            match &a.request {
                Request::BuildBase { name, from, build, tag, tags } => {
                    let parent = from.as_ref().map(|f| latest_version(obs, f));
                    let script = match build {
                        BaseBuild::Script { content, .. } => Some(content.clone()),
                        _ => None,
                    };
                    let existing = obs.bases.iter().position(|b| b.name == *name);
                    let version = match existing {
                        Some(_) => format!("{name}-v20260101{clock:06}"),
                        None => name.clone(),
                    };
                    let v = ObservedBaseVersion {
                        version: version.clone(),
                        kind: build.kind().into(),
                        tag: Some(tag.clone()),
                        parent,
                        script,
                        created_at: String::new(),
                    };
                    match existing {
                        Some(i) => {
                            obs.bases[i].versions.push(v);
                            obs.bases[i].latest = version;
                            obs.bases[i].tags = tags.clone();
                        }
                        None => obs.bases.push(ObservedBase {
                            name: name.clone(),
                            latest: version,
                            versions: vec![v],
                            tags: tags.clone(),
                        }),
                    }
                }
                Request::CreateVolume { name, size_mib, tags } => obs.volumes.push(ObservedVolume {
                    name: name.clone(),
                    size_mib: Some(size_mib.unwrap_or(10240)),
                    tags: tags.clone(),
                }),
                Request::ResizeVolume { name, size_mib } => obs
                    .volumes
                    .iter_mut()
                    .filter(|v| v.name == *name)
                    .for_each(|v| v.size_mib = Some(*size_mib)),
                Request::CreateBox { create } => {
                    let info = new_box(obs, create);
                    obs.boxes.push(info);
                }
                Request::ReplaceBox { create, keep_root } => {
                    let old =
                        obs.boxes.iter().position(|b| b.name == create.name).expect("replaced box exists");
                    let old = obs.boxes.remove(old);
                    obs.snapshots.remove(&old.name);
                    obs.publishes.retain(|p| p.box_name != old.name);
                    let mut info = new_box(obs, create);
                    if *keep_root {
                        info.base = old.base;
                        info.forked_from = old.forked_from;
                    }
                    obs.boxes.push(info);
                }
                Request::UpdateBox { name, update } => {
                    let b = obs.boxes.iter_mut().find(|b| b.name == *name).expect("updated box exists");
                    for (k, v) in &update.settings {
                        match k.as_str() {
                            "PORT" => b.port = v.parse().unwrap(),
                            "CPU" => b.cpus = parse_cpu(v).unwrap(),
                            "MEMORY" => b.ram_mb = parse_size_mib(v).unwrap(),
                            "TERMINATION_GRACE_SECONDS" => b.termination_grace_seconds = v.parse().unwrap(),
                            other => panic!("setting {other} is not in the allowlist"),
                        }
                    }
                    if let Some(tags) = &update.tags {
                        b.tags = tags.clone();
                    }
                }
                Request::CreateSnapshot { box_name, name, description } => {
                    obs.snapshots.entry(box_name.clone()).or_default().push(ObservedSnapshot {
                        name: name.clone(),
                        description: description.clone(),
                        created_at: String::new(),
                    })
                }
                Request::Publish { box_name, subdomain, domain, host, force } => {
                    let p = Publish {
                        subdomain: subdomain.clone(),
                        domain: domain.clone(),
                        host: host.clone(),
                        force: *force,
                    };
                    let full = p.resolve(obs.publish_domain.as_deref()).expect("publish domain known");
                    let b = obs.boxes.iter_mut().find(|b| b.name == *box_name).expect("published box exists");
                    b.published.push(full.clone());
                    obs.publishes.push(ObservedPublish {
                        host: full,
                        project: obs.project.clone(),
                        box_name: box_name.clone(),
                    });
                }
                Request::Unpublish { box_name, host } => {
                    for b in obs.boxes.iter_mut().filter(|b| b.name == *box_name) {
                        b.published.retain(|h| h != host);
                    }
                    obs.publishes.retain(|p| p.host != *host);
                }
                Request::DeleteBox { name } => obs.boxes.retain(|b| b.name != *name),
                Request::DeleteVolume { name } => obs.volumes.retain(|v| v.name != *name),
                Request::DeleteBase { name } => obs.bases.retain(|b| b.name != *name),
            }
        }
    }
}

fn latest_version(obs: &Observed, reference: &str) -> String {
    let alias = reference.split(':').next().unwrap_or(reference);
    obs.bases
        .iter()
        .find(|b| b.name == alias)
        .map(|b| b.latest.clone())
        .unwrap_or_else(|| reference.to_owned())
}

fn new_box(obs: &Observed, c: &CreateBox) -> BoxInfo {
    let mut info = BoxInfo {
        name: c.name.clone(),
        project: obs.project.clone(),
        status: BoxStatus::Running,
        base: latest_version(obs, c.base.as_deref().unwrap_or("box-base")),
        forked_from: None,
        url: String::new(),
        port: 8080,
        created_at: String::new(),
        updated_at: String::new(),
        started_at: None,
        published: Vec::new(),
        tags: c.tags.clone(),
        data: c.data.clone(),
        env: c.env.clone(),
        cpus: 1.0,
        ram_mb: 1024,
        storage_gb: 10.0,
        termination_grace_seconds: 10,
        pid: None,
    };
    if let Some(src) = &c.fork {
        let s = obs.boxes.iter().find(|b| b.name == *src).expect("fork source exists before the fork");
        info.base = s.base.clone();
        info.forked_from = Some(src.clone());
        info.env = s.env.clone();
        info.env.extend(c.env.clone());
        info.port = s.port;
        info.termination_grace_seconds = s.termination_grace_seconds;
        info.cpus = s.cpus;
        info.ram_mb = s.ram_mb;
        let mut tags = s.tags.clone();
        tags.extend(c.tags.iter().cloned());
        tags.sort();
        tags.dedup();
        info.tags = tags;
    }
    if let Some(p) = c.port {
        info.port = p;
    }
    if let Some(g) = c.termination_grace_seconds {
        info.termination_grace_seconds = g;
    }
    if let Some(cpu) = &c.cpu {
        info.cpus = parse_cpu(cpu).unwrap();
    }
    if let Some(m) = &c.memory {
        info.ram_mb = parse_size_mib(m).unwrap();
    }
    // What the server injects into every box.
    info.env.insert("BOX_NAME".into(), c.name.clone());
    info.env.insert("FORKR_PROJECT".into(), obs.project.clone());
    info.env.insert("TERM".into(), "xterm-256color".into());
    info
}

#[test]
fn examples_start_with_the_schema_line() {
    for example in VALID.iter().chain(&["broken"]) {
        for file in yaml_files(example) {
            let text = std::fs::read_to_string(&file).unwrap();
            let first = text.lines().next().unwrap_or("");
            assert_eq!(first, SCHEMA_LINE, "{}", file.display());
            let target = first.split("$schema=").nth(1).unwrap();
            let resolved = file.parent().unwrap().join(target);
            assert!(
                resolved.is_file(),
                "{} points at {}, which does not exist",
                file.display(),
                resolved.display()
            );
        }
    }
}

#[test]
fn examples_validate_against_the_json_schema_and_broken_does_not() {
    let validator = jsonschema::validator_for(schema(SchemaKind::Workspace)).unwrap();
    for example in VALID {
        for file in yaml_files(example) {
            let text = std::fs::read_to_string(&file).unwrap();
            let value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
            let errors: Vec<String> =
                validator.iter_errors(&value).map(|e| format!("{}: {e}", e.instance_path())).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", file.display());
        }
    }
    let mut rejected = Vec::new();
    for file in yaml_files("broken") {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        match serde_saphyr::from_str::<serde_json::Value>(&text) {
            Err(_) => rejected.push(format!("{name}: not YAML")),
            Ok(value) => {
                let errors: Vec<String> =
                    validator.iter_errors(&value).map(|e| e.instance_path().to_string()).collect();
                if !errors.is_empty() {
                    rejected.push(format!("{name}: {}", errors.join(" ")));
                }
            }
        }
    }
    assert_eq!(
        rejected,
        vec![
            "boxes.yaml: /boxes/api/memory /boxes/api/port /boxes/web /boxes".to_string(),
            "syntax.yaml: not YAML".to_string(),
        ]
    );
}

#[test]
fn examples_converge_plan_apply_plan() {
    for example in VALID {
        let probe = load(example, &fresh_server("x"));
        let mut server = fresh_server(&probe.project);
        let ws = load(example, &server);
        let first = plan(&ws, &server, &PlanOptions::default());
        assert!(!first.is_empty(), "{example}: nothing to do on a fresh server");
        assert!(
            first.conflicts.is_empty() && first.warnings.is_empty(),
            "{example}: {}",
            first.render(&RenderOptions::default())
        );
        assert!(
            first.actions.iter().all(|a| a.op == Op::Create),
            "{example}: {}",
            first.render(&RenderOptions::default())
        );
        apply(&first, &mut server);

        let again = plan(&load(example, &server), &server, &PlanOptions::default());
        assert!(again.is_empty(), "{example} after apply:\n{}", again.render(&RenderOptions::default()));
        assert!(again.render(&RenderOptions::default()).starts_with("No changes."));
    }
}

#[test]
fn web_app_drift_and_edits() {
    let mut server = fresh_server("web-app");
    let ws = load("web-app", &server);
    apply(&plan(&ws, &server, &PlanOptions::default()), &mut server);
    let saved = plan(&ws, &server, &PlanOptions::default());
    saved.check_fresh(&server).unwrap();

    // An imperative port change is drift: the next plan puts it back in place, and a plan saved
    // before it is stale.
    let web = server.boxes.iter_mut().find(|b| b.name == "web").unwrap();
    web.port = 9090;
    assert_eq!(saved.check_fresh(&server).unwrap_err().code(), "stale_plan");
    let p = plan(&ws, &server, &PlanOptions::default());
    assert_eq!(
        p.actions.iter().map(|a| (a.id.as_str(), a.op)).collect::<Vec<_>>(),
        vec![("box.web", Op::Update)]
    );
    apply(&p, &mut server);

    // An env edit in the files replaces the box and keeps its root; after that, no changes.
    let mut edited = ws.clone();
    edited.boxes.get_mut("web").unwrap().env.insert("APP_ENV".into(), "staging".into());
    let p = plan(&edited, &server, &PlanOptions::default());
    let replace = p.action("box.web").unwrap();
    assert_eq!((replace.op, replace.keep_root), (Op::Replace, true));
    // The replacement gets its snapshot and publish back.
    assert!(p.action("snapshot.web.clean").is_some() && p.action("publish.web.www.forkr.test").is_some());
    apply(&p, &mut server);
    assert!(plan(&edited, &server, &PlanOptions::default()).is_empty());

    // Removing the box from the files deletes it only with --prune.
    let mut without = edited.clone();
    without.boxes.clear();
    let p = plan(&without, &server, &PlanOptions::default());
    assert!(p.is_empty());
    assert!(p.warnings[0].contains("box web"), "{:?}", p.warnings);
    let p = plan(&without, &server, &PlanOptions { prune: true, ..PlanOptions::default() });
    assert_eq!(p.summary.destroy, 1);
}

#[test]
fn ci_script_change_rebuilds_the_base_and_the_boxes_on_it() {
    let mut server = fresh_server("ci");
    let ws = load("ci", &server);
    let first = plan(&ws, &server, &PlanOptions::default());
    // base, then builder, then its snapshot and the two forks together.
    assert_eq!(
        first.waves,
        vec![
            vec!["base.ci-base".to_string()],
            vec!["box.builder".into()],
            vec!["box.test-integration".into(), "box.test-unit".into(), "snapshot.builder.built".into()],
        ]
    );
    apply(&first, &mut server);

    let mut edited = ws.clone();
    let base = edited.bases.get_mut("ci-base").unwrap();
    base.build = BaseBuild::Script { content: "echo v2\n".into(), file: None };
    base.tag = forkr_engine::spec::model::sha256_hex(b"echo v2\n");
    let p = plan(&edited, &server, &PlanOptions::default());
    let ops: BTreeMap<&str, Op> = p.actions.iter().map(|a| (a.id.as_str(), a.op)).collect();
    assert_eq!(ops["base.ci-base"], Op::Update);
    assert_eq!(ops["box.builder"], Op::Replace);
    assert_eq!(ops["box.test-unit"], Op::Replace);
    apply(&p, &mut server);
    assert!(plan(&edited, &server, &PlanOptions::default()).is_empty());
}

#[test]
fn broken_example_reports_everything_at_once() {
    let server = fresh_server("broken");
    let opts = LoadOptions { known: Some(server.known()), ..LoadOptions::default() };
    let errors = load_dir(&examples().join("broken"), &opts).expect_err("the broken example must not load");
    for p in errors.problems() {
        assert!(
            p.file().is_some() && p.line().is_some() && p.column().is_some(),
            "{} has no place",
            p.to_line()
        );
    }
    let codes: std::collections::BTreeSet<&str> = errors.problems().iter().map(|p| p.code()).collect();
    for expected in [
        "yaml_syntax",
        "unknown_key",
        "wrong_type",
        "invalid_name",
        "reserved_env",
        "invalid_mount",
        "invalid_port",
        "base_with_fork",
        "duplicate_name",
        "unknown_reference",
    ] {
        assert!(codes.contains(expected), "no {expected} in:\n{}", errors.to_lines());
    }
    insta::assert_snapshot!("broken_lines", errors.to_lines());
    insta::assert_snapshot!("broken_rendered", errors.render(false));
}

#[test]
fn example_paths_are_relative() {
    // Nothing in the examples may depend on where the repository is checked out.
    for example in VALID {
        for file in yaml_files(example) {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(!text.contains("/work/"), "{}", file.display());
        }
        assert!(Path::new(&examples().join(example)).is_dir());
    }
}
