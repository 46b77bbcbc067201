//! Settings of the file source, parsed and validated once from eKuiper-style props.
//!
//! Property names are matched case-insensitively, as eKuiper does (`filetype` = `fileType`).
//! Values may be JSON numbers/booleans or their string forms (`"1"`, `"true"`), since YAML
//! profiles write them both ways.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::FILE_COMPRESSIONS;
use crate::ConnectorError;
use crate::codec::compress::Compression;
use crate::props::Props;

const CONNECTOR: &str = "file";

/// How a file's content is split into rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// One JSON document: an array of objects (one row each) or a single object.
    Json,
    /// One JSON object per line (JSON lines / NDJSON).
    Lines,
    /// Delimiter-separated values; the header row or `columns` names the fields.
    Csv,
}

impl FileType {
    /// Parses eKuiper's `fileType` value.
    pub fn parse(s: &str) -> Option<FileType> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Some(FileType::Json),
            "lines" => Some(FileType::Lines),
            "csv" => Some(FileType::Csv),
            _ => None,
        }
    }

    /// The type a file's extension implies when `fileType` is not set: `.jsonl`/`.ndjson` are
    /// JSON lines, `.csv` is CSV, anything else is a JSON document (eKuiper's default).
    pub fn from_extension(path: &Path) -> FileType {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("jsonl" | "ndjson") => FileType::Lines,
            Some("csv") => FileType::Csv,
            _ => FileType::Json,
        }
    }
}

/// What happens to a file once all its rows were handed to the rule (`actionAfterRead`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterRead {
    /// `0`: the file stays (read again every `interval`).
    Keep,
    /// `1`: the file is deleted.
    Delete,
    /// `2`: the file is moved into this directory (`moveTo`), keeping its name.
    MoveTo(PathBuf),
}

/// Settings of a file source.
#[derive(Debug, Clone)]
pub struct FileSourceConfig {
    /// The file (or directory of files, read in name order) to read: `DATASOURCE`, joined to
    /// the `path` property when it is relative.
    pub path: PathBuf,
    /// `fileType`; `None` picks it per file from the extension ([`FileType::from_extension`]).
    pub file_type: Option<FileType>,
    /// CSV: the first row (after `ignoreStartLines`) is a header. Default: true unless
    /// `columns` is set.
    pub has_header: bool,
    /// CSV: the field names; when absent, the header names them, or `cols0`, `cols1`, ...
    pub columns: Option<Vec<String>>,
    /// CSV: the field delimiter, one ASCII character (default `,`).
    pub delimiter: u8,
    /// Lines and CSV: physical lines skipped at the start of each file.
    pub ignore_start_lines: usize,
    /// Lines and CSV: physical lines dropped at the end of each file.
    pub ignore_end_lines: usize,
    /// Read the input again after this pause, forever (`interval`); `None`: read once and end.
    pub interval: Option<Duration>,
    /// Pause between rows (`sendInterval`); `None`: send as fast as the rule takes them.
    pub send_interval: Option<Duration>,
    /// How every file is compressed (`decompression`).
    pub decompression: Compression,
    /// What happens to a file after it was read (`actionAfterRead`, `moveTo`).
    pub after_read: AfterRead,
    /// Read a directory's files at the same time (`parallel`), up to
    /// [`super::source::PARALLEL_READERS`] at once; rows of different files interleave.
    pub parallel: bool,
    /// In a cluster, the part of every file this process reads (`split.rs`); set by the
    /// engine for inputs [`super::unsplittable`] accepts, never by a property. `None`: all.
    pub share: Option<super::Share>,
    /// In a cluster, how this process agrees its listing with the leader's (`listing.rs`); set
    /// by the engine with `share`, never by a property.
    pub agree: Option<super::listing::AgreeListing>,
    /// The listing agreed (the leader's files and lengths): read instead of listing the path.
    pub agreed: Option<std::sync::Arc<super::listing::Agreed>>,
}

impl FileSourceConfig {
    /// Validates the stream's DATASOURCE and the profile's properties, for a JSON stream.
    pub fn parse(datasource: &str, props: &Map<String, Value>) -> Result<Self, ConnectorError> {
        Self::parse_for_format(datasource, props, "json")
    }

