//! Settings of the `file` sink, parsed and validated once from eKuiper's properties.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::FILE_COMPRESSIONS;
use super::FileType;
use crate::ConnectorError;
use crate::codec::compress::Compression;
use crate::codec::sink_format::SinkFormat;
use crate::codec::template::TextProp;
use crate::props::action_props;

const CONNECTOR: &str = "file";

/// eKuiper's default `rollingCount`.
pub const DEFAULT_ROLLING_COUNT: u64 = 1_000_000;

/// eKuiper's default `checkInterval`: five minutes.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(300);

/// Common sink properties the file sink reads itself, so the host passes them on: `format`
/// (and `schemaId` for protobuf and custom lines), `compression` (of the file) and `fields` (the CSV
/// columns).
pub const SINK_OWN_KEYS: &[&str] = &["format", "compression", "fields", "schemaId"];

/// Where a new file's creation time goes in its name (`rollingNamePattern`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePattern {
    /// The path as it is (a rolled file is replaced by the next one of the same name).
    None,
    /// `<unix ms>-<name>`.
    Prefix,
    /// `<stem>-<unix ms><.ext>`.
    Suffix,
}

/// Settings of a file sink.
#[derive(Debug, Clone)]
pub struct FileSinkConfig {
    /// The file to write (`path`, required); may be a template over the row.
    pub path: TextProp,
    /// How results are laid out (`fileType`: lines (default), json or csv).
    pub file_type: FileType,
    /// Write a header line of column names first (`hasHeader`, csv only).
    pub has_header: bool,
    /// The CSV separator (`delimiter`, default `,`).
    pub delimiter: String,
    /// Roll a file open this long (`rollingInterval` ms; None: never by time).
    pub rolling_interval: Option<Duration>,
    /// How often open files are checked against `rollingInterval` (`checkInterval`).
    pub check_interval: Duration,
    /// Roll a file after this many messages (`rollingCount`; None: never by count).
    pub rolling_count: Option<u64>,
    /// Where the creation time goes in the name (`rollingNamePattern`).
    pub name_pattern: NamePattern,
    /// File compression (`compression`: gzip or zstd).
    pub compression: Compression,
    /// CSV column order (`fields`); None: the row's fields in name order.
    pub fields: Option<Vec<String>>,
    /// The encoding of a `lines` file's messages when `format` is not json (delimited, binary,
    /// urlencoded, protobuf or custom).
    pub line_format: Option<Arc<SinkFormat>>,
    /// One message per row instead of one per emission (`sendSingle`).
    pub send_single: bool,
    /// Keep null fields as `null` in JSON (`sendNilField`).
    pub send_nil: bool,
    /// Write nothing for an emission without rows (`omitIfEmpty`).
    pub omit_if_empty: bool,
}

