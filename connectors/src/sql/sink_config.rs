//! Settings of the `sql` sink, parsed and validated once from eKuiper's properties.

use serde_json::Value;

use super::driver::DbUrl;
use crate::ConnectorError;
use crate::props::{Props, action_props};

/// eKuiper's common sink properties the sql sink reads itself: `fields` names the columns
/// (of the nested rows, with `tableDataField`), so the host leaves the rows whole.
pub const SINK_OWN_KEYS: &[&str] = &["fields", "tableDataField"];

/// Settings of an sql sink.
#[derive(Debug, Clone)]
pub struct SqlSinkConfig {
    /// The database (`url`, or eKuiper's older `dburl`).
    pub url: DbUrl,
    /// The table written to (`table`).
    pub table: String,
    /// The columns written, in order (`fields`); None: every field of the rows.
    pub fields: Option<Vec<String>>,
    /// Write the rows nested in this field (an array of objects, or one object) instead of
    /// the row itself (`tableDataField`).
    pub table_data_field: Option<String>,
    /// The field naming each row's action: insert, update, upsert or delete (`rowkindField`).
    pub rowkind_field: Option<String>,
    /// The key column updates, upserts and deletes match on (`keyField`).
    pub key_field: Option<String>,
    /// One transaction per row instead of per batch (`sendSingle`).
    pub send_single: bool,
}

impl Props<'_> {
    /// A non-empty string property.
    fn name(&self, key: &str) -> Result<Option<String>, ConnectorError> {
        match self.string(key)? {
            Some(s) if s.trim().is_empty() => {
                Err(self.error(format!("\"{key}\" must not be empty")))
            }
            other => Ok(other.map(|s| s.trim().to_string())),
        }
    }
}

impl SqlSinkConfig {
    /// Validates the action's properties.
    pub fn parse(props: &Value) -> Result<Self, ConnectorError> {
        let p = action_props("sql", props)?;
        p.refuse_unknown_sink_keys("sql sink", &crate::spec::sink_spec("sql").accepted())?;
        let url = DbUrl::from_props(&p)?;
        let table = p
            .name("table")?
            .ok_or_else(|| p.error("\"table\" is required".into()))?;
        let fields = match p.get("fields") {
            None => None,
            Some((name, Value::Array(items))) => Some(
                items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .filter(|f| !f.is_empty())
                    .ok_or_else(|| p.error(format!("\"{name}\" must list field names")))?,
            ),
            Some((name, _)) => return Err(p.error(format!("\"{name}\" must list field names"))),
        };
        let rowkind_field = p.name("rowkindfield")?;
        let key_field = p.name("keyfield")?;
        if rowkind_field.is_some() && key_field.is_none() {
            return Err(p.error("\"keyField\" is required when \"rowkindField\" is set".into()));
        }
        if let (Some(fields), Some(key)) = (&fields, &key_field)
            && !fields.contains(key)
        {
            return Err(p.error(format!("\"fields\" must include the keyField \"{key}\"")));
        }
        let send_single = p.boolean("sendsingle")?.unwrap_or(false);
        Ok(SqlSinkConfig {
            url,
            table,
            fields,
            table_data_field: p.name("tabledatafield")?,
            rowkind_field,
            key_field,
            send_single,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reason(props: Value) -> String {
        SqlSinkConfig::parse(&props).unwrap_err().to_string()
    }

    #[test]
    fn reads_ekuiper_properties_and_refuses_the_rest() {
        let c = SqlSinkConfig::parse(&json!({
            "url": "sqlite:/tmp/x.db", "table": "alerts", "fields": ["id", "v"],
            "rowkindField": "action", "keyField": "id", "sendSingle": true
        }))
        .unwrap();
        assert_eq!(c.table, "alerts");
        assert_eq!(
            c.fields.as_deref(),
            Some(&["id".to_string(), "v".into()][..])
        );
        assert_eq!(c.key_field.as_deref(), Some("id"));
        let c =
            SqlSinkConfig::parse(&json!({"dburl": "mysql://root@h/test", "table": "t"})).unwrap();
        assert!(c.fields.is_none() && c.rowkind_field.is_none());
        assert!(reason(json!({"table": "t"})).contains("\"url\" is required"));
        assert!(reason(json!({"url": "sqlite:/x.db"})).contains("\"table\" is required"));
        assert!(
            reason(json!({"url": "sqlite:/x.db", "table": "t", "rowkindField": "a"}))
                .contains("keyField")
        );
        assert!(
            reason(json!({"url": "sqlite:/x.db", "table": "t", "fields": "a"})).contains("fields")
        );
        assert!(
            reason(json!({"url": "sqlite:/x.db", "table": "t", "tabel": "a"}))
                .contains("unknown property \"tabel\"")
        );
        assert!(reason(json!({"url": "oracle://h/x", "table": "t"})).contains("unsupported"));
    }
}
