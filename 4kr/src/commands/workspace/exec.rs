//! Running a plan against the server: wave after wave, the actions of a wave in parallel (at most
//! `parallelism` at once), each action one or two API calls.
//!
//! On the first failure (or a lost lock, or Ctrl-C) nothing new starts; the actions already running
//! finish, and the [`Outcome`] says what was done, what failed and what was not started. Every
//! action is safe to repeat, and the next apply plans from what the server has then, so running
//! apply again converges.

use std::time::{Duration, Instant};

use forkr_engine::api::{BuildBase, CreateSnapshot, CreateVolume, PublishRequest, UpdateVolume};
use forkr_engine::plan::{Action, Op, Plan, Request};
use forkr_engine::spec::BaseBuild;
use forkr_engine::{Error, ErrorKind};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

use super::api;
use super::lock::Stop;
use super::progress::Progress;
use crate::client::Client;
use crate::commands::dockerfile;
use crate::ctx::BoxId;
use crate::error::{CliError, Result};

/// How many action ids a report lists per line before it only counts the rest.
const MAX_LISTED: usize = 20;

/// What a run needs.
pub struct Runner<'a> {
    pub client: &'a Client,
    pub project: &'a str,
    pub parallelism: usize,
    pub progress: &'a Progress,
    pub stop: &'a Stop,
    /// `PATH` and the working directory, to find a container engine for Dockerfile bases.
    pub path_var: Option<String>,
    pub cwd: std::path::PathBuf,
}

/// What a run did.
pub struct Outcome<'p> {
    /// Finished actions, with a note (`unchanged`, `already there`, …).
    pub done: Vec<(&'p Action, String)>,
    pub failed: Vec<(&'p Action, CliError)>,
    pub not_started: Vec<&'p Action>,
    /// Why the run stopped early without a failure (lost lock, Ctrl-C).
    pub stopped: Option<String>,
}

impl Outcome<'_> {
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.not_started.is_empty()
    }

    fn count(&self, op: Op) -> usize {
        self.done.iter().filter(|(a, _)| a.op == op).count()
    }

    /// `3 added, 1 changed, 0 replaced, 0 destroyed` over the finished actions.
    pub fn counts(&self) -> String {
        format!(
            "{} added, {} changed, {} replaced, {} destroyed",
            self.count(Op::Create),
            self.count(Op::Update),
            self.count(Op::Replace),
            self.count(Op::Delete)
        )
    }

    /// The report after a run that did not complete: what failed, what was done, what was not
    /// started.
    pub fn report(&self) -> String {
        let ids = |v: Vec<&str>| match v.len() {
            0 => "none".to_owned(),
            n if n > MAX_LISTED => format!("{}, … and {} more", v[..MAX_LISTED].join(", "), n - MAX_LISTED),
            _ => v.join(", "),
        };
        let mut out = String::new();
        for (a, e) in &self.failed {
            out.push_str(&format!("  failed:      {}: {}\n", a.id, e.message()));
        }
        if let Some(why) = &self.stopped {
            out.push_str(&format!("  stopped:     {why}\n"));
        }
        out.push_str(&format!(
            "  done:        {}\n",
            ids(self.done.iter().map(|(a, _)| a.id.as_str()).collect())
        ));
        out.push_str(&format!(
            "  not started: {}\n",
            ids(self.not_started.iter().map(|a| a.id.as_str()).collect())
        ));
        out
    }
}

