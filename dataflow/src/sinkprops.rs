//! eKuiper's common sink properties, handled by the host for every sink type: `batchSize`,
//! `lingerInterval`, `fields`, `excludeFields`, `dataField`, `bufferLength`, `dataTemplate` and
//! the cache keys ([`crate::sink_cache`]). Connector-specific keys pass through to the sink.

use std::time::Duration;

use arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::error::EngineError;
pub use crate::sink_shape::Shape;

/// Keys the host consumes; the connector never sees them.
const HOST_KEYS: &[&str] = &[
    "batchSize",
    "lingerInterval",
    "fields",
    "excludeFields",
    "dataField",
    "tableDataField",
    "bufferLength",
    "dataTemplate",
];

/// The longest queue in front of a sink (`bufferLength`, in emissions). tokio's bounded channel
/// panics above `usize::MAX >> 3`, which a request once reached while holding the rules lock;
/// 1 Mi emissions is a thousand times eKuiper's default of 1024.
pub const MAX_BUFFER_LENGTH: u64 = 1 << 20;

/// The most rows a sink gathers before writing (`batchSize`). They wait in memory; eKuiper
/// examples use tens to thousands, and 1 Mi rows bounds that memory.
pub const MAX_BATCH_SIZE: u64 = 1 << 20;

/// The longest a partial batch waits (`lingerInterval`, ms): one hour. eKuiper users flush
/// every few milliseconds to seconds; the bound also keeps `now + linger` far from the
/// overflow that makes `Instant + Duration` panic.
pub const MAX_LINGER_MS: u64 = 3_600_000;

/// Common keys this build refuses rather than silently ignoring.
const UNSUPPORTED: &[&str] = &["format", "schemaId", "compression", "encryption"];

/// Common keys no sink reads, refused with why (eKuiper defines them; ignoring them would
/// leave a user believing they apply).
const REFUSED: &[(&str, &str)] = &[
    (
        "resourceId",
        "(eKuiper's shared sink configuration) is not supported; name a connection made with \
         POST /connections in \"connectionSelector\" instead (mqtt)",
    ),
    (
        "compressionProps",
        "is not supported: compression runs at each algorithm's default level",
    ),
    (
        "encProps",
        "is not supported: payload encryption is not built",
    ),
];

/// Validated common sink settings.
#[derive(Debug, Clone, Default)]
pub struct SinkSettings {
    /// Rows to gather before writing (0: write each emission as it comes).
    pub batch_size: usize,
    /// Longest wait before a partial batch is written (None: no time limit).
    pub linger: Option<Duration>,
    /// `dataField`, `fields` and `excludeFields`: what is sent of each emission.
    pub shape: Shape,
    /// Emissions queued in front of the sink.
    pub buffer_length: Option<usize>,
    /// eKuiper's `dataTemplate` (Go text/template syntax), rendered per emission or per row.
    pub data_template: Option<String>,
    /// `sendSingle`: the template sees one row instead of the list of rows.
    pub send_single: bool,
    /// The sink cache (`enableCache` and its properties), when enabled.
    pub cache: Option<crate::sink_cache::CacheSettings>,
}

fn bad(key: &str, what: &str) -> EngineError {
    EngineError::Invalid(format!("sink property \"{key}\" {what}"))
}

impl SinkSettings {
    /// Splits an action's properties into host settings and the connector's own properties.
    pub fn parse(props: &Value) -> Result<(SinkSettings, Value), EngineError> {
        Self::parse_for(&[], props)
    }

