//! FROM and JOIN: the scanned stream, the joined streams and tables, and the join nodes of the
//! plan with their ON conditions split into key pairs and a residual.

use arrow::datatypes::SchemaRef;
use sqlparser::ast::{self as ast, TableFactor};

use super::{Binder, StreamCatalog, check_condition, pos_of};
use crate::ddl::StreamDef;
use crate::error::{CompileError, Pos, Result, did_you_mean};
use crate::eval::ops::BinaryOp;
use crate::expr::Expr;
use crate::plan::{JoinKind, JoinStep, JoinedStream, LogicalPlan, Scan, StreamJoins, TableJoin};

/// A table joined to the stream, as written.
pub(super) struct JoinRef<'q> {
    pub(super) table: TableRef,
    pub(super) kind: JoinKind,
    /// True when the joined source is a stream (joined inside the window).
    pub(super) stream: bool,
    /// The ON condition (`None` for CROSS JOIN).
    pub(super) on: Option<&'q ast::Expr>,
    /// Where the joined name is.
    pub(super) pos: Option<Pos>,
}

/// A joined table as the binder resolves names against it.
#[derive(Debug, Clone)]
pub(super) struct TableRef {
    pub(super) name: String,
    /// The alias, else the name: joined columns are called `qualifier.column`.
    pub(super) qualifier: String,
    pub(super) schema: Option<SchemaRef>,
    /// The `KEY` of a lookup table (`KIND="lookup"`), `None` for a scan table.
    pub(super) lookup_key: Option<String>,
}

pub(super) fn bind_from<'q>(
    select: &'q ast::Select,
    catalog: &dyn StreamCatalog,
) -> Result<(Scan, Vec<JoinRef<'q>>)> {
    let Some(from) = select.from.first() else {
        return Err(CompileError::at(
            "a rule needs FROM and a stream",
            pos_of(select),
        ));
    };
    if select.from.len() > 1 {
        return Err(CompileError::at(
            "only one stream may follow FROM (join others with JOIN ... ON)",
            pos_of(&select.from[1]),
        ));
    }
    let TableFactor::Table { name, alias, .. } = &from.relation else {
        return Err(CompileError::at(
            "FROM must name a stream",
            pos_of(&from.relation),
        ));
    };
    let lookup = |name: &ast::ObjectName, what: &str| -> Result<StreamDef> {
        let n = name.to_string().trim_matches('`').to_string();
        catalog.stream(&n).cloned().ok_or_else(|| {
            let names = catalog.stream_names();
            CompileError::at(format!("unknown {what} \"{n}\""), pos_of(name))
                .with_hint(did_you_mean(&n, names.iter().map(String::as_str)))
        })
    };
    let def = lookup(name, "stream")?;
    if def.kind == crate::ddl::StreamKind::Table {
        return Err(CompileError::at(
            format!(
                "FROM needs a stream; \"{}\" is a table (join it to a stream with JOIN ... ON)",
                def.name
            ),
            pos_of(name),
        ));
    }
    let mut joins = Vec::new();
    for join in &from.joins {
        let TableFactor::Table {
            name: tname,
            alias: talias,
            ..
        } = &join.relation
        else {
            return Err(CompileError::at("JOIN must name a table", pos_of(join)));
        };
        let tdef = lookup(tname, "stream or table")?;
        let stream = tdef.kind != crate::ddl::StreamKind::Table;
        use ast::{JoinConstraint, JoinOperator as J};
        let (kind, constraint) = match &join.join_operator {
            J::Join(c) | J::Inner(c) => (JoinKind::Inner, Some(c)),
            J::Left(c) | J::LeftOuter(c) => (JoinKind::Left, Some(c)),
            J::Right(c) | J::RightOuter(c) if stream => (JoinKind::Right, Some(c)),
            J::FullOuter(c) if stream => (JoinKind::Full, Some(c)),
            J::CrossJoin(c) if stream => (JoinKind::Cross, Some(c)),
            other => {
                return Err(CompileError::at(
                    format!(
                        "a stream joins a table with INNER or LEFT JOIN, not {}",
                        format!("{other:?}")
                            .split('(')
                            .next()
                            .unwrap_or("this join")
                    ),
                    pos_of(join),
                ));
            }
        };
        let on = match (kind, constraint) {
            (JoinKind::Cross, Some(JoinConstraint::None | JoinConstraint::Natural) | None) => None,
            (JoinKind::Cross, Some(_)) => {
                return Err(CompileError::at(
                    "CROSS JOIN takes no ON condition",
                    pos_of(join),
                ));
            }
            (_, Some(JoinConstraint::On(on))) => Some(on),
            _ => {
                return Err(CompileError::at(
                    if stream {
                        "a stream join needs ON with its condition (or CROSS JOIN)"
                    } else {
                        "a table join needs ON with the matching columns"
                    },
                    pos_of(join),
                ));
            }
        };
        let qualifier = talias
            .as_ref()
            .map(|a| a.name.value.clone())
            .unwrap_or_else(|| tdef.name.clone());
        joins.push(JoinRef {
            table: TableRef {
                name: tdef.name.clone(),
                qualifier,
                schema: tdef.arrow_schema(),
                lookup_key: tdef
                    .options
                    .raw
                    .get("KIND")
                    .filter(|k| k.eq_ignore_ascii_case("lookup"))
                    .and(tdef.options.key.clone()),
            },
            kind,
            stream,
            on,
            pos: pos_of(tname),
        });
    }
    Ok((
        Scan {
            stream: def.name.clone(),
            alias: alias.as_ref().map(|a| a.name.value.clone()),
            schema: def.arrow_schema(),
        },
        joins,
    ))
}

