//! `explain rule ID`: the compiled plan, as the server prints it.

use super::{Ctx, RuleTarget, Run};
use crate::error::CliError;

/// `explain rule ID`
#[derive(Debug, clap::Args)]
pub struct Explain {
    #[command(subcommand)]
    target: RuleTarget,
}

impl Run for Explain {
    async fn run(self, ctx: &Ctx<'_>) -> Result<(), CliError> {
        let reply = ctx.client()?.get(&self.target.path("/explain")).await?;
        ctx.out.message(&reply.text());
        Ok(())
    }
}
