//! Metric node names of a rule (`source_demo`, `op_2_filter`, ..., `sink_log_0`), in
//! topology order, as eKuiper names them.

use quiver_compiler::plan::LogicalPlan;

use super::Action;

/// Node names of a rule in topology order, as its metrics are keyed.
pub(super) fn node_names(
    stream: &str,
    source_type: &str,
    plan: &LogicalPlan,
    actions: &[Action],
) -> Vec<String> {
    let mut names = vec![format!("source_{stream}")];
    let mut next = 2;
    if source_type != "memory" {
        names.push("op_2_decoder".to_string());
        next = 3;
    }
    for (i, op) in operator_names(plan).iter().enumerate() {
        names.push(format!("op_{}_{op}", next + i));
    }
    for (i, a) in actions.iter().enumerate() {
        names.push(format!("sink_{}_{i}", a.sink_type));
    }
    names
}

/// Operator node names of a plan, bottom-up (source side first), as eKuiper names them.
/// LIMIT has no node: eKuiper applies it inside the project node.
fn operator_names(plan: &LogicalPlan) -> Vec<&'static str> {
    let mut names = Vec::new();
    let mut seen_window = false;
    let bottom_up: Vec<&LogicalPlan> = plan.chain().collect();
    for n in bottom_up.into_iter().rev() {
        match n {
            LogicalPlan::Filter { .. } if seen_window => names.push("having"),
            LogicalPlan::Filter { .. } => names.push("filter"),
            LogicalPlan::Project { .. } => names.push("project"),
            LogicalPlan::Aggregate { spec, .. } => {
                seen_window = true;
                names.push(
                    if spec.window.kind == quiver_compiler::window::WindowKind::Rows {
                        "aggregate"
                    } else {
                        "window"
                    },
                );
            }
            LogicalPlan::Sort { .. } => names.push("order"),
            LogicalPlan::RowNumber { .. } => names.push("windowFunc"),
            LogicalPlan::Analytic { .. } => names.push("analytic"),
            LogicalPlan::JoinTable { .. } | LogicalPlan::JoinStreams { .. } => names.push("join"),
            LogicalPlan::Limit { .. } | LogicalPlan::Scan(_) => {}
        }
    }
    names
}