impl Binder<'_> {
    /// The join nodes above `plan`: stream joins first (they run inside the window), then
    /// table joins in the order written.
    pub(super) fn joins(
        &mut self,
        mut plan: LogicalPlan,
        join_refs: &[JoinRef<'_>],
        select: &ast::Select,
    ) -> Result<LogicalPlan> {
        let mut steps = Vec::new();
        let mut streams = Vec::new();
        for j in join_refs.iter().filter(|j| j.stream) {
            let (left_keys, right_keys, residual) = match j.on {
                Some(on_ast) => {
                    let on = self.expr(on_ast)?;
                    check_condition("ON", &on, on_ast)?;
                    split_on(on, &j.table.qualifier, false, None)
                }
                None => (Vec::new(), Vec::new(), None),
            };
            streams.push(JoinedStream {
                name: j.table.name.clone(),
                qualifier: j.table.qualifier.clone(),
                schema: j.table.schema.clone(),
            });
            steps.push(JoinStep {
                kind: j.kind,
                right: streams.len(),
                left_keys,
                right_keys,
                residual,
            });
        }
        if let Some(first) = join_refs.iter().find(|j| j.stream)
            && !super::window::select_has_window(select)
        {
            return Err(CompileError::at(
                format!(
                    "joining stream \"{}\" to another stream needs a window in GROUP BY (e.g. TUMBLINGWINDOW(ss, 10))",
                    first.table.name
                ),
                first.pos,
            ));
        }
        if !steps.is_empty() {
            plan = LogicalPlan::JoinStreams {
                input: Box::new(plan),
                join: Box::new(StreamJoins { streams, steps }),
            };
        }
        for j in join_refs.iter().filter(|j| !j.stream) {
            let on_ast = j.on.expect("table joins have ON");
            let on = self.expr(on_ast)?;
            check_condition("ON", &on, on_ast)?;
            let (stream_keys, table_keys, residual) =
                split_on(on, &j.table.qualifier, true, j.table.lookup_key.as_deref());
            if let Some(key) = &j.table.lookup_key
                && stream_keys.is_empty()
            {
                return Err(CompileError::at(
                    format!(
                        "joining lookup table \"{}\" needs ON <stream value> = {}.{key} (its KEY)",
                        j.table.name, j.table.qualifier
                    ),
                    pos_of(on_ast),
                ));
            }
            if stream_keys.is_empty() {
                return Err(CompileError::at(
                    "the ON condition of a table join needs at least one stream.column = table.column",
                    pos_of(on_ast),
                ));
            }
            plan = LogicalPlan::JoinTable {
                input: Box::new(plan),
                join: Box::new(TableJoin {
                    table: j.table.name.clone(),
                    qualifier: j.table.qualifier.clone(),
                    schema: j.table.schema.clone(),
                    left: j.kind == JoinKind::Left,
                    stream_keys,
                    table_keys,
                    residual,
                    lookup: j.table.lookup_key.is_some(),
                }),
            };
        }
        Ok(plan)
    }
}