impl Runner<'_> {
    /// Runs `plan` (see the module documentation).
    pub async fn run<'p>(&self, plan: &'p Plan) -> Outcome<'p> {
        let mut out =
            Outcome { done: Vec::new(), failed: Vec::new(), not_started: Vec::new(), stopped: None };
        let width = self.parallelism.max(1);
        for wave in plan.actions_by_wave() {
            let mut pending = wave.into_iter();
            let mut running = FuturesUnordered::new();
            loop {
                while running.len() < width && out.failed.is_empty() && !self.stop.is_set() {
                    let Some(a) = pending.next() else { break };
                    self.progress.start(a);
                    running.push(async move {
                        let t = Instant::now();
                        let r = self.perform(a).await;
                        (a, t.elapsed(), r)
                    });
                }
                let Some((a, took, result)) = running.next().await else { break };
                match result {
                    Ok(note) => {
                        self.progress.done(a, &note, took);
                        out.done.push((a, note));
                    }
                    Err(e) => {
                        self.progress.failed(a, &e, took);
                        out.failed.push((a, e));
                    }
                }
            }
            out.not_started.extend(pending);
        }
        if out.failed.is_empty() {
            out.stopped = self.stop.reason().filter(|_| !out.not_started.is_empty());
        }
        out
    }

    fn box_id(&self, name: &str) -> BoxId {
        BoxId { project: self.project.to_owned(), name: name.to_owned() }
    }

    /// One action; the note says what happened when it is not the obvious.
    async fn perform(&self, a: &Action) -> Result<String> {
        let c = self.client;
        match &a.request {
            Request::BuildBase { name, from, build, tag, tags } => {
                self.build_base(name, from.as_deref(), build, tag, tags).await
            }
            Request::CreateVolume { name, size_mib, tags } => {
                let req = CreateVolume {
                    name: name.clone(),
                    size_bytes: size_mib.map(|m| m << 20),
                    tags: tags.clone(),
                };
                api::create_volume(c, self.project, &req).await?;
                Ok(String::new())
            }
            Request::ResizeVolume { name, size_mib } => {
                let req = UpdateVolume { size_bytes: Some(size_mib << 20), tags: None };
                api::update_volume(c, self.project, name, &req).await?;
                Ok(String::new())
            }
            Request::CreateBox { create } => {
                c.create(self.project, create).await?;
                Ok(String::new())
            }
            Request::UpdateBox { name, update } => {
                c.update(&self.box_id(name), update).await?;
                Ok(String::new())
            }
            Request::ReplaceBox { create, keep_root: true } => {
                api::recreate(c, self.project, create).await?;
                Ok(String::new())
            }
            Request::ReplaceBox { create, keep_root: false } => {
                c.delete(&self.box_id(&create.name), true).await?;
                c.create(self.project, create).await?;
                Ok(String::new())
            }
            Request::CreateSnapshot { box_name, name, description } => {
                let req = CreateSnapshot {
                    name: Some(name.clone()),
                    description: description.clone().unwrap_or_default(),
                };
                match c.create_snapshot(&self.box_id(box_name), &req).await {
                    Ok(_) => Ok(String::new()),
                    // Ensure semantics: a snapshot of that name is what the files ask for.
                    Err(e) if e.kind() == ErrorKind::Conflict => Ok("it already existed".into()),
                    Err(e) => Err(e),
                }
            }
            Request::Publish { box_name, subdomain, domain, host, force } => {
                let req = PublishRequest {
                    subdomain: subdomain.clone(),
                    domain: domain.clone(),
                    host: host.clone(),
                    force: *force,
                };
                let p = api::publish(c, &self.box_id(box_name), &req).await?;
                Ok(format!("on {}", p.host))
            }
            Request::Unpublish { box_name, host } => {
                match api::unpublish(c, &self.box_id(box_name), host).await {
                    Ok(_) => Ok(String::new()),
                    Err(e) if e.code() == "not_published" => Ok("it was already unpublished".into()),
                    Err(e) => Err(e),
                }
            }
            Request::DeleteBox { name } => {
                let d = c.delete(&self.box_id(name), true).await?;
                Ok(if d.deleted { String::new() } else { "it was already gone".into() })
            }
            Request::DeleteVolume { name } => match api::delete_volume(c, self.project, name).await {
                Ok(d) if !d.deleted => Ok("it was already gone".into()),
                Ok(_) => Ok(String::new()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok("it was already gone".into()),
                Err(e) => Err(e),
            },
            Request::DeleteBase { name } => match c.delete_base(name, false, false).await {
                Ok(d) => Ok(format!("{} version(s)", d.deleted.len())),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok("it was already gone".into()),
                Err(e) => Err(e),
            },
        }
    }

    async fn build_base(
        &self,
        name: &str,
        from: Option<&str>,
        build: &BaseBuild,
        tag: &str,
        tags: &[String],
    ) -> Result<String> {
        let c = self.client;
        let owner = tags.first().map(String::as_str).unwrap_or_default();
        match build {
            BaseBuild::Script { content, .. } => {
                let req = BuildBase {
                    script: content.clone(),
                    parent: from.map(str::to_owned),
                    tags: tags.to_vec(),
                };
                let r = c.build_base(name, &req).await?;
                Ok(if r.unchanged {
                    format!("unchanged: {} was already built from this script", r.version.version)
                } else {
                    format!("version {}", r.version.version)
                })
            }
            BaseBuild::Tarball { path } => {
                let file = tokio::fs::File::open(path).await.map_err(|e| {
                    CliError::io(format!("cannot read the base tarball {}", path.display()), e)
                })?;
                let v = api::import_base(c, name, from, owner, tag, file.into()).await?;
                Ok(format!("version {}", v.version))
            }
            BaseBuild::Dockerfile { dockerfile, context } => {
                if dockerfile.file_name().is_none_or(|n| n != "Dockerfile")
                    || dockerfile.parent() != Some(context.as_path())
                {
                    return Err(CliError::usage(format!(
                        "base {name:?}: the Dockerfile must be named `Dockerfile` and sit in its build context folder ({} is not {}/Dockerfile)",
                        dockerfile.display(),
                        context.display()
                    ))
                    .with_help("move the Dockerfile into the context folder, or leave `context` out"));
                }
                let engine = dockerfile::detect(self.path_var.as_deref(), &self.cwd)?;
                let tmp =
                    tempfile::Builder::new().prefix("4kr-base-").suffix(".tar.gz").tempfile().map_err(
                        |e| CliError::io("cannot create a temporary file for the exported image", e),
                    )?;
                let (dir, base, out) = (context.clone(), name.to_owned(), tmp.path().to_path_buf());
                tokio::task::spawn_blocking(move || {
                    dockerfile::Builder { engine: &engine, dir: &dir }.build_rootfs(
                        &base,
                        std::env::consts::ARCH,
                        &out,
                    )
                })
                .await
                .map_err(|e| CliError::from(Error::internal(format!("the image build stopped: {e}"))))??;
                let file = tokio::fs::File::open(tmp.path())
                    .await
                    .map_err(|e| CliError::io("cannot read the exported image", e))?;
                let v = api::import_base(c, name, from, owner, tag, file.into()).await?;
                Ok(format!("version {}", v.version))
            }
        }
    }
}

