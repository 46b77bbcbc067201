//! `start|stop|restart rule ID`.

use super::{Ctx, RuleTarget, Run};
use crate::client::Method;
use crate::error::CliError;

/// `POST /rules/{id}/{action}` and the server's answer.
async fn act(ctx: &Ctx<'_>, target: &RuleTarget, action: &str) -> Result<(), CliError> {
    let reply = ctx
        .client()?
        .send(Method::POST, &target.path(&format!("/{action}")), None)
        .await?;
    ctx.out.message(&reply.text());
    Ok(())
}

/// Declares a `VERB rule ID` subcommand type that posts `action` to the rule.
macro_rules! rule_action {
    ($(#[$doc:meta])* $name:ident, $action:literal) => {
        $(#[$doc])*
        #[derive(Debug, clap::Args)]
        pub struct $name {
            #[command(subcommand)]
            target: RuleTarget,
        }

        impl Run for $name {
            async fn run(self, ctx: &Ctx<'_>) -> Result<(), CliError> {
                act(ctx, &self.target, $action).await
            }
        }
    };
}

rule_action!(
    /// `start rule ID`
    Start,
    "start"
);
rule_action!(
    /// `stop rule ID`
    Stop,
    "stop"
);
rule_action!(
    /// `restart rule ID`
    Restart,
    "restart"
);
