//! `publish` / `unpublish`: expose a box on a hostname through the server's reverse proxy
//! (document 002).
//!
//! The host resolves on the server, which knows the publish domain: `--host` wins; otherwise
//! `{subdomain}.{domain}`, the domain defaulting to the server's `FORKR_DOMAIN`; `@` is the apex.
//! The argument rules (subdomain required unless `--host`; `--host` conflicts with a subdomain and
//! with `--domain`) are checked here first, so a mistake never reaches the server.

use clap::Args;
use forkr_engine::api::{PublishRequest, Published, UnpublishRequest};
use reqwest::Method;

use crate::cli::{JsonOpt, ProjectOpt};
use crate::client::Client;
use crate::ctx::{BoxId, Ctx};
use crate::error::Result;
use crate::output;

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,
    /// Subdomain of the publish domain; `@` means the bare domain. Required unless --host.
    #[arg(value_name = "SUBDOMAIN", required_unless_present = "host")]
    pub subdomain: Option<String>,
    /// Explicit full hostname (instead of a subdomain).
    #[arg(long, value_name = "HOST", conflicts_with_all = ["subdomain", "domain"])]
    pub host: Option<String>,
    /// Override the server's publish domain.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Take the host over when another box publishes it.
    #[arg(short = 'f', long)]
    pub force: bool,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct UnpublishArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,
    /// Subdomain of the publish domain; `@` means the bare domain. Required unless --host.
    #[arg(value_name = "SUBDOMAIN", required_unless_present = "host")]
    pub subdomain: Option<String>,
    /// Explicit full hostname (instead of a subdomain).
    #[arg(long, value_name = "HOST", conflicts_with_all = ["subdomain", "domain"])]
    pub host: Option<String>,
    /// Override the server's publish domain.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

impl Client {
    fn publish_url(&self, id: &BoxId, verb: &str) -> String {
        self.api_url(&format!("/projects/{}/boxes/{}/{verb}", id.project, id.name))
    }

    pub async fn publish(&self, id: &BoxId, req: &PublishRequest) -> Result<Published> {
        self.json(self.request(Method::POST, &self.publish_url(id, "publish"))?.json(req)).await
    }

    pub async fn unpublish(&self, id: &BoxId, req: &UnpublishRequest) -> Result<Published> {
        self.json(self.request(Method::POST, &self.publish_url(id, "unpublish"))?.json(req)).await
    }
}

fn done(json: bool, published: &Published) -> Result<i32> {
    if json {
        output::print_json(published)?;
    } else {
        println!("OK");
    }
    Ok(0)
}

pub async fn publish(ctx: &Ctx, a: PublishArgs) -> Result<i32> {
    let id = ctx.resolve_named(&a.target, &a.project)?;
    let req = PublishRequest { subdomain: a.subdomain, host: a.host, domain: a.domain, force: a.force };
    let published = ctx.client()?.publish(&id, &req).await?;
    done(a.json.json, &published)
}

pub async fn unpublish(ctx: &Ctx, a: UnpublishArgs) -> Result<i32> {
    let id = ctx.resolve_named(&a.target, &a.project)?;
    let req = UnpublishRequest { subdomain: a.subdomain, host: a.host, domain: a.domain };
    let published = ctx.client()?.unpublish(&id, &req).await?;
    done(a.json.json, &published)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use clap::error::ErrorKind;

    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("4kr").chain(args.iter().copied())).map(|c| c.command)
    }

    #[test]
    fn argument_rules_follow_document_002() {
        let Command::Publish(a) = parse(&["publish", "web", "api", "--domain", "x.dev", "-f", "-j"]).unwrap()
        else {
            panic!("publish")
        };
        assert_eq!(
            (a.subdomain.as_deref(), a.domain.as_deref(), a.force, a.json.json),
            (Some("api"), Some("x.dev"), true, true)
        );
        let Command::Publish(a) = parse(&["publish", "web", "--host", "www.shop.com"]).unwrap() else {
            panic!()
        };
        assert_eq!(a.host.as_deref(), Some("www.shop.com"));
        assert!(
            matches!(parse(&["publish", "web", "@"]).unwrap(), Command::Publish(a) if a.subdomain.as_deref() == Some("@"))
        );
        let kind = |args: &[&str]| parse(args).unwrap_err().kind();
        assert_eq!(kind(&["publish", "web"]), ErrorKind::MissingRequiredArgument);
        assert_eq!(kind(&["publish", "web", "api", "--host", "h.com"]), ErrorKind::ArgumentConflict);
        assert_eq!(
            kind(&["publish", "web", "--host", "h.com", "--domain", "d"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            kind(&["publish", "web", "--port", "1"]),
            ErrorKind::UnknownArgument,
            "no --port on box publish"
        );
        assert_eq!(kind(&["unpublish", "web"]), ErrorKind::MissingRequiredArgument);
        assert!(matches!(parse(&["unpublish", "p:web", "--host", "h.com"]).unwrap(), Command::Unpublish(_)));
    }

    #[test]
    fn the_wire_form_is_what_the_server_accepts() {
        let req = forkr_engine::api::PublishRequest {
            subdomain: Some("api".into()),
            force: true,
            ..Default::default()
        };
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v, serde_json::json!({"subdomain": "api", "force": true}));
    }
}