/// How long an apply took, for the summary.
pub fn took(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use forkr_engine::plan::ObjectKind;

    fn action(i: usize) -> Action {
        Action {
            id: format!("box.b{i}"),
            op: Op::Create,
            object: ObjectKind::Box,
            name: format!("b{i}"),
            box_name: None,
            changes: Vec::new(),
            reason: None,
            keep_root: false,
            wave: 0,
            depends_on: Vec::new(),
            request: Request::DeleteBox { name: format!("b{i}") },
        }
    }

    #[test]
    fn reports_say_what_failed_was_done_and_was_not_started() {
        let actions: Vec<Action> = (0..30).collect::<Vec<_>>().into_iter().map(action).collect();
        let failure = CliError::from(Error::conflict("host_taken", "host www.x is taken"));
        let out = Outcome {
            done: vec![(&actions[0], String::new())],
            failed: vec![(&actions[1], failure)],
            not_started: actions[2..].iter().collect(),
            stopped: None,
        };
        assert!(!out.is_complete());
        assert_eq!(out.counts(), "1 added, 0 changed, 0 replaced, 0 destroyed");
        let report = out.report();
        assert!(report.contains("  failed:      box.b1: host www.x is taken\n"), "{report}");
        assert!(report.contains("  done:        box.b0\n"), "{report}");
        // Long lists are cut, with a count of the rest.
        assert!(report.contains("box.b21, … and 8 more\n"), "{report}");
        assert!(!report.contains("box.b22"), "{report}");
    }
}
