//! `gettopo rule ID`: the rule's sources and edges, one `from -> to, to` line per node.

use super::{Ctx, RuleTarget, Run};
use crate::error::CliError;

/// `gettopo rule ID`
#[derive(Debug, clap::Args)]
pub struct GetTopo {
    #[command(subcommand)]
    target: RuleTarget,
}

/// The strings of a JSON array.
fn names(value: &serde_json::Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default()
}

impl Run for GetTopo {
    async fn run(self, ctx: &Ctx<'_>) -> Result<(), CliError> {
        let Some(reply) = ctx.fetch(&self.target.path("/topo")).await? else {
            return Ok(());
        };
        let topo = reply.json()?;
        ctx.out
            .line(&format!("sources: {}", names(&topo["sources"]).join(", ")));
        if let Some(edges) = topo["edges"].as_object() {
            for (from, to) in edges {
                ctx.out.line(&format!("{from} -> {}", names(to).join(", ")));
            }
        }
        Ok(())
    }
}
