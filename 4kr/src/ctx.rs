//! What every command needs: the global flags, the environment, the setup config, the API client,
//! and turning a box ref from the command line into a project and a name.

use std::cell::OnceCell;
use std::fmt;
use std::path::{Path, PathBuf};

use forkr_engine::name::{self, BoxRef, NameKind};

use crate::cli::{GlobalArgs, ProjectOpt};
use crate::client::Client;
use crate::env::Env;
use crate::error::{CliError, Result};
use crate::setup::{self, SetupConfig};
use crate::target::{self, Target};

/// Something that lives in a project (a box, a data volume, a user), by project and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scoped {
    pub project: String,
    pub name: String,
}

/// A box by project and name.
pub type BoxId = Scoped;

impl fmt::Display for Scoped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.project, self.name)
    }
}

/// A resolved box ref: a named box, or an ephemeral box to create in a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoxSel {
    Named(BoxId),
    Ephemeral { project: String },
}

/// The per-invocation context. Config, target and client are built on first use, so commands that
/// need none of them (`docs`, `config path`) work even when the config file is broken.
pub struct Ctx {
    pub global: GlobalArgs,
    pub env: Env,
    pub cwd: PathBuf,
    setup: OnceCell<(PathBuf, SetupConfig)>,
    client: OnceCell<Client>,
}

impl Ctx {
    pub fn new(global: GlobalArgs, env: Env, cwd: PathBuf) -> Ctx {
        Ctx { global, env, cwd, setup: OnceCell::new(), client: OnceCell::new() }
    }

    /// The process's own environment and working directory.
    pub fn from_process(global: GlobalArgs) -> Result<Ctx> {
        let cwd =
            std::env::current_dir().map_err(|e| CliError::io("cannot determine the current directory", e))?;
        Ok(Ctx::new(global, Env::from_process(), cwd))
    }

    /// Where the setup config lives (it may not exist yet).
    pub fn setup_path(&self) -> PathBuf {
        setup::locate(&self.env, &self.cwd)
    }

    /// The setup config and its path, loaded once.
    pub fn setup(&self) -> Result<(&Path, &SetupConfig)> {
        if self.setup.get().is_none() {
            let path = self.setup_path();
            let config = SetupConfig::load(&path)?;
            let _ = self.setup.set((path, config));
        }
        let (path, config) = self.setup.get().ok_or_else(|| CliError::config("setup config not loaded"))?;
        Ok((path, config))
    }

    /// The server URL and token for this invocation.
    pub fn target(&self) -> Result<Target> {
        let (path, config) = self.setup()?;
        target::resolve(&self.global.flags(), &self.env, config, path, &|p| std::fs::read_to_string(p).ok())
    }

    /// The API client, built once.
    pub fn client(&self) -> Result<&Client> {
        if self.client.get().is_none() {
            let client = Client::new(self.target()?);
            let _ = self.client.set(client);
        }
        self.client.get().ok_or_else(|| CliError::config("client not built"))
    }

    /// The project for refs that do not name one: `-p`, `FORKR_PROJECT`, the config's `project`, the
    /// git root's directory name, `default`.
    /// `NAME` in the resolved project, or `PROJECT:NAME`, for volumes and users (boxes have
    /// richer refs). Both parts are checked here, so a bad name never reaches a URL (the server
    /// checks again and says the same).
    pub fn resolve_scoped(&self, raw: &str, opt: &ProjectOpt, kind: NameKind) -> Result<Scoped> {
        match raw.split_once(':') {
            Some((project, n)) => {
                name::validate(NameKind::Project, project)?;
                name::validate(kind, n)?;
                Ok(Scoped { project: project.to_owned(), name: n.to_owned() })
            }
            None => {
                name::validate(kind, raw)?;
                Ok(Scoped { project: self.project(opt)?, name: raw.to_owned() })
            }
        }
    }

    pub fn project(&self, opt: &ProjectOpt) -> Result<String> {
        let flag = opt.project.as_deref().filter(|p| !p.is_empty());
        let env = self.env.get("FORKR_PROJECT");
        if flag.is_none()
            && env.is_none()
            && let Some(p) = self.setup()?.1.project.as_deref()
        {
            name::validate(NameKind::Project, p)?;
            return Ok(p.to_owned());
        }
        Ok(name::resolve_project(flag, env, &self.cwd)?)
    }

    /// Resolves a box ref (`box`, `project:box`, `project.box`, `.`, `-`, `project:-`).
    pub fn resolve(&self, raw: &str, opt: &ProjectOpt) -> Result<BoxSel> {
        self.resolve_parsed(BoxRef::parse(raw)?, opt)
    }

