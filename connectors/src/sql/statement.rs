//! The statements the sql source and sink send, built per dialect: identifiers quoted, every
//! value a parameter. Pure functions, so their text is tested without a database.

use super::driver::{Dialect, SqlValue, Statement};

/// Numbers placeholders as a statement grows (`$1`, `$2`, ... on PostgreSQL, `?` elsewhere).
struct Params {
    dialect: Dialect,
    values: Vec<SqlValue>,
}

impl Params {
    fn new(dialect: Dialect) -> Self {
        Params {
            dialect,
            values: Vec::new(),
        }
    }

    /// Binds `v` and returns its placeholder.
    fn bind(&mut self, v: SqlValue) -> String {
        self.values.push(v);
        self.dialect.placeholder(self.values.len())
    }

    fn finish(self, sql: String) -> Statement {
        Statement {
            sql,
            params: self.values,
        }
    }
}

/// The columns of a multi-row INSERT and how conflicts are handled.
pub struct InsertSpec<'a> {
    /// The dialect.
    pub dialect: Dialect,
    /// The table, unquoted.
    pub table: &'a str,
    /// The columns, unquoted.
    pub columns: &'a [String],
    /// Upsert on this key column (insert, or update the other columns on a conflict).
    pub upsert_key: Option<&'a str>,
}

/// Multi-row INSERTs for `rows` (each as long as `columns`): as few statements as the
/// dialect's parameter limit allows.
pub fn insert(spec: &InsertSpec<'_>, rows: Vec<Vec<SqlValue>>) -> Vec<Statement> {
    let d = spec.dialect;
    let per = (d.max_params() / spec.columns.len().max(1)).max(1);
    let head = format!(
        "INSERT INTO {} ({}) VALUES ",
        d.quote(spec.table),
        spec.columns
            .iter()
            .map(|c| d.quote(c))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let tail = spec
        .upsert_key
        .map(|key| upsert_clause(d, spec.columns, key))
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut params = Params::new(d);
        let mut sql = head.clone();
        for (i, row) in rows.by_ref().take(per).enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            let marks: Vec<String> = row.into_iter().map(|v| params.bind(v)).collect();
            sql.push('(');
            sql.push_str(&marks.join(", "));
            sql.push(')');
        }
        sql.push_str(&tail);
        out.push(params.finish(sql));
    }
    out
}

/// What an upsert does on a key conflict: update every other column to the new row's value.
fn upsert_clause(d: Dialect, columns: &[String], key: &str) -> String {
    let others: Vec<&String> = columns.iter().filter(|c| c.as_str() != key).collect();
    match d {
        Dialect::Mysql => {
            // With nothing else to set, setting the key to itself makes the conflict a no-op.
            let set: Vec<String> = if others.is_empty() {
                vec![format!("{0} = VALUES({0})", d.quote(key))]
            } else {
                others
                    .iter()
                    .map(|c| format!("{0} = VALUES({0})", d.quote(c)))
                    .collect()
            };
            format!(" ON DUPLICATE KEY UPDATE {}", set.join(", "))
        }
        Dialect::Postgres | Dialect::Sqlite => {
            if others.is_empty() {
                return format!(" ON CONFLICT ({}) DO NOTHING", d.quote(key));
            }
            let set: Vec<String> = others
                .iter()
                .map(|c| format!("{0} = EXCLUDED.{0}", d.quote(c)))
                .collect();
            format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                d.quote(key),
                set.join(", ")
            )
        }
    }
}

/// `UPDATE table SET col = ?, ... WHERE key = ?` for one row; None when the row has no
/// column besides the key.
pub fn update(
    d: Dialect,
    table: &str,
    columns: &[String],
    key: &str,
    row: Vec<SqlValue>,
) -> Option<Statement> {
    let mut params = Params::new(d);
    let mut sets = Vec::new();
    let mut key_value = SqlValue::Null;
    for (c, v) in columns.iter().zip(row) {
        if c == key {
            key_value = v;
        } else {
            sets.push(format!("{} = {}", d.quote(c), params.bind(v)));
        }
    }
    if sets.is_empty() {
        return None;
    }
    let sql = format!(
        "UPDATE {} SET {} WHERE {} = {}",
        d.quote(table),
        sets.join(", "),
        d.quote(key),
        params.bind(key_value)
    );
    Some(params.finish(sql))
}

