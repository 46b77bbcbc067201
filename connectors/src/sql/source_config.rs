//! Settings of the `sql` source, parsed and validated once from the stream's profile.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::driver::DbUrl;
use super::statement::{TemplatePart, parse_template};
use crate::ConnectorError;
use crate::props::Props;

/// eKuiper's interval between two queries when none is set (its shipped `sql.yaml`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The properties of one index field, at the top of a query config or in `indexFields`.
const INDEX_KEYS: &[&str] = &[
    "indexfield",
    "indexvalue",
    "indexfieldtype",
    "datetimeformat",
];

/// A column whose largest value seen marks how far the source has read.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexField {
    /// The column (`indexField`).
    pub name: String,
    /// Where to start (`indexValue`); None: from the first row.
    pub start: Option<Value>,
    /// `dateTimeFormat` of a `DATETIME` index (`indexFieldType`): values are read and bound
    /// in this format.
    pub datetime_format: Option<String>,
}

/// How the source queries.
#[derive(Debug, Clone, PartialEq)]
pub enum QuerySpec {
    /// `internalSqlQueryCfg`: the rows of `table` past the index, in index order.
    Table {
        /// The table (`table`).
        table: String,
        /// At most this many rows a query (`limit`, 0: all).
        limit: u64,
    },
    /// `templateSqlQueryCfg`: the user's statement with the index values bound where it
    /// names them.
    Template(Vec<TemplatePart>),
}

/// Settings of an sql source.
#[derive(Debug, Clone)]
pub struct SqlSourceConfig {
    /// The database (`url`, or `dburl`).
    pub url: DbUrl,
    /// The wait between two queries (`interval`, default 10 s).
    pub interval: Duration,
    /// The query.
    pub query: QuerySpec,
    /// The index fields, in order.
    pub indexes: Vec<IndexField>,
    /// The topic the rows carry (`DATASOURCE`).
    pub topic: Arc<str>,
}

impl SqlSourceConfig {
    /// Validates the stream's DATASOURCE and profile.
    pub fn parse(datasource: &str, props: &Map<String, Value>) -> Result<Self, ConnectorError> {
        let p = Props::new("sql", props);
        p.refuse_unknown("sql source", &crate::spec::source_spec("sql").accepted())?;
        let url = DbUrl::from_props(&p)?;
        let interval = match p.duration("interval")? {
            Some(d) => d,
            None if p.get("interval").is_some() => {
                return Err(p.error("\"interval\" must be at least 1 ms".into()));
            }
            None => DEFAULT_INTERVAL,
        };
        let object = |key: &str| -> Result<Option<&Map<String, Value>>, ConnectorError> {
            match p.get(key) {
                None => Ok(None),
                Some((_, Value::Object(m))) => Ok(Some(m)),
                Some((name, other)) => {
                    Err(p.error(format!("\"{name}\" must be an object, got {other}")))
                }
            }
        };
        // eKuiper: when both are set, the template is used.
        let (query, indexes) = if let Some(t) = object("templatesqlquerycfg")? {
            let q = Props::new("sql", t);
            let keys: Vec<&str> = INDEX_KEYS
                .iter()
                .chain(&["templatesql", "indexfields"])
                .copied()
                .collect();
            q.refuse_unknown("sql source templateSqlQueryCfg", &keys)?;
            let text = q
                .string("templatesql")?
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| {
                    q.error("templateSqlQueryCfg: \"templateSql\" is required".into())
                })?;
            let indexes = index_fields(&q)?;
            let names: Vec<String> = indexes.iter().map(|i| i.name.clone()).collect();
            let parts = parse_template(text, &names).map_err(|e| q.error(e))?;
            (QuerySpec::Template(parts), indexes)
        } else if let Some(t) = object("internalsqlquerycfg")? {
            let q = Props::new("sql", t);
            let keys: Vec<&str> = INDEX_KEYS
                .iter()
                .chain(&["table", "limit", "indexfields"])
                .copied()
                .collect();
            q.refuse_unknown("sql source internalSqlQueryCfg", &keys)?;
            let table = q
                .string("table")?
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .or(Some(datasource.trim()).filter(|s| !s.is_empty()))
                .ok_or_else(|| q.error("internalSqlQueryCfg: \"table\" is required".into()))?;
            let query = QuerySpec::Table {
                table: table.to_string(),
                limit: q.uint("limit")?.unwrap_or(0),
            };
            (query, index_fields(&q)?)
        } else {
            return Err(
                p.error("\"internalSqlQueryCfg\" or \"templateSqlQueryCfg\" is required".into())
            );
        };
        Ok(SqlSourceConfig {
            url,
            interval,
            query,
            indexes,
            topic: datasource.into(),
        })
    }
}