    pub fn resolve_parsed(&self, r: BoxRef, opt: &ProjectOpt) -> Result<BoxSel> {
        Ok(match r {
            BoxRef::Named { project: Some(project), name } => BoxSel::Named(BoxId { project, name }),
            BoxRef::Named { project: None, name } => {
                BoxSel::Named(BoxId { project: self.project(opt)?, name })
            }
            BoxRef::Ephemeral { project: Some(project) } => BoxSel::Ephemeral { project },
            BoxRef::Ephemeral { project: None } => BoxSel::Ephemeral { project: self.project(opt)? },
            BoxRef::Current => {
                let name = self.env.get("BOX_NAME").ok_or_else(|| {
                    CliError::usage("`.` means the box this command runs in, but BOX_NAME is not set")
                        .with_help("use `.` inside a box, or name the box: <box> or <project>:<box>")
                })?;
                name::validate(NameKind::Box, name)?;
                let project = match self.env.get("FORKR_PROJECT") {
                    Some(p) => {
                        name::validate(NameKind::Project, p)?;
                        p.to_owned()
                    }
                    None => self.project(opt)?,
                };
                BoxSel::Named(BoxId { project, name: name.to_owned() })
            }
        })
    }

    /// Resolves a ref that must name an existing box (no `-`).
    pub fn resolve_named(&self, raw: &str, opt: &ProjectOpt) -> Result<BoxId> {
        match self.resolve(raw, opt)? {
            BoxSel::Named(id) => Ok(id),
            BoxSel::Ephemeral { .. } => Err(CliError::usage(
                "`-` (a throwaway box) only works with exec, console and cp; name a box here",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(env: &[(&str, &str)], cwd: &Path) -> Ctx {
        Ctx::new(GlobalArgs::default(), Env::from_pairs(env.iter().copied()), cwd.to_path_buf())
    }

    fn named(project: &str, name: &str) -> BoxSel {
        BoxSel::Named(BoxId { project: project.into(), name: name.into() })
    }

    #[test]
    fn refs_resolve_against_the_project_order() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("my-repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        let none = ProjectOpt::default();
        let flag = ProjectOpt { project: Some("flagp".into()) };

        let c = ctx(&[], &repo);
        assert_eq!(c.resolve("web", &none).unwrap(), named("my-repo", "web"));
        assert_eq!(c.resolve("web", &flag).unwrap(), named("flagp", "web"));
        assert_eq!(c.resolve("other:web", &flag).unwrap(), named("other", "web"));
        assert_eq!(c.resolve("other.web", &none).unwrap(), named("other", "web"));
        assert_eq!(c.resolve("-", &none).unwrap(), BoxSel::Ephemeral { project: "my-repo".into() });
        assert_eq!(c.resolve("x:-", &none).unwrap(), BoxSel::Ephemeral { project: "x".into() });
        assert!(c.resolve("Web", &none).is_err());
        assert!(c.resolve_named("-", &none).is_err());

        let c = ctx(&[("FORKR_PROJECT", "envp")], &repo);
        assert_eq!(c.resolve("web", &none).unwrap(), named("envp", "web"));
        assert_eq!(c.resolve("web", &flag).unwrap(), named("flagp", "web"));

        let c = ctx(&[], dir.path());
        assert_eq!(c.resolve("web", &none).unwrap(), named("default", "web"));
    }

    #[test]
    fn config_project_comes_after_env_and_before_git_root() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join(".forkr")).unwrap();
        std::fs::write(repo.join(".forkr/config.yaml"), "project: cfgp\n").unwrap();
        let none = ProjectOpt::default();
        assert_eq!(ctx(&[], &repo).resolve("web", &none).unwrap(), named("cfgp", "web"));
        assert_eq!(
            ctx(&[("FORKR_PROJECT", "envp")], &repo).resolve("web", &none).unwrap(),
            named("envp", "web")
        );
    }

    #[test]
    fn dot_is_the_current_box() {
        let dir = tempfile::tempdir().unwrap();
        let none = ProjectOpt::default();
        let c = ctx(&[("BOX_NAME", "web-1"), ("FORKR_PROJECT", "proj")], dir.path());
        assert_eq!(c.resolve(".", &none).unwrap(), named("proj", "web-1"));
        let e = ctx(&[], dir.path()).resolve(".", &none).unwrap_err();
        assert!(e.message().contains("BOX_NAME is not set"), "{}", e.message());
        assert!(ctx(&[("BOX_NAME", "Bad!")], dir.path()).resolve(".", &none).is_err());
    }
}