/// `DELETE FROM table WHERE key IN (?, ...)`, split by the parameter limit.
pub fn delete(d: Dialect, table: &str, key: &str, keys: Vec<SqlValue>) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut keys = keys.into_iter().peekable();
    while keys.peek().is_some() {
        let mut params = Params::new(d);
        let marks: Vec<String> = keys
            .by_ref()
            .take(d.max_params())
            .map(|k| params.bind(k))
            .collect();
        let sql = format!(
            "DELETE FROM {} WHERE {} IN ({})",
            d.quote(table),
            d.quote(key),
            marks.join(", ")
        );
        out.push(params.finish(sql));
    }
    out
}

/// eKuiper's query of a table (`internalSqlQueryCfg`): rows past the last index values seen,
/// in index order, at most `limit` (0: no limit).
pub fn select(
    d: Dialect,
    table: &str,
    indexes: &[(&str, Option<SqlValue>)],
    limit: u64,
) -> Statement {
    let mut params = Params::new(d);
    let mut sql = format!("SELECT * FROM {}", d.quote(table));
    let conditions: Vec<String> = indexes
        .iter()
        .filter_map(|(name, value)| {
            let v = value.clone()?;
            Some(format!("{} > {}", d.quote(name), params.bind(v)))
        })
        .collect();
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    if !indexes.is_empty() {
        let order: Vec<String> = indexes
            .iter()
            .map(|(name, _)| format!("{} ASC", d.quote(name)))
            .collect();
        sql.push_str(" ORDER BY ");
        sql.push_str(&order.join(", "));
    }
    if limit > 0 {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    params.finish(sql)
}

/// One piece of a `TemplateSql`.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    /// Statement text, as written.
    Text(String),
    /// `{{.field}}` (with any quotes around it): the index field's value, bound.
    Index(usize),
}

/// Splits a `TemplateSql` into text and index references. Only `{{.field}}` naming one of
/// `fields` may be templated, and quotes written around it (`'{{.t}}'`) are dropped, since the
/// value is bound as a parameter rather than pasted into the text.
pub fn parse_template(text: &str, fields: &[String]) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            return Err("\"templateSql\" has an unclosed \"{{\"".into());
        };
        let inner = rest[start + 2..start + len].trim().trim_matches('-').trim();
        let name = inner.strip_prefix('.').unwrap_or("");
        let Some(at) = fields.iter().position(|f| f == name) else {
            return Err(format!(
                "\"templateSql\" may only use {{{{.<indexField>}}}} of its index fields, got \"{{{{{inner}}}}}\""
            ));
        };
        let mut before = &rest[..start];
        let mut after = &rest[start + len + 2..];
        if before.ends_with('\'') && after.starts_with('\'') {
            before = &before[..before.len() - 1];
            after = &after[1..];
        }
        if !before.is_empty() {
            parts.push(TemplatePart::Text(before.to_string()));
        }
        parts.push(TemplatePart::Index(at));
        rest = after;
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Text(rest.to_string()));
    }
    Ok(parts)
}