/// The index fields of a query config: its own `indexField`, else its `indexFields` list.
fn index_fields(q: &Props<'_>) -> Result<Vec<IndexField>, ConnectorError> {
    if q.get("indexfield").is_some() {
        return Ok(vec![index_field(q)?]);
    }
    match q.get("indexfields") {
        None => Ok(Vec::new()),
        Some((_, Value::Array(items))) => items
            .iter()
            .map(|item| match item {
                Value::Object(m) => {
                    let f = Props::new("sql", m);
                    f.refuse_unknown("sql source indexFields", INDEX_KEYS)?;
                    index_field(&f)
                }
                other => Err(q.error(format!(
                    "\"indexFields\" items must be objects, got {other}"
                ))),
            })
            .collect(),
        Some((name, other)) => Err(q.error(format!("\"{name}\" must be a list, got {other}"))),
    }
}

fn index_field(f: &Props<'_>) -> Result<IndexField, ConnectorError> {
    let name = f
        .string("indexfield")?
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| f.error("\"indexField\" must name a column".into()))?;
    let datetime = match f.string("indexfieldtype")? {
        None => false,
        Some(t) if t.trim().eq_ignore_ascii_case("DATETIME") => true,
        Some(t) if t.trim().is_empty() => false,
        Some(other) => {
            return Err(f.error(format!(
                "\"indexFieldType\" \"{other}\" is not supported (only DATETIME)"
            )));
        }
    };
    let format = f.string("datetimeformat")?.filter(|s| !s.trim().is_empty());
    if format.is_some() && !datetime {
        return Err(f.error(
            "\"dateTimeFormat\" applies only with \"indexFieldType\": \"DATETIME\"".into(),
        ));
    }
    let start = f.get("indexvalue").map(|(_, v)| v.clone());
    let field = IndexField {
        name: name.to_string(),
        start,
        datetime_format: format.map(str::to_string),
    };
    if let (Some(v), Some(_)) = (&field.start, &field.datetime_format) {
        super::source::index_param(&field, v).map_err(|e| f.error(e))?;
    }
    Ok(field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(props: Value) -> Result<SqlSourceConfig, String> {
        SqlSourceConfig::parse("demo", props.as_object().unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_both_query_forms() {
        let c = parse(json!({
            "url": "mysql://root@127.0.0.1:3306/test?parseTime=true", "interval": 1000,
            "internalSqlQueryCfg": {"table": "t", "limit": 10, "indexField": "id", "indexValue": 5}
        }))
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(
            c.query,
            QuerySpec::Table {
                table: "t".into(),
                limit: 10
            }
        );
        assert_eq!(c.indexes[0].start, Some(json!(5)));
        let c = parse(json!({
            "url": "sqlite:/tmp/x.db",
            "templateSqlQueryCfg": {
                "TemplateSql": "select * from t where ts > '{{.ts}}'",
                "indexFields": [{"indexField": "ts", "indexValue": "2022-04-13 06:22:32",
                                 "indexFieldType": "DATETIME", "dateTimeFormat": "YYYY-MM-dd HH:mm:ss"}]
            }
        }))
        .unwrap();
        assert_eq!(c.interval, DEFAULT_INTERVAL);
        assert!(matches!(c.query, QuerySpec::Template(ref p) if p.len() == 2));
        assert_eq!(
            c.indexes[0].datetime_format.as_deref(),
            Some("YYYY-MM-dd HH:mm:ss")
        );
    }

    #[test]
    fn refusals_name_the_property() {
        let url = "sqlite:/tmp/x.db";
        assert!(
            parse(json!({"url": url}))
                .unwrap_err()
                .contains("internalSqlQueryCfg")
        );
        assert!(
            parse(json!({"internalSqlQueryCfg": {"table": "t"}}))
                .unwrap_err()
                .contains("\"url\"")
        );
        assert!(
            parse(json!({"url": url, "internalSqlQueryCfg": {"table": "t", "lmit": 1}}))
                .unwrap_err()
                .contains("\"lmit\"")
        );
        assert!(parse(json!({"url": url, "internalSqlQueryCfg": {"indexField": "a", "indexFieldType": "INT"}}))
            .unwrap_err().contains("INT"));
        assert!(parse(json!({"url": url, "internalSqlQueryCfg": {"indexField": "a",
            "indexFieldType": "DATETIME", "dateTimeFormat": "YYYY-MM-dd", "indexValue": "yesterday"}}))
            .unwrap_err().contains("yesterday"));
        assert!(
            parse(json!({"url": url, "templateSqlQueryCfg": {"templateSql": "select {{.x}}"}}))
                .unwrap_err()
                .contains("{{.x}}")
        );
        assert!(
            parse(json!({"url": url, "interval": 0, "internalSqlQueryCfg": {"table": "t"}}))
                .unwrap_err()
                .contains("interval")
        );
    }
}