/// Splits a bound ON condition into equi-join key pairs (stream side, table side) and the
/// rest. A side belongs to the table when every column it reads is one of the table's;
/// `strip` rewrites the table side over the table's own column names. A lookup table
/// (`lookup_key`) is joined by its KEY only: the first equality with that column is the key
/// pair, every other condition is checked on the fetched rows.
fn split_on(
    on: Expr,
    qualifier: &str,
    strip: bool,
    lookup_key: Option<&str>,
) -> (Vec<Expr>, Vec<Expr>, Option<Expr>) {
    let own = |e: Expr| {
        if strip {
            unqualify(e, &format!("{qualifier}."))
        } else {
            e
        }
    };
    let prefix = format!("{qualifier}.");
    let side = |e: &Expr| -> (bool, bool) {
        let (mut table, mut stream) = (false, false);
        e.visit(&mut |x| match x {
            Expr::Column { name, .. } if name.starts_with(&prefix) => table = true,
            Expr::Column { .. } | Expr::Meta(_) => stream = true,
            _ => {}
        });
        (table, stream)
    };
    let mut conjuncts = Vec::new();
    fn flatten(e: Expr, out: &mut Vec<Expr>) {
        match e {
            Expr::Binary {
                op: BinaryOp::And,
                left,
                right,
            } => {
                flatten(*left, out);
                flatten(*right, out);
            }
            other => out.push(other),
        }
    }
    flatten(on, &mut conjuncts);
    let (mut skeys, mut tkeys, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    for c in conjuncts {
        if let Expr::Binary {
            op: BinaryOp::Eq,
            left,
            right,
        } = &c
        {
            // A lookup table answers one key: the table side must be its KEY column itself.
            let usable = |table_side: &Expr| match lookup_key {
                None => true,
                Some(key) => {
                    skeys.is_empty()
                        && matches!(table_side, Expr::Column { name, .. }
                            if name.strip_prefix(&prefix).is_some_and(|n| n.eq_ignore_ascii_case(key)))
                }
            };
            match (side(left), side(right)) {
                ((false, true), (true, false)) if usable(right) => {
                    skeys.push((**left).clone());
                    tkeys.push(own((**right).clone()));
                    continue;
                }
                ((true, false), (false, true)) if usable(left) => {
                    skeys.push((**right).clone());
                    tkeys.push(own((**left).clone()));
                    continue;
                }
                _ => {}
            }
        }
        rest.push(c);
    }
    let residual = rest.into_iter().reduce(|a, b| Expr::Binary {
        op: BinaryOp::And,
        left: Box::new(a),
        right: Box::new(b),
    });
    (skeys, tkeys, residual)
}

/// The expression over the table's own column names (`t.a` becomes `a`), at any depth.
fn unqualify(mut e: Expr, prefix: &str) -> Expr {
    e.visit_mut(&mut |x| {
        if let Expr::Column { name, .. } = x
            && let Some(rest) = name.strip_prefix(prefix)
        {
            *name = rest.to_string();
        }
    });
    e
}

#[cfg(test)]
mod tests {
    use crate::bind::testing::{error, explain};

    #[test]
    fn from_names_a_known_stream() {
        assert_eq!(
            error("SELECT * FROM dmo"),
            "unknown stream \"dmo\" at 1:15; did you mean \"demo\"?"
        );
        assert_eq!(
            error("SELECT * FROM devices"),
            "FROM needs a stream; \"devices\" is a table (join it to a stream with JOIN ... ON) at 1:15"
        );
    }

    #[test]
    fn table_joins_split_on_into_keys_and_a_residual() {
        let plan = explain(
            "SELECT demo.device, devices.location FROM demo INNER JOIN devices ON demo.device = devices.id",
        );
        assert!(
            plan.contains("Join lookup table devices: device = devices.id"),
            "{plan}"
        );
        let plan = explain(
            "SELECT * FROM demo LEFT JOIN places AS p ON demo.device = p.id AND p.city = 'x'",
        );
        assert!(
            plan.contains("LeftJoin table places: device = p.id AND (p.city = \"x\")"),
            "{plan}"
        );
        assert_eq!(
            error("SELECT * FROM demo INNER JOIN devices ON demo.device = devices.location"),
            "joining lookup table \"devices\" needs ON <stream value> = devices.id (its KEY) at 1:42"
        );
        assert_eq!(
            error("SELECT * FROM demo INNER JOIN places ON demo.device > places.id"),
            "the ON condition of a table join needs at least one stream.column = table.column at 1:41"
        );
    }

    #[test]
    fn stream_joins_run_inside_a_window() {
        let plan = explain(
            "SELECT * FROM demo INNER JOIN other ON demo.device = other.device AND other.level > 1 \
             GROUP BY TUMBLINGWINDOW(ss, 10)",
        );
        let lines: Vec<&str> = plan.lines().map(str::trim).collect();
        assert_eq!(
            lines[2],
            "INNER JOIN stream other AS other ON device = other.device AND (other.level > 1)"
        );
        assert!(lines[1].starts_with("Window:"), "{plan}");
        assert_eq!(
            error("SELECT * FROM demo INNER JOIN other ON demo.device = other.device"),
            "joining stream \"other\" to another stream needs a window in GROUP BY (e.g. TUMBLINGWINDOW(ss, 10)) at 1:31"
        );
    }
}
