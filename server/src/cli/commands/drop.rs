//! `drop stream|table|rule|plugin NAME`.

use super::{Ctx, Run, Target};
use crate::client::Method;
use crate::error::CliError;

/// `drop ...`
#[derive(Debug, clap::Args)]
pub struct Drop {
    #[command(subcommand)]
    target: Target,
}

impl Run for Drop {
    async fn run(self, ctx: &Ctx<'_>) -> Result<(), CliError> {
        let reply = ctx
            .client()?
            .send(Method::DELETE, &self.target.path(), None)
            .await?;
        ctx.out.message(&reply.text());
        Ok(())
    }
}