impl FileSinkConfig {
    /// Validates the action's properties.
    pub fn parse(props: &Value) -> Result<Self, ConnectorError> {
        let p = action_props(CONNECTOR, props)?;
        if let Some((name, _)) = p.get("rollinghook") {
            return Err(p.error(format!(
                "\"{name}\" is not supported: rolling hooks are not implemented yet"
            )));
        }
        p.refuse_unknown_sink_keys("file sink", &crate::spec::sink_spec(CONNECTOR).accepted())?;
        let path = p
            .string("path")?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| p.error("\"path\" is required".into()))?;
        let path = TextProp::parse("path", path).map_err(|e| p.error(e))?;
        let file_type = match p.string("filetype")? {
            None => FileType::Lines,
            Some(s) => FileType::parse(s).ok_or_else(|| {
                p.error(format!(
                    "unknown fileType \"{s}\"; expected lines, json or csv"
                ))
            })?,
        };
        // `lines` files take any byte format, one message per line; `json` and `csv` files
        // are their own format.
        let line_format = match p.string("format")?.map(str::trim) {
            None | Some("") => None,
            Some(format) => match (file_type, format.to_ascii_lowercase().as_str()) {
                (FileType::Lines | FileType::Json, "json") | (FileType::Csv, "delimited") => None,
                (
                    FileType::Lines,
                    "delimited" | "binary" | "urlencoded" | "protobuf" | "custom",
                ) => {
                    if p.boolean("hasheader")? == Some(true) {
                        return Err(p.error(
                            "\"hasHeader\" applies to fileType csv, which writes one header per file"
                                .into(),
                        ));
                    }
                    Some(Arc::new(SinkFormat::parse(&p, false)?))
                }
                _ => {
                    let want = match file_type {
                        FileType::Csv => "delimited",
                        FileType::Json => "json",
                        FileType::Lines => {
                            "json, delimited, binary, urlencoded, protobuf or custom"
                        }
                    };
                    return Err(p.error(format!(
                        "format \"{format}\" does not fit fileType {file_type:?}; it writes {want}"
                    )));
                }
            },
        };
        let delimiter = p.string("delimiter")?.unwrap_or(",").to_string();
        if delimiter.is_empty() || delimiter.contains(['\n', '\r', '"']) {
            return Err(p.error(format!(
                "\"delimiter\" {delimiter:?} must be non-empty, without quotes or line breaks"
            )));
        }
        let rolling_interval = p.duration("rollinginterval")?;
        let rolling_count = match p.uint("rollingcount")? {
            None => Some(DEFAULT_ROLLING_COUNT),
            Some(0) => None,
            Some(n) => Some(n),
        };
        if rolling_interval.is_none() && rolling_count.is_none() {
            return Err(
                p.error("one of \"rollingInterval\" and \"rollingCount\" must be set".into())
            );
        }
        let check_interval = match p.duration("checkinterval")? {
            Some(d) => d,
            None => p.duration("interval")?.unwrap_or(DEFAULT_CHECK_INTERVAL),
        };
        let name_pattern = match p.string("rollingnamepattern")?.unwrap_or("") {
            "" | "none" => NamePattern::None,
            "prefix" => NamePattern::Prefix,
            "suffix" => NamePattern::Suffix,
            other => {
                return Err(p.error(format!(
                    "unknown rollingNamePattern \"{other}\"; expected prefix, suffix or none"
                )));
            }
        };
        let compression = Compression::parse(&p, "compression", FILE_COMPRESSIONS)?;
        let fields = match p.get("fields") {
            None => None,
            Some((_, Value::Array(items))) => Some(
                items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| p.error("\"fields\" must list field names".into()))?,
            ),
            Some((name, other)) => {
                return Err(p.error(format!("\"{name}\" must list field names, got {other}")));
            }
        };
        Ok(FileSinkConfig {
            path,
            file_type,
            has_header: p.boolean("hasheader")?.unwrap_or(false),
            delimiter,
            rolling_interval,
            check_interval,
            rolling_count,
            name_pattern,
            compression,
            fields,
            line_format,
            send_single: p.boolean("sendsingle")?.unwrap_or(false),
            send_nil: p.boolean("sendnilfield")?.unwrap_or(false),
            omit_if_empty: p.boolean("omitifempty")?.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reason(props: Value) -> String {
        FileSinkConfig::parse(&props).unwrap_err().to_string()
    }

    #[test]
    fn defaults_and_refusals() {
        let c = FileSinkConfig::parse(&json!({"path": "/tmp/x"})).unwrap();
        assert_eq!(c.file_type, FileType::Lines);
        assert_eq!(c.rolling_count, Some(DEFAULT_ROLLING_COUNT));
        assert_eq!(c.rolling_interval, None);
        assert_eq!(c.check_interval, DEFAULT_CHECK_INTERVAL);
        assert_eq!(c.name_pattern, NamePattern::None);
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.delimiter, ",");
        let c = FileSinkConfig::parse(&json!({
            "path": "{{.device}}.csv", "fileType": "csv", "format": "delimited",
            "hasHeader": true, "delimiter": ";", "rollingInterval": 3600000,
            "checkInterval": "10m", "rollingCount": 0, "rollingNamePattern": "prefix",
            "compression": "zstd"
        }))
        .unwrap();
        assert!(c.path.is_template() && c.has_header);
        assert_eq!(c.rolling_count, None);
        assert_eq!(c.rolling_interval, Some(Duration::from_secs(3600)));
        assert_eq!(c.check_interval, Duration::from_secs(600));
        assert_eq!(c.compression, Compression::Zstd);
        assert!(reason(json!({})).contains("\"path\" is required"));
        assert!(reason(json!({"path": "x", "fileType": "parquet"})).contains("parquet"));
        assert!(reason(json!({"path": "x", "rollingCount": 0})).contains("one of"));
        assert!(reason(json!({"path": "x", "compression": "lz4"})).contains("lz4"));
        assert!(
            reason(json!({"path": "x", "format": "delimited", "fileType": "json"}))
                .contains("does not fit")
        );
        assert!(reason(json!({"path": "x", "rollingHook": "h"})).contains("rollingHook"));
        assert!(reason(json!({"path": "x", "rollingNamePattern": "mid"})).contains("mid"));
        assert!(reason(json!({"path": "x", "pth": "y"})).contains("unknown property \"pth\""));
    }
}