    /// Validates the stream's DATASOURCE and the profile's properties for a stream whose
    /// `FORMAT` is `format` (empty reads as `json`).
    ///
    /// A format other than JSON reads every file as lines, one message per line decoded in
    /// that format (eKuiper's `lines` file type; unset `fileType` means lines then, whatever
    /// the extension). `json` and `csv` files are read into JSON rows, so `fileType` json or
    /// csv with such a format is refused, as are the csv properties `hasHeader` (true),
    /// `columns` and `delimiter`, which a lines file cannot honour.
    pub fn parse_for_format(
        datasource: &str,
        props: &Map<String, Value>,
        format: &str,
    ) -> Result<Self, ConnectorError> {
        let p = Props::new(CONNECTOR, props);
        p.check_file_keys();
        let decompression = Compression::parse(&p, "decompression", FILE_COMPRESSIONS)?;
        let after_read = p.after_read()?;
        let base = p.string("path")?.map(str::trim).unwrap_or("");
        let datasource = datasource.trim();
        let path = match (base, datasource) {
            ("", "") => {
                return Err(config_error(
                    "DATASOURCE (the file name) is required".into(),
                ));
            }
            (base, "") => PathBuf::from(base),
            (base, ds) => Path::new(base).join(ds),
        };
        let file_type = match p.get("filetype") {
            None => None,
            Some((_, Value::String(s))) if s.trim().is_empty() => None,
            Some((name, Value::String(s))) => Some(FileType::parse(s).ok_or_else(|| {
                config_error(format!(
                    "\"{name}\" must be json, lines or csv, got \"{s}\""
                ))
            })?),
            Some((name, other)) => {
                return Err(config_error(format!(
                    "\"{name}\" must be json, lines or csv, got {other}"
                )));
            }
        };
        let file_type = match format.trim().to_ascii_lowercase().as_str() {
            "" | "json" => file_type,
            other => Some(lines_for_format(&p, file_type, other)?),
        };
        let columns = p.columns()?;
        let has_header = p.boolean("hasheader")?.unwrap_or(columns.is_none());
        let delimiter = match p.string("delimiter")? {
            None | Some("") => b',',
            Some(d) if d == "\\t" || d.eq_ignore_ascii_case("tab") => b'\t',
            Some(d) if d.len() == 1 && d.is_ascii() && !matches!(d, "\"" | "\n" | "\r") => {
                d.as_bytes()[0]
            }
            Some(d) => {
                return Err(config_error(format!(
                    "\"delimiter\" must be one ASCII character other than a quote or newline, \
                     got \"{d}\""
                )));
            }
        };
        let ignore_start_lines = p.count("ignorestartlines")?;
        let ignore_end_lines = p.count("ignoreendlines")?;
        if file_type == Some(FileType::Json) && ignore_start_lines + ignore_end_lines > 0 {
            tracing::warn!(
                "file source: ignoreStartLines/ignoreEndLines apply to lines and csv files only;                  ignored for fileType json"
            );
        }
        Ok(FileSourceConfig {
            path,
            file_type,
            has_header,
            columns,
            delimiter,
            ignore_start_lines,
            ignore_end_lines,
            interval: p.duration("interval")?,
            send_interval: p.duration("sendinterval")?,
            decompression,
            after_read,
            parallel: p.boolean("parallel")?.unwrap_or(false),
            share: None,
            agree: None,
            agreed: None,
        })
    }

    /// The file type to read `file` with: `fileType` when set, else its extension's (the one
    /// before the compression's, so `a.jsonl.gz` reads as lines).
    pub fn file_type_for(&self, file: &Path) -> FileType {
        self.file_type.unwrap_or_else(|| {
            let compressed = file.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                self.decompression
                    .extensions()
                    .iter()
                    .any(|c| e.eq_ignore_ascii_case(c))
            });
            match compressed {
                true => FileType::from_extension(&file.with_extension("")),
                false => FileType::from_extension(file),
            }
        })
    }
}

/// The file type of a stream whose format is not JSON: lines. `fileType` json or csv, and the
/// csv properties, are refused naming them: each would turn a line into a JSON row the
/// stream's decoder cannot read.
fn lines_for_format(
    p: &Props<'_>,
    file_type: Option<FileType>,
    format: &str,
) -> Result<FileType, ConnectorError> {
    if let Some(t @ (FileType::Json | FileType::Csv)) = file_type {
        let (name, _) = p.get("filetype").expect("fileType was read");
        let t = if t == FileType::Json { "json" } else { "csv" };
        return Err(config_error(format!(
            "\"{name}\": {t} cannot be read by a stream in FORMAT \"{format}\": {t} files are \
             read into JSON rows; use fileType lines (one {format} message per line) or \
             FORMAT \"json\""
        )));
    }
    if let Some((name, _)) = p.get("hasheader")
        && p.boolean("hasheader")? == Some(true)
    {
        return Err(config_error(format!(
            "\"{name}\" is a csv file property; a stream in FORMAT \"{format}\" reads its file as \
             lines, where a header line is a message like any other: skip it with \
             \"ignoreStartLines\": 1"
        )));
    }
    if let Some((name, _)) = p.get("columns") {
        return Err(config_error(format!(
            "\"{name}\" is a csv file property; in a stream in FORMAT \"{format}\" the \
             stream's columns name the fields"
        )));
    }
    if let Some((name, _)) = p.get("delimiter") {
        return Err(config_error(format!(
            "\"{name}\" is a csv file property; a stream in FORMAT \"{format}\" takes the \
             stream's own DELIMITER"
        )));
    }
    Ok(FileType::Lines)
}

