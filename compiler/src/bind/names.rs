//! Name resolution: an identifier becomes a column of the stream, a column of a joined table,
//! or the expression of a SELECT alias; unknown names fail with a "did you mean".

use arrow::datatypes::SchemaRef;
use sqlparser::ast;

use super::Binder;
use super::from::TableRef;
use crate::error::{CompileError, Pos, Result, did_you_mean};
use crate::expr::Expr;
use crate::types::SqlType;

impl Binder<'_> {
    pub(super) fn schema(&self) -> Option<&SchemaRef> {
        self.scan.schema.as_ref()
    }

    pub(super) fn is_stream_name(&self, name: &str) -> bool {
        name == self.scan.stream || self.scan.alias.as_deref() == Some(name)
    }

    /// The joined table called `name` (by alias or name).
    pub(super) fn table_named(&self, name: &str) -> Option<&TableRef> {
        self.tables
            .iter()
            .find(|t| t.qualifier == name || t.name == name)
    }

    /// A column of a joined table: `qualifier.column` in joined rows.
    pub(super) fn table_field(
        &self,
        table: &TableRef,
        name: &str,
        pos: Option<Pos>,
    ) -> Result<Expr> {
        let Some(schema) = &table.schema else {
            return Ok(Expr::Column {
                name: format!("{}.{name}", table.qualifier),
                ty: SqlType::Any,
            });
        };
        match schema
            .fields()
            .iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
        {
            Some(f) => Ok(Expr::Column {
                name: format!("{}.{}", table.qualifier, f.name()),
                ty: SqlType::Known(f.data_type().clone()),
            }),
            None => Err(CompileError::at(
                format!("unknown field \"{name}\" in table \"{}\"", table.name),
                pos,
            )
            .with_hint(did_you_mean(
                name,
                schema.fields().iter().map(|f| f.name().as_str()),
            ))),
        }
    }

    pub(super) fn column(&mut self, ident: &ast::Ident) -> Result<Expr> {
        let key = ident.value.to_lowercase();
        if !self.resolving.contains(&key)
            && let Some(aliased) = self.aliases.get(&key).cloned()
        {
            self.resolving.push(key);
            let bound = self.expr(&aliased);
            self.resolving.pop();
            return bound;
        }
        self.field(&ident.value, Pos::from_location(ident.span.start))
    }

    pub(super) fn field(&self, name: &str, pos: Option<Pos>) -> Result<Expr> {
        match self.schema() {
            None => Ok(Expr::Column {
                name: name.to_string(),
                ty: SqlType::Any,
            }),
            Some(schema) => {
                let found = schema
                    .fields()
                    .iter()
                    .find(|f| f.name() == name)
                    .or_else(|| {
                        schema
                            .fields()
                            .iter()
                            .find(|f| f.name().eq_ignore_ascii_case(name))
                    });
                let in_table = || {
                    self.tables.iter().find(|t| {
                        t.schema.as_ref().is_some_and(|s| {
                            s.fields()
                                .iter()
                                .any(|f| f.name().eq_ignore_ascii_case(name))
                        })
                    })
                };
                match found {
                    Some(f) => Ok(Expr::Column {
                        name: f.name().clone(),
                        ty: SqlType::Known(f.data_type().clone()),
                    }),
                    None if in_table().is_some() => {
                        let t = in_table().expect("checked").clone();
                        self.table_field(&t, name, pos)
                    }
                    None => Err(CompileError::at(
                        format!(
                            "unknown field \"{name}\" in stream \"{}\"",
                            self.scan.stream
                        ),
                        pos,
                    )
                    .with_hint(did_you_mean(
                        name,
                        schema.fields().iter().map(|f| f.name().as_str()),
                    ))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::bind::testing::{error, explain};

    #[test]
    fn fields_resolve_in_the_stream_then_the_joined_tables() {
        let plan = explain(
            "SELECT TEMPERATURE, location FROM demo JOIN devices ON demo.device = devices.id",
        );
        assert!(
            plan.starts_with("Project: temperature AS TEMPERATURE, devices.location AS location"),
            "{plan}"
        );
        assert!(explain("SELECT anything FROM raw").starts_with("Project: anything AS anything"));
        assert_eq!(
            error("SELECT temprature FROM demo"),
            "unknown field \"temprature\" in stream \"demo\" at 1:8; did you mean \"temperature\"?"
        );
    }

    #[test]
    fn aliases_stand_for_their_expression_in_every_clause() {
        let plan = explain("SELECT temperature * 2 AS t2, t2 + 1 AS t3 FROM demo");
        assert!(
            plan.starts_with("Project: (temperature * 2) AS t2, ((temperature * 2) + 1) AS t3"),
            "{plan}"
        );
        // eKuiper binds WHERE's names to SELECT aliases first (`topo/planner/analyzer.go`).
        let plan = explain("SELECT temperature * 2 AS t FROM demo WHERE t > 1");
        assert!(plan.contains("Filter: ((temperature * 2) > 1)"), "{plan}");
        let plan = explain("SELECT temperature AS t FROM raw WHERE t > 1");
        assert!(plan.contains("Filter: (temperature > 1)"), "{plan}");
        // The alias wins over a column of the same name; a qualified name is the column.
        let plan = explain(
            "SELECT humidity + 1 AS humidity FROM demo WHERE humidity > 1 AND demo.humidity < 9",
        );
        assert!(
            plan.contains("Filter: (((humidity + 1) > 1) AND (humidity < 9))"),
            "{plan}"
        );
        assert_eq!(
            error("SELECT temperature AS t FROM demo WHERE tx > 1"),
            "unknown field \"tx\" in stream \"demo\" at 1:41; did you mean \"ts\"?"
        );
    }
}