    /// [`SinkSettings::parse`] for a sink that reads the common keys `own` itself (see
    /// `Connectors::sink_own_keys`): those reach the sink as well, and are not refused.
    pub fn parse_for(own: &[&str], props: &Value) -> Result<(SinkSettings, Value), EngineError> {
        let Some(map) = props.as_object() else {
            return Err(EngineError::Invalid(
                "an action's properties must be a JSON object".into(),
            ));
        };
        for key in UNSUPPORTED {
            if map.contains_key(*key) && !own.contains(key) {
                return Err(bad(key, "is not supported yet"));
            }
        }
        for (key, why) in REFUSED {
            if map.keys().any(|k| k.eq_ignore_ascii_case(key)) {
                return Err(bad(key, why));
            }
        }
        // A non-negative integer no greater than `limit`; the error names both.
        let uint = |key: &str, limit: u64| -> Result<Option<u64>, EngineError> {
            let n = match map.get(key) {
                None | Some(Value::Null) => return Ok(None),
                Some(v) => v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .ok_or_else(|| bad(key, "must be a non-negative integer"))?,
            };
            if n > limit {
                return Err(EngineError::Invalid(format!(
                    "{key} {n} is above the limit of {limit}"
                )));
            }
            Ok(Some(n))
        };
        let names = |key: &str| -> Result<Option<Vec<String>>, EngineError> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| bad(key, "must be a list of field names"))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(_) => Err(bad(key, "must be a list of field names")),
            }
        };
        let fields = names("fields")?;
        let exclude_fields = names("excludeFields")?.unwrap_or_default();
        let field_name = |key: &str| -> Result<Option<String>, EngineError> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(key, "must be a field name")),
            }
        };
        // `tableDataField` is eKuiper's older name for `dataField`.
        let data_field = match (field_name("dataField")?, field_name("tableDataField")?) {
            (Some(_), Some(_)) => {
                return Err(EngineError::Invalid(
                    "sink properties \"dataField\" and \"tableDataField\" name the same thing; set one".into(),
                ));
            }
            (a, b) => a.or(b),
        };
        // A sink that reads `tableDataField` itself (the sql sink) picks the nested rows and
        // their `fields`: the host leaves the rows whole for it.
        let nested = own.contains(&"tableDataField")
            && map.keys().any(|k| k.eq_ignore_ascii_case("tableDataField"));
        let send_single = map
            .get("sendSingle")
            .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"));
        let shape = if nested {
            Shape {
                exclude_fields,
                ..Shape::default()
            }
        } else {
            Shape {
                data_field,
                fields,
                exclude_fields,
                send_single,
            }
        };
        let settings = SinkSettings {
            batch_size: uint("batchSize", MAX_BATCH_SIZE)?.unwrap_or(0) as usize,
            linger: uint("lingerInterval", MAX_LINGER_MS)?
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            shape,
            buffer_length: uint("bufferLength", MAX_BUFFER_LENGTH)?.map(|n| n as usize),
            data_template: match map.get("dataTemplate") {
                None | Some(Value::Null) => None,
                Some(Value::String(t)) if t.is_empty() => None,
                Some(Value::String(t)) => {
                    DataTemplate::compile(t)?;
                    Some(t.clone())
                }
                Some(_) => return Err(bad("dataTemplate", "must be a string")),
            },
            send_single,
            cache: crate::sink_cache::CacheSettings::parse(map)?,
        };
        let rest: serde_json::Map<String, Value> = map
            .iter()
            .filter(|(k, _)| {
                let host = HOST_KEYS.contains(&k.as_str())
                    || crate::sink_cache::CACHE_KEYS.contains(&k.as_str());
                !host || own.contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok((settings, Value::Object(rest)))
    }

    /// True when emissions are gathered before writing.
    pub fn batches(&self) -> bool {
        self.batch_size > 0 || self.linger.is_some()
    }

    /// What is sent of `batch` (`dataField`, `fields`, `excludeFields`), unless a
    /// `dataTemplate` renders it first (then [`Shape::json`] applies to its output).
    pub fn shape_rows(&self, batch: RecordBatch) -> Result<RecordBatch, String> {
        if self.data_template.is_some() || self.shape.is_identity() {
            return Ok(batch);
        }
        self.shape.rows(batch)
    }
}

/// A compiled `dataTemplate` (see [`quiver_connectors::codec::template`]).
pub struct DataTemplate {
    template: quiver_connectors::codec::template::Template,
}

impl DataTemplate {
    /// Parses a template; the error says what is wrong with it.
    pub fn compile(text: &str) -> Result<DataTemplate, EngineError> {
        quiver_connectors::codec::template::Template::compile(text)
            .map(|template| DataTemplate { template })
            .map_err(|e| bad("dataTemplate", &format!("is not a valid template: {e}")))
    }

    /// Renders `value` (a row object, or the list of rows).
    pub fn render(&self, value: &Value) -> Result<Vec<u8>, String> {
        self.template
            .render(value)
            .map_err(|e| format!("dataTemplate: {e}"))
    }
}

