//! `user create|list|update|delete`: project users (document 004), which `exec --user NAME` runs as.
//!
//! UIDs start at 20000 and are assigned sequentially per project by the server; UID = GID, home
//! `/home/<name>` (the project's `/home` volume), shell `/bin/bash` unless `--shell` says otherwise.
//! A user ref is `NAME` (project from -p and the usual order) or `PROJECT:NAME`. `--json` works on
//! list, create and update, not on delete (document 002).

use clap::{Args, Subcommand};
use forkr_engine::api::{CreateUser, UpdateUser, UserDeleted, UserInfo};
use forkr_engine::name::NameKind;
use reqwest::Method;

use crate::cli::{JsonOpt, NoJsonOpt, ProjectOpt};
use crate::client::Client;
use crate::ctx::{Ctx, Scoped};
use crate::error::Result;
use crate::output;

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a project user (UIDs from 20000, sequential per project; UID = GID).
    Create(CreateArgs),
    /// List the users of a project: NAME UID GID HOME SHELL CREATED.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Change a user's login shell.
    Update(UpdateArgs),
    /// Delete users (their /home directories are kept).
    #[command(visible_alias = "rm")]
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// User name (1-32 of a-z, 0-9, '_', '-'; not a system name), or PROJECT:NAME.
    #[arg(value_name = "NAME")]
    pub target: String,
    /// Login shell [default: /bin/bash].
    #[arg(long, value_name = "PATH")]
    pub shell: Option<String>,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The user: NAME or PROJECT:NAME.
    #[arg(value_name = "NAME")]
    pub target: String,
    /// New login shell (an absolute path inside the box).
    #[arg(long, value_name = "PATH")]
    pub shell: Option<String>,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Users to delete.
    #[arg(value_name = "NAME", required = true)]
    pub targets: Vec<String>,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: NoJsonOpt,
}

/// A user by project and name.
pub type UserId = Scoped;

/// `NAME` in the resolved project, or `PROJECT:NAME`.
pub fn resolve(ctx: &Ctx, raw: &str, opt: &ProjectOpt) -> Result<UserId> {
    ctx.resolve_scoped(raw, opt, NameKind::User)
}

/// The routes of `/v1/projects/{p}/users`.
impl Client {
    fn users_url(&self, project: &str) -> String {
        self.api_url(&format!("/projects/{project}/users"))
    }

    fn user_url(&self, id: &UserId) -> String {
        self.api_url(&format!("/projects/{}/users/{}", id.project, id.name))
    }

    pub async fn list_users(&self, project: &str) -> Result<Vec<UserInfo>> {
        self.json(self.request(Method::GET, &self.users_url(project))?).await
    }

    pub async fn create_user(&self, project: &str, req: &CreateUser) -> Result<UserInfo> {
        self.json(self.request(Method::POST, &self.users_url(project))?.json(req)).await
    }

    pub async fn update_user(&self, id: &UserId, req: &UpdateUser) -> Result<UserInfo> {
        self.json(self.request(Method::PATCH, &self.user_url(id))?.json(req)).await
    }

    pub async fn delete_user(&self, id: &UserId) -> Result<UserDeleted> {
        self.json(self.request(Method::DELETE, &self.user_url(id))?).await
    }
}

pub async fn run(ctx: &Ctx, a: UserArgs) -> Result<i32> {
    match a.command {
        UserCommand::Create(a) => create(ctx, a).await,
        UserCommand::List(a) => list(ctx, a).await,
        UserCommand::Update(a) => update(ctx, a).await,
        UserCommand::Delete(a) => delete(ctx, a).await,
    }
}

async fn create(ctx: &Ctx, a: CreateArgs) -> Result<i32> {
    let id = resolve(ctx, &a.target, &a.project)?;
    let req = CreateUser { name: id.name.clone(), shell: a.shell.clone() };
    let user = ctx.client()?.create_user(&id.project, &req).await?;
    if a.json.json {
        output::print_json(&user)?;
    } else {
        println!("{}: created (uid {}, home {})", user.name, user.uid, user.home);
    }
    Ok(0)
}

async fn list(ctx: &Ctx, a: ListArgs) -> Result<i32> {
    let project = ctx.project(&a.project)?;
    let users = ctx.client()?.list_users(&project).await?;
    if a.json.json {
        output::print_json(&users)?;
    } else {
        print!("{}", user_table(&users));
    }
    Ok(0)
}

async fn update(ctx: &Ctx, a: UpdateArgs) -> Result<i32> {
    let id = resolve(ctx, &a.target, &a.project)?;
    let user = ctx.client()?.update_user(&id, &UpdateUser { shell: a.shell.clone() }).await?;
    if a.json.json {
        output::print_json(&user)?;
    } else {
        println!("{}: updated (shell {})", user.name, user.shell);
    }
    Ok(0)
}

async fn delete(ctx: &Ctx, a: DeleteArgs) -> Result<i32> {
    a.json.reject("user delete")?;
    let client = ctx.client()?;
    let mut failed = 0;
    for raw in &a.targets {
        let outcome = async {
            let id = resolve(ctx, raw, &a.project)?;
            client.delete_user(&id).await
        }
        .await;
        match outcome {
            Ok(_) => println!("{raw}: deleted"),
            Err(e) => {
                failed += 1;
                println!("{raw}: error: {}", e.message());
            }
        }
    }
    output::deletes_done(failed, a.targets.len(), "users")
}

/// `user list`: NAME UID GID HOME SHELL CREATED.
pub fn user_table(users: &[UserInfo]) -> String {
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                u.name.clone(),
                u.uid.to_string(),
                u.gid.to_string(),
                u.home.clone(),
                u.shell.clone(),
                u.created_at.clone(),
            ]
        })
        .collect();
    output::table(&["NAME", "UID", "GID", "HOME", "SHELL", "CREATED"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::GlobalArgs;
    use crate::env::Env;

    fn ctx() -> Ctx {
        let dir = std::env::temp_dir();
        Ctx::new(GlobalArgs::default(), Env::from_pairs([("FORKR_PROJECT", "proj")]), dir)
    }

    #[test]
    fn refs() {
        let c = ctx();
        let none = ProjectOpt::default();
        assert_eq!(
            resolve(&c, "alice", &none).unwrap(),
            UserId { project: "proj".into(), name: "alice".into() }
        );
        assert_eq!(
            resolve(&c, "p2:bob", &none).unwrap(),
            UserId { project: "p2".into(), name: "bob".into() }
        );
        let flag = ProjectOpt { project: Some("flagged".into()) };
        assert_eq!(resolve(&c, "alice", &flag).unwrap().project, "flagged");
        for bad in ["root", "Alice", "../x", "a/b", "p2:nobody", "P:alice", ""] {
            let e = resolve(&c, bad, &none).unwrap_err();
            assert_eq!(e.code(), "invalid_name", "{bad}");
        }
        let e = resolve(&c, "daemon", &none).unwrap_err();
        assert!(e.message().contains("reserved system name"), "{}", e.message());
    }

    #[test]
    fn table() {
        let u = UserInfo {
            name: "alice".into(),
            project: "p".into(),
            uid: 20000,
            gid: 20000,
            home: "/home/alice".into(),
            shell: "/bin/bash".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
        };
        assert_eq!(
            user_table(&[u]),
            "NAME    UID     GID     HOME          SHELL       CREATED\n\
             alice   20000   20000   /home/alice   /bin/bash   2026-01-01T00:00:00Z\n"
        );
        assert_eq!(user_table(&[]), "NAME   UID   GID   HOME   SHELL   CREATED\n");
    }
}