/// The statement of a parsed template with the current index values bound.
pub fn render_template(d: Dialect, parts: &[TemplatePart], values: &[SqlValue]) -> Statement {
    let mut params = Params::new(d);
    let mut sql = String::new();
    for part in parts {
        match part {
            TemplatePart::Text(t) => sql.push_str(t),
            TemplatePart::Index(i) => {
                let mark = params.bind(values.get(*i).cloned().unwrap_or(SqlValue::Null));
                sql.push_str(&mark);
            }
        }
    }
    params.finish(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn inserts_are_multi_row_and_parameterised() {
        let columns = cols(&["id", "name"]);
        let rows = vec![
            vec![
                SqlValue::Int(1),
                SqlValue::Text("a'; DROP TABLE t; --".into()),
            ],
            vec![SqlValue::Int(2), SqlValue::Null],
        ];
        let spec = InsertSpec {
            dialect: Dialect::Postgres,
            table: "t",
            columns: &columns,
            upsert_key: None,
        };
        let st = insert(&spec, rows.clone());
        assert_eq!(st.len(), 1);
        assert_eq!(
            st[0].sql,
            "INSERT INTO \"t\" (\"id\", \"name\") VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(st[0].params.len(), 4);
        let spec = InsertSpec {
            dialect: Dialect::Mysql,
            upsert_key: Some("id"),
            ..spec
        };
        assert_eq!(
            insert(&spec, rows.clone())[0].sql,
            "INSERT INTO `t` (`id`, `name`) VALUES (?, ?), (?, ?) ON DUPLICATE KEY UPDATE `name` = VALUES(`name`)"
        );
        let spec = InsertSpec {
            dialect: Dialect::Sqlite,
            ..spec
        };
        assert!(
            insert(&spec, rows)[0]
                .sql
                .ends_with("ON CONFLICT (\"id\") DO UPDATE SET \"name\" = EXCLUDED.\"name\"")
        );
    }

    #[test]
    fn long_batches_split_at_the_parameter_limit() {
        let columns = cols(&["a", "b"]);
        let spec = InsertSpec {
            dialect: Dialect::Sqlite,
            table: "t",
            columns: &columns,
            upsert_key: None,
        };
        let rows = vec![vec![SqlValue::Int(1), SqlValue::Int(2)]; 20_000];
        let st = insert(&spec, rows);
        assert_eq!(st.len(), 2);
        assert_eq!(st[0].params.len(), 32_766);
        assert_eq!(st[1].params.len(), 40_000 - 32_766);
    }

    #[test]
    fn updates_deletes_and_selects() {
        let st = update(
            Dialect::Postgres,
            "t",
            &cols(&["id", "v"]),
            "id",
            vec![SqlValue::Int(7), SqlValue::Float(1.5)],
        )
        .unwrap();
        assert_eq!(st.sql, "UPDATE \"t\" SET \"v\" = $1 WHERE \"id\" = $2");
        assert_eq!(st.params, vec![SqlValue::Float(1.5), SqlValue::Int(7)]);
        let st = delete(
            Dialect::Mysql,
            "t",
            "id",
            vec![SqlValue::Int(1), SqlValue::Int(2)],
        );
        assert_eq!(st[0].sql, "DELETE FROM `t` WHERE `id` IN (?, ?)");
        let st = select(
            Dialect::Postgres,
            "s",
            &[("ts", Some(SqlValue::Int(5)))],
            10,
        );
        assert_eq!(
            st.sql,
            "SELECT * FROM \"s\" WHERE \"ts\" > $1 ORDER BY \"ts\" ASC LIMIT 10"
        );
        let st = select(Dialect::Mysql, "s", &[("ts", None)], 0);
        assert_eq!(st.sql, "SELECT * FROM `s` ORDER BY `ts` ASC");
    }

    #[test]
    fn templates_bind_index_values() {
        let fields = cols(&["registerTime"]);
        let parts = parse_template(
            "select * from t where registerTime > '{{.registerTime}}' order by registerTime",
            &fields,
        )
        .unwrap();
        let st = render_template(
            Dialect::Postgres,
            &parts,
            &[SqlValue::Text("x' OR 1=1".into())],
        );
        assert_eq!(
            st.sql,
            "select * from t where registerTime > $1 order by registerTime"
        );
        assert!(parse_template("select {{.other}}", &fields).is_err());
        assert!(parse_template("select {{printf \"%s\" 1}}", &fields).is_err());
        assert!(parse_template("select {{.registerTime", &fields).is_err());
    }
}