fn config_error(reason: String) -> ConnectorError {
    ConnectorError::Config {
        connector: CONNECTOR,
        reason,
    }
}

/// The file source's own property readers.
impl Props<'_> {
    /// Warns about keys this connector neither reads nor leaves to the runtime.
    fn check_file_keys(&self) {
        self.check_spec("file source", crate::spec::source_spec(CONNECTOR));
    }

    /// `actionAfterRead` (0 keep, 1 delete, 2 move) with `moveTo`, required for 2.
    fn after_read(&self) -> Result<AfterRead, ConnectorError> {
        let action = match self.get("actionafterread") {
            None => 0,
            Some((name, value)) => match value {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            }
            .filter(|a| *a <= 2)
            .ok_or_else(|| {
                config_error(format!(
                    "\"{name}\" must be 0 (keep), 1 (delete) or 2 (move to moveTo), got {value}"
                ))
            })?,
        };
        let move_to = self.string("moveto")?.map(str::trim).unwrap_or("");
        match (action, move_to) {
            (0, _) => Ok(AfterRead::Keep),
            (1, _) => Ok(AfterRead::Delete),
            (_, "") => Err(config_error(
                "actionAfterRead 2 moves each file read: \"moveTo\" (a directory) is required"
                    .into(),
            )),
            (_, dir) => Ok(AfterRead::MoveTo(PathBuf::from(dir))),
        }
    }

    /// A non-negative integer, 0 when absent.
    fn count(&self, key: &str) -> Result<usize, ConnectorError> {
        let Some((name, value)) = self.get(key) else {
            return Ok(0);
        };
        let n = match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        n.and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
            config_error(format!(
                "\"{name}\" must be a non-negative integer, got {value}"
            ))
        })
    }

    /// A duration: a number of milliseconds, or a string like `"500ms"`, `"10s"`, `"1m30s"`
    /// ([`quiver_compiler::duration`]'s grammar; a bare `"250"` is milliseconds too).
    /// Zero counts as absent (eKuiper: 0 means "read once" / "no pause").
    /// `columns`: a list of names, or one comma-separated string.
    fn columns(&self) -> Result<Option<Vec<String>>, ConnectorError> {
        let Some((name, value)) = self.get("columns") else {
            return Ok(None);
        };
        let cols: Vec<String> = match value {
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.trim().to_string()),
                    other => Err(config_error(format!(
                        "\"{name}\" must list column names as strings, got {other}"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Value::String(s) => s.split(',').map(|c| c.trim().to_string()).collect(),
            other => {
                return Err(config_error(format!(
                    "\"{name}\" must be a list of column names, got {other}"
                )));
            }
        };
        if cols.iter().all(String::is_empty) {
            return Ok(None);
        }
        if let Some(i) = cols.iter().position(String::is_empty) {
            return Err(config_error(format!(
                "\"{name}\": column {} has an empty name",
                i + 1
            )));
        }
        Ok(Some(cols))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(ds: &str, props: Value) -> Result<FileSourceConfig, ConnectorError> {
        FileSourceConfig::parse(ds, props.as_object().expect("object"))
    }

    #[test]
    fn defaults_and_path_joining() {
        let c = parse("in.jsonl", json!({})).unwrap();
        assert_eq!(c.path, PathBuf::from("in.jsonl"));
        assert_eq!(c.file_type, None);
        assert_eq!(c.file_type_for(&c.path), FileType::Lines);
        assert!(c.has_header);
        assert_eq!(c.delimiter, b',');
        let c = parse("in.json", json!({"path": "data", "fileType": "CSV"})).unwrap();
        assert_eq!(c.path, PathBuf::from("data/in.json"));
        assert_eq!(c.file_type_for(&c.path), FileType::Csv);
        let c = parse("/abs/in.json", json!({"path": "data"})).unwrap();
        assert_eq!(c.path, PathBuf::from("/abs/in.json"));
    }

    #[test]
    fn csv_options() {
        let c = parse(
            "x.csv",
            json!({"columns": ["a", "b"], "delimiter": ";", "ignoreStartLines": "2",
                   "ignoreEndLines": 1, "interval": "10s", "sendInterval": 5}),
        )
        .unwrap();
        assert_eq!(c.columns, Some(vec!["a".to_string(), "b".to_string()]));
        assert!(!c.has_header, "columns turn the header off unless asked");
        assert_eq!(c.delimiter, b';');
        assert_eq!((c.ignore_start_lines, c.ignore_end_lines), (2, 1));
        assert_eq!(c.interval, Some(Duration::from_secs(10)));
        assert_eq!(c.send_interval, Some(Duration::from_millis(5)));
    }

    #[test]
    fn intervals_take_the_one_duration_grammar() {
        for (given, ms) in [
            (json!(250), 250),
            (json!("250"), 250),
            (json!("10 s"), 10_000),
            (json!("1m30s"), 90_000),
            (json!("1.5s"), 1_500),
        ] {
            let c = parse("x", json!({ "interval": given })).unwrap();
            assert_eq!(c.interval, Some(Duration::from_millis(ms)), "{given}");
        }
        let c = parse("x", json!({"interval": "0s"})).unwrap();
        assert_eq!(c.interval, None, "zero means read once");
        assert!(parse("x", json!({"interval": "-1s"})).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        for props in [
            json!({"fileType": "parquet"}),
            json!({"delimiter": "::"}),
            json!({"hasHeader": "maybe"}),
            json!({"ignoreStartLines": -1}),
            json!({"interval": "soon"}),
            json!({"decompression": "lz4"}),
            json!({"actionAfterRead": 3}),
            json!({"actionAfterRead": 2}),
            json!({"parallel": "sometimes"}),
            json!({"columns": ["a", ""]}),
        ] {
            assert!(parse("x", props.clone()).is_err(), "{props} accepted");
        }
        assert!(parse("", json!({})).is_err());
    }

    #[test]
    fn another_format_reads_every_file_as_lines() {
        let lines = |props: Value, format: &str| {
            FileSourceConfig::parse_for_format("x.csv", props.as_object().unwrap(), format)
        };
        let c = lines(json!({}), "delimited").unwrap();
        assert_eq!(
            c.file_type_for(&c.path),
            FileType::Lines,
            "not csv by extension"
        );
        let c = lines(json!({"fileType": "lines", "hasHeader": false}), "binary").unwrap();
        assert_eq!(c.file_type_for(&c.path), FileType::Lines);
        let c = lines(json!({}), "JSON").unwrap();
        assert_eq!(
            c.file_type_for(&c.path),
            FileType::Csv,
            "json keeps the extension"
        );
        for (props, named) in [
            (json!({"fileType": "csv"}), "\"fileType\": csv"),
            (json!({"filetype": "json"}), "\"filetype\": json"),
            (json!({"hasHeader": "true"}), "\"hasHeader\""),
            (json!({"columns": ["a"]}), "\"columns\""),
            (json!({"delimiter": ";"}), "\"delimiter\""),
        ] {
            let e = lines(props.clone(), "delimited").unwrap_err().to_string();
            assert!(e.contains(named), "{props}: {e}");
            assert!(e.contains("FORMAT \"delimited\""), "{props}: {e}");
        }
    }

    #[test]
    fn after_read_actions_and_decompression() {
        let c = parse("d", json!({})).unwrap();
        assert_eq!(
            (c.after_read, c.decompression, c.parallel),
            (AfterRead::Keep, Compression::None, false)
        );
        let c = parse("d", json!({"actionAfterRead": "1", "parallel": true})).unwrap();
        assert_eq!((c.after_read, c.parallel), (AfterRead::Delete, true));
        let c = parse("d", json!({"actionAfterRead": 2, "moveTo": "/tmp/done"})).unwrap();
        assert_eq!(c.after_read, AfterRead::MoveTo(PathBuf::from("/tmp/done")));
        let c = parse("d", json!({"decompression": "gzip"})).unwrap();
        assert_eq!(c.file_type_for(Path::new("a.jsonl.gz")), FileType::Lines);
        assert_eq!(c.file_type_for(Path::new("a.csv.gzip")), FileType::Csv);
        assert_eq!(c.file_type_for(Path::new("a.gz")), FileType::Json);
        let c = parse("d", json!({"decompression": "zstd"})).unwrap();
        assert_eq!(c.file_type_for(Path::new("a.jsonl.zst")), FileType::Lines);
    }
}