/// Concatenates emissions whose schemas may differ (schemaless rules) into as few batches as
/// possible: consecutive batches with one schema become one.
pub fn merge(batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
    let mut out: Vec<RecordBatch> = Vec::new();
    let mut run: Vec<RecordBatch> = Vec::new();
    for b in batches {
        if run.first().is_some_and(|f| f.schema() != b.schema()) {
            out.push(concat(std::mem::take(&mut run)));
        }
        run.push(b);
    }
    if !run.is_empty() {
        out.push(concat(run));
    }
    out
}

fn concat(run: Vec<RecordBatch>) -> RecordBatch {
    if run.len() == 1 {
        return run.into_iter().next().expect("one batch");
    }
    arrow::compute::concat_batches(&run[0].schema(), &run).expect("same schema")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn host_keys_are_taken_out() {
        let (s, rest) = SinkSettings::parse(&json!({
            "topic": "t", "batchSize": 10, "lingerInterval": "500", "fields": ["a"]
        }))
        .unwrap();
        assert_eq!(s.batch_size, 10);
        assert_eq!(s.linger, Some(Duration::from_millis(500)));
        assert_eq!(rest, json!({"topic": "t"}));
        assert!(SinkSettings::parse(&json!({"dataTemplate": "{{.a"})).is_err());
        assert!(SinkSettings::parse(&json!({"format": "protobuf"})).is_err());
        assert!(SinkSettings::parse(&json!({"batchSize": -1})).is_err());
        for key in ["resourceId", "compressionProps", "encProps"] {
            let e = SinkSettings::parse(&json!({ key: "x" }))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("sink property \"{key}\" ")), "{e}");
            assert!(e.contains("is not supported"), "{e}");
        }
    }

    #[test]
    fn a_sink_reading_table_data_field_gets_fields_and_whole_rows() {
        let own = &["fields", "tableDataField"];
        let props = json!({"table": "t", "fields": ["temperature"], "tableDataField": "telemetry"});
        let (s, rest) = SinkSettings::parse_for(own, &props).unwrap();
        // The nested rows' fields are the sink's to pick: the host projects nothing.
        assert!(s.shape.is_identity());
        assert_eq!(rest, props);
        let (s, _) = SinkSettings::parse_for(own, &json!({"fields": ["a"]})).unwrap();
        assert_eq!(s.shape.fields, Some(vec!["a".to_string()]));
        // The others take `dataField` (or its older name) from the host.
        let (s, rest) = SinkSettings::parse(
            &json!({"topic": "t", "tableDataField": "d", "excludeFields": ["x"]}),
        )
        .unwrap();
        assert_eq!(s.shape.data_field.as_deref(), Some("d"));
        assert_eq!(s.shape.exclude_fields, vec!["x".to_string()]);
        assert_eq!(rest, json!({"topic": "t"}));
        assert!(refusal(json!({"dataField": "a", "tableDataField": "b"})).contains("set one"));
        assert!(refusal(json!({"excludeFields": "a"})).contains("list of field names"));
    }

    fn refusal(props: Value) -> String {
        SinkSettings::parse(&props).unwrap_err().to_string()
    }

    #[test]
    fn numeric_properties_are_bounded() {
        // Issue 21: 2^61 panicked inside `mpsc::channel` while the rules lock was held.
        assert_eq!(
            refusal(json!({"bufferLength": 1u64 << 61})),
            "bufferLength 2305843009213693952 is above the limit of 1048576"
        );
        assert_eq!(
            refusal(json!({"bufferLength": "2305843009213693952"})),
            "bufferLength 2305843009213693952 is above the limit of 1048576"
        );
        assert_eq!(
            refusal(json!({"batchSize": u64::MAX})),
            "batchSize 18446744073709551615 is above the limit of 1048576"
        );
        assert_eq!(
            refusal(json!({"lingerInterval": 3_600_001})),
            "lingerInterval 3600001 is above the limit of 3600000"
        );
        let (s, _) = SinkSettings::parse(&json!({
            "bufferLength": MAX_BUFFER_LENGTH,
            "batchSize": MAX_BATCH_SIZE,
            "lingerInterval": MAX_LINGER_MS
        }))
        .unwrap();
        assert_eq!(s.buffer_length, Some(1 << 20));
        assert_eq!(s.batch_size, 1 << 20);
        assert_eq!(s.linger, Some(Duration::from_secs(3600)));
        // The largest queue tokio is asked for is one it can make.
        drop(tokio::sync::mpsc::channel::<()>(MAX_BUFFER_LENGTH as usize));
    }
}
