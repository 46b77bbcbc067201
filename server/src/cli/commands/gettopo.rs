//! `gettopo rule ID`: the rule's sources, then one `from -> to, to` line per node, walking
//! the edges from the sources on (the server's `edges` object has no order of its own).

use std::collections::{BTreeMap, VecDeque};

use super::{Ctx, RuleTarget, Run};
use crate::error::CliError;

/// `gettopo rule ID`
#[derive(Debug, clap::Args)]
pub struct GetTopo {
    #[command(subcommand)]
    target: RuleTarget,
}

/// eKuiper's topology: `{"sources": [...], "edges": {from: [to, ...]}}`.
#[derive(serde::Deserialize)]
struct Topo {
    sources: Vec<String>,
    edges: BTreeMap<String, Vec<String>>,
}

impl Topo {
    /// The edges breadth-first from the sources; edges no source reaches follow by name.
    fn walk(mut self) -> Vec<(String, Vec<String>)> {
        let mut ordered = Vec::with_capacity(self.edges.len());
        let mut queue: VecDeque<String> = self.sources.iter().cloned().collect();
        while let Some(node) = queue.pop_front() {
            if let Some(to) = self.edges.remove(&node) {
                queue.extend(to.iter().cloned());
                ordered.push((node, to));
            }
        }
        ordered.extend(self.edges);
        ordered
    }
}

impl Run for GetTopo {
    async fn run(self, ctx: &Ctx<'_>) -> Result<(), CliError> {
        let Some(reply) = ctx.fetch(&self.target.path("/topo")).await? else {
            return Ok(());
        };
        let topo: Topo = reply.parse()?;
        ctx.out
            .line(&format!("sources: {}", topo.sources.join(", ")));
        for (from, to) in topo.walk() {
            ctx.out.line(&format!("{from} -> {}", to.join(", ")));
        }
        Ok(())
    }
}
