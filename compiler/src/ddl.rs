//! eKuiper's stream and table statements: `CREATE STREAM|TABLE`, `DROP`, `DESCRIBE`, `SHOW`.
//!
//! sqlparser has no `CREATE STREAM` and cannot read `STRUCT(a BIGINT)` column types, so this is
//! a small recursive-descent parser over sqlparser's tokenizer (same tokens, same positions).

use std::collections::BTreeMap;

use arrow::datatypes::{Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::dialect::EkuiperDialect;
use crate::error::{CompileError, Pos, Result, did_you_mean};
use crate::limits::MAX_TYPE_NESTING;
use crate::types::FieldType;

/// Whether a definition is a stream or a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    /// An unbounded stream of events.
    Stream,
    /// A table (joins come with the tables issue; parsed now so the catalog can hold it).
    Table,
}

impl StreamKind {
    /// `STREAM` or `TABLE`.
    pub fn keyword(&self) -> &'static str {
        match self {
            StreamKind::Stream => "STREAM",
            StreamKind::Table => "TABLE",
        }
    }
}

/// One column of a stream schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name as written.
    pub name: String,
    /// Its type.
    pub ty: FieldType,
}

/// The `WITH (...)` options of a stream, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamOptions {
    /// `DATASOURCE`: the topic, path or address the connector reads.
    pub datasource: String,
    /// `TYPE`: the connector type, `mqtt` by default.
    pub source_type: String,
    /// `FORMAT`: the payload format, `json` by default.
    pub format: String,
    /// `KEY`: reserved for streams, the primary key for tables.
    pub key: Option<String>,
    /// `CONF_KEY`: the connection profile to use.
    pub conf_key: Option<String>,
    /// `SHARED`: one source instance feeds all rules of this stream.
    pub shared: bool,
    /// `TIMESTAMP`: the field holding the event time.
    pub timestamp: Option<String>,
    /// `TIMESTAMP_FORMAT`: the format of string timestamps.
    pub timestamp_format: Option<String>,
    /// Every option as written (upper-cased keys), for `DESCRIBE` and round trips.
    pub raw: BTreeMap<String, String>,
}

/// A stream or table definition.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamDef {
    /// Stream or table.
    pub kind: StreamKind,
    /// Its name.
    pub name: String,
    /// Its columns; `None` for a schemaless stream (`()`).
    pub columns: Option<Vec<Column>>,
    /// Its validated options.
    pub options: StreamOptions,
    /// The statement text it was created from.
    pub sql: String,
}

impl StreamDef {
    /// The Arrow schema of a stream with columns, `None` when schemaless.
    pub fn arrow_schema(&self) -> Option<SchemaRef> {
        self.columns.as_ref().map(|cols| {
            std::sync::Arc::new(Schema::new(
                cols.iter()
                    .map(|c| Field::new(&c.name, c.ty.to_arrow(), true))
                    .collect::<Vec<_>>(),
            ))
        })
    }
}

/// A parsed statement of the stream/table language, or a query left for the rule compiler.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `CREATE STREAM|TABLE`.
    Create(Box<StreamDef>),
    /// `DROP STREAM|TABLE name`.
    Drop(StreamKind, String),
    /// `DESCRIBE STREAM|TABLE name` (also `EXPLAIN STREAM|TABLE name`).
    Describe(StreamKind, String),
    /// `SHOW STREAMS|TABLES`.
    Show(StreamKind),
    /// A `SELECT` (compiled by [`crate::compile_rule`]).
    Select(String),
}

/// The option keys eKuiper's parser accepts in `WITH (...)`.
const KNOWN_OPTIONS: &[&str] = &[
    "DATASOURCE",
    "TYPE",
    "FORMAT",
    "SCHEMAID",
    "DELIMITER",
    "KEY",
    "CONF_KEY",
    "EXTRA",
    "SHARED",
    "STRICT_VALIDATION",
    "TIMESTAMP",
    "TIMESTAMP_FORMAT",
    "RETAIN_SIZE",
    "KIND",
    "VERSION",
    "TEMP",
];

/// Payload formats this build decodes (`connectors/src/codec/decoder.rs` picks the decoder);
/// byte sinks write the same ones (`connectors/src/codec/sink_format.rs`).
pub const SUPPORTED_FORMATS: &[&str] = &[
    "json",
    "delimited",
    "binary",
    "urlencoded",
    "protobuf",
    "custom",
];

/// The formats whose messages a registered schema describes (`SCHEMAID="schema.Message"`).
const SCHEMA_FORMATS: &[&str] = &["protobuf", "custom"];

/// Parses one statement.
pub fn parse_statement(sql: &str) -> Result<Statement> {
    crate::limits::check_sql_size(sql)?;
    let mut p = DdlParser::new(sql)?;
    let first = p.peek_word();
    match first.as_deref() {
        Some("CREATE") => {
            p.next();
            let kind = p.kind_keyword(false)?;
            let def = p.create(kind, sql)?;
            Ok(Statement::Create(Box::new(def)))
        }
        Some("DROP") => {
            p.next();
            let kind = p.kind_keyword(false)?;
            let name = p.ident("a name")?.0;
            p.end()?;
            Ok(Statement::Drop(kind, name))
        }
        Some("DESCRIBE") | Some("EXPLAIN") => {
            p.next();
            let kind = p.kind_keyword(false)?;
            let name = p.ident("a name")?.0;
            p.end()?;
            Ok(Statement::Describe(kind, name))
        }
        Some("SHOW") => {
            p.next();
            let kind = p.kind_keyword(true)?;
            p.end()?;
            Ok(Statement::Show(kind))
        }
        Some("SELECT") => Ok(Statement::Select(sql.to_string())),
        _ => Err(p.unexpected("CREATE, DROP, DESCRIBE, SHOW or SELECT")),
    }
}

/// Parses a `CREATE STREAM|TABLE` statement and nothing else.
pub fn parse_create(sql: &str) -> Result<StreamDef> {
    match parse_statement(sql)? {
        Statement::Create(def) => Ok(*def),
        _ => Err(CompileError::at(
            "expected a CREATE STREAM or CREATE TABLE statement",
            Some(Pos { line: 1, column: 1 }),
        )),
    }
}

struct DdlParser {
    tokens: Vec<TokenWithSpan>,
    idx: usize,
}

impl DdlParser {
    fn new(sql: &str) -> Result<Self> {
        let dialect = EkuiperDialect;
        let tokens = Tokenizer::new(&dialect, sql)
            .tokenize_with_location()
            .map_err(|e| {
                CompileError::at(
                    format!("syntax error: {}", e.message),
                    Pos::from_location(e.location),
                )
            })?
            .into_iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .collect();
        Ok(DdlParser { tokens, idx: 0 })
    }

    fn peek(&self) -> &Token {
        self.tokens
            .get(self.idx)
            .map(|t| &t.token)
            .unwrap_or(&Token::EOF)
    }

    fn pos(&self) -> Option<Pos> {
        match self.tokens.get(self.idx) {
            Some(t) => Pos::from_location(t.span.start),
            None => self
                .tokens
                .last()
                .and_then(|t| Pos::from_location(t.span.end)),
        }
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        self.idx += 1;
        t
    }

    fn peek_word(&self) -> Option<String> {
        match self.peek() {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        }
    }

    fn unexpected(&self, expected: &str) -> CompileError {
        let found = match self.peek() {
            Token::EOF => "end of input".to_string(),
            t => format!("\"{t}\""),
        };
        CompileError::at(
            format!("syntax error: expected {expected}, found {found}"),
            self.pos(),
        )
    }

    fn expect(&mut self, tok: Token, what: &str) -> Result<()> {
        if *self.peek() == tok {
            self.idx += 1;
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    fn end(&mut self) -> Result<()> {
        if *self.peek() == Token::SemiColon {
            self.idx += 1;
        }
        match self.peek() {
            Token::EOF => Ok(()),
            _ => Err(self.unexpected("end of statement")),
        }
    }

    fn kind_keyword(&mut self, plural: bool) -> Result<StreamKind> {
        let kind = match (self.peek_word().as_deref(), plural) {
            (Some("STREAM"), false) | (Some("STREAMS"), true) => StreamKind::Stream,
            (Some("TABLE"), false) | (Some("TABLES"), true) => StreamKind::Table,
            _ => {
                return Err(self.unexpected(if plural {
                    "STREAMS or TABLES"
                } else {
                    "STREAM or TABLE"
                }));
            }
        };
        self.idx += 1;
        Ok(kind)
    }

    fn ident(&mut self, what: &str) -> Result<(String, Option<Pos>)> {
        let pos = self.pos();
        match self.peek().clone() {
            Token::Word(w) => {
                self.idx += 1;
                Ok((w.value, pos))
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn create(&mut self, kind: StreamKind, sql: &str) -> Result<StreamDef> {
        let (name, _) = self.ident("a stream name")?;
        self.expect(Token::LParen, "\"(\" and a column list")?;
        let mut columns = Vec::new();
        if *self.peek() != Token::RParen {
            loop {
                let (col, pos) = self.ident("a column name")?;
                if columns
                    .iter()
                    .any(|c: &Column| c.name.eq_ignore_ascii_case(&col))
                {
                    return Err(CompileError::at(format!("duplicate column \"{col}\""), pos));
                }
                let ty = self.field_type(1)?;
                if self.peek_word().as_deref() == Some("DEFAULT") {
                    // eKuiper applies defaults only under strict validation; accept and skip.
                    self.idx += 1;
                    self.next();
                }
                columns.push(Column { name: col, ty });
                if *self.peek() == Token::Comma {
                    self.idx += 1;
                } else {
                    break;
                }
            }
        }
        self.expect(Token::RParen, "\",\" or \")\"")?;
        let options = self.with_options()?;
        self.end()?;
        check_format(kind, &columns, &options.format)?;
        Ok(StreamDef {
            kind,
            name,
            columns: (!columns.is_empty()).then_some(columns),
            options,
            sql: sql.trim().trim_end_matches(';').to_string(),
        })
    }

    /// A column type; `depth` counts the `ARRAY(`/`STRUCT(` levels around it, so a type nested
    /// past [`MAX_TYPE_NESTING`] is an error, not a stack overflow.
    fn field_type(&mut self, depth: usize) -> Result<FieldType> {
        let pos = self.pos();
        if depth > MAX_TYPE_NESTING {
            return Err(CompileError::at(
                format!("column type nesting is above the limit of {MAX_TYPE_NESTING} levels"),
                pos,
            ));
        }
        let Some(word) = self.peek_word() else {
            return Err(self.unexpected("a column type"));
        };
        if let Some(t) = FieldType::simple(&word) {
            self.idx += 1;
            return Ok(t);
        }
        match word.as_str() {
            "ARRAY" => {
                self.idx += 1;
                self.expect(Token::LParen, "\"(\" after ARRAY")?;
                let inner = self.field_type(depth + 1)?;
                self.expect(Token::RParen, "\")\"")?;
                Ok(FieldType::Array(Box::new(inner)))
            }
            "STRUCT" => {
                self.idx += 1;
                self.expect(Token::LParen, "\"(\" after STRUCT")?;
                let mut fields = Vec::new();
                loop {
                    let (n, _) = self.ident("a struct field name")?;
                    let t = self.field_type(depth + 1)?;
                    fields.push((n, t));
                    if *self.peek() == Token::Comma {
                        self.idx += 1;
                    } else {
                        break;
                    }
                }
                self.expect(Token::RParen, "\",\" or \")\"")?;
                Ok(FieldType::Struct(fields))
            }
            other => Err(CompileError::at(
                format!(
                    "unknown column type \"{other}\"; expected BIGINT, FLOAT, STRING, DATETIME, BOOLEAN, BYTEA, ARRAY or STRUCT"
                ),
                pos,
            )),
        }
    }

    fn with_options(&mut self) -> Result<StreamOptions> {
        let mut raw = BTreeMap::new();
        let mut positions = BTreeMap::new();
        if self.peek_word().as_deref() == Some("WITH") {
            self.idx += 1;
            self.expect(Token::LParen, "\"(\" after WITH")?;
            loop {
                let (key, pos) = self.ident("an option name")?;
                let key = key.to_ascii_uppercase();
                if !KNOWN_OPTIONS.contains(&key.as_str()) {
                    return Err(
                        CompileError::at(format!("unknown stream option \"{key}\""), pos)
                            .with_hint(did_you_mean(&key, KNOWN_OPTIONS.iter().copied())),
                    );
                }
                self.expect(Token::Eq, "\"=\"")?;
                let value = match self.next() {
                    Token::DoubleQuotedString(s) | Token::SingleQuotedString(s) => s,
                    Token::Number(n, _) => n,
                    Token::Word(w) => w.value,
                    _ => {
                        self.idx -= 1;
                        return Err(self.unexpected("a quoted option value"));
                    }
                };
                if raw.insert(key.clone(), value).is_some() {
                    return Err(CompileError::at(
                        format!("duplicate stream option \"{key}\""),
                        pos,
                    ));
                }
                positions.insert(key, pos);
                if *self.peek() == Token::Comma {
                    self.idx += 1;
                } else {
                    break;
                }
            }
            self.expect(Token::RParen, "\",\" or \")\"")?;
        }
        let datasource = raw.get("DATASOURCE").cloned().unwrap_or_default();
        let source_type = raw
            .get("TYPE")
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_else(|| "mqtt".to_string());
        let format = raw
            .get("FORMAT")
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_else(|| "json".to_string());
        if !SUPPORTED_FORMATS.contains(&format.as_str()) {
            return Err(CompileError::at(
                format!(
                    "format \"{format}\" is unknown; supported: {}",
                    SUPPORTED_FORMATS.join(", ")
                ),
                positions.get("FORMAT").copied().flatten(),
            ));
        }
        let schema_at = positions.get("SCHEMAID").copied().flatten();
        let needs_schema = SCHEMA_FORMATS.contains(&format.as_str());
        match (needs_schema, raw.get("SCHEMAID")) {
            (true, None) => {
                return Err(CompileError::at(
                    format!("FORMAT=\"{format}\" needs SCHEMAID=\"schema.MessageName\""),
                    positions.get("FORMAT").copied().flatten(),
                ));
            }
            (true, Some(id))
                if id
                    .split_once('.')
                    .is_none_or(|(f, m)| f.is_empty() || m.is_empty()) =>
            {
                return Err(CompileError::at(
                    format!("SCHEMAID \"{id}\" must be \"schema.MessageName\""),
                    schema_at,
                ));
            }
            (true, _) | (false, None) => {}
            (false, Some(_)) => {
                return Err(CompileError::at(
                    format!(
                        "SCHEMAID applies to FORMAT=\"protobuf\" or \"custom\" only, not \"{format}\""
                    ),
                    schema_at,
                ));
            }
        }
        if let Some(d) = raw.get("DELIMITER") {
            let at = positions.get("DELIMITER").copied().flatten();
            if format != "delimited" {
                return Err(CompileError::at(
                    format!("DELIMITER applies to FORMAT=\"delimited\" only, not \"{format}\""),
                    at,
                ));
            }
            if d.is_empty() {
                return Err(CompileError::at("DELIMITER must not be empty", at));
            }
        }
        let shared = match raw.get("SHARED").map(|s| s.to_ascii_lowercase()) {
            None => false,
            Some(s) if s == "true" => true,
            Some(s) if s == "false" => false,
            Some(s) => {
                return Err(CompileError::at(
                    format!("SHARED must be \"true\" or \"false\", found \"{s}\""),
                    positions.get("SHARED").copied().flatten(),
                ));
            }
        };
        Ok(StreamOptions {
            datasource,
            source_type,
            format,
            key: raw.get("KEY").cloned(),
            conf_key: raw.get("CONF_KEY").cloned(),
            shared,
            timestamp: raw.get("TIMESTAMP").cloned(),
            timestamp_format: raw.get("TIMESTAMP_FORMAT").cloned(),
            raw,
        })
    }
}

/// What a payload format can fill: a table is read as JSON only (its rows are kept as JSON
/// text), a binary stream has the one column `self BYTEA` or none, and delimited and
/// urlencoded values are text, cast to scalar columns (ARRAY(STRING) for a repeated key).
fn check_format(kind: StreamKind, columns: &[Column], format: &str) -> Result<()> {
    // Protobuf and custom messages nest like JSON: any column type can be filled.
    if format == "json" || (SCHEMA_FORMATS.contains(&format) && kind == StreamKind::Stream) {
        return Ok(());
    }
    if kind == StreamKind::Table {
        return Err(CompileError::new(format!(
            "format \"{format}\" is not supported on tables yet; supported: json"
        )));
    }
    match format {
        "binary" => match columns {
            [] => Ok(()),
            [c] if c.name == "self" && c.ty == FieldType::Bytea => Ok(()),
            _ => Err(CompileError::new(
                "a binary stream has one column, \"self BYTEA\", or none (the payload is its only field)",
            )),
        },
        _ => match columns.iter().find(|c| match &c.ty {
            FieldType::Struct(_) => true,
            FieldType::Array(item) => **item != FieldType::String,
            _ => false,
        }) {
            Some(c) => Err(CompileError::new(format!(
                "column \"{}\" cannot be read from {format} payloads, which hold text fields; use a scalar type or ARRAY(STRING)",
                c.name
            ))),
            None => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_formats_and_what_they_can_fill() {
        let err = |sql: &str| parse_create(sql).unwrap_err().to_string();
        let def = parse_create(
            r#"CREATE STREAM s (a BIGINT, tags ARRAY(STRING)) WITH (FORMAT="DELIMITED", DELIMITER="|")"#,
        )
        .unwrap();
        assert_eq!(def.options.format, "delimited");
        parse_create(r#"CREATE STREAM s () WITH (FORMAT="binary")"#).unwrap();
        parse_create(r#"CREATE STREAM s (self BYTEA) WITH (FORMAT="binary")"#).unwrap();
        parse_create(r#"CREATE STREAM s () WITH (FORMAT="urlencoded")"#).unwrap();
        parse_create(r#"CREATE STREAM s () WITH (FORMAT="protobuf", SCHEMAID="demo.Book")"#)
            .unwrap();
        parse_create(
            r#"CREATE STREAM s (a STRUCT(b BIGINT), c ARRAY(FLOAT)) WITH (FORMAT="protobuf", SCHEMAID="demo.Book")"#,
        )
        .unwrap();
        assert!(
            err(r#"CREATE STREAM s () WITH (FORMAT="protobuf")"#)
                .starts_with("FORMAT=\"protobuf\" needs SCHEMAID=\"schema.MessageName\"")
        );
        assert!(
            err(r#"CREATE STREAM s () WITH (FORMAT="protobuf", SCHEMAID="demo")"#)
                .starts_with("SCHEMAID \"demo\" must be \"schema.MessageName\"")
        );
        assert!(
            err(r#"CREATE STREAM s () WITH (SCHEMAID="demo.Book")"#).starts_with(
                "SCHEMAID applies to FORMAT=\"protobuf\" or \"custom\" only, not \"json\""
            )
        );
        assert!(
            err(r#"CREATE STREAM s () WITH (FORMAT="custom")"#)
                .starts_with("FORMAT=\"custom\" needs SCHEMAID=\"schema.MessageName\"")
        );
        assert!(err(r#"CREATE STREAM s () WITH (FORMAT="xml")"#).contains("is unknown"));
        assert!(err(r#"CREATE STREAM s () WITH (DELIMITER=";")"#).contains("DELIMITER applies to"));
        assert!(
            err(r#"CREATE STREAM s () WITH (FORMAT="delimited", DELIMITER="")"#)
                .contains("must not be empty")
        );
        assert!(
            err(r#"CREATE STREAM s (img BYTEA) WITH (FORMAT="binary")"#).contains("self BYTEA")
        );
        assert!(
            err(r#"CREATE STREAM s (n ARRAY(BIGINT)) WITH (FORMAT="urlencoded")"#)
                .contains("column \"n\" cannot be read from urlencoded payloads")
        );
        assert!(
            err(r#"CREATE TABLE t (a BIGINT) WITH (FORMAT="delimited")"#)
                .contains("not supported on tables yet")
        );
    }

    #[test]
    fn parses_full_create_stream() {
        let def = parse_create(
            r#"CREATE STREAM demo (device STRING, temperature FLOAT, tags ARRAY(STRING),
               loc STRUCT(lat FLOAT, lng FLOAT)) WITH (DATASOURCE="demo/#", TYPE="memory",
               FORMAT="JSON", KEY="device", CONF_KEY="default", SHARED="true", TIMESTAMP="ts",
               TIMESTAMP_FORMAT="YYYY-MM-dd")"#,
        )
        .unwrap();
        assert_eq!(def.name, "demo");
        let cols = def.columns.unwrap();
        assert_eq!(cols.len(), 4);
        assert_eq!(
            cols[3].ty,
            FieldType::Struct(vec![
                ("lat".into(), FieldType::Float),
                ("lng".into(), FieldType::Float)
            ])
        );
        assert_eq!(def.options.datasource, "demo/#");
        assert_eq!(def.options.source_type, "memory");
        assert!(def.options.shared);
        assert_eq!(def.options.timestamp.as_deref(), Some("ts"));
    }

    #[test]
    fn empty_columns_mean_schemaless() {
        let def = parse_create(r#"CREATE STREAM s () WITH (DATASOURCE="t")"#).unwrap();
        assert!(def.columns.is_none());
        assert_eq!(def.options.source_type, "mqtt");
    }

    #[test]
    fn unknown_option_is_an_error_with_position() {
        let err =
            parse_create(r#"CREATE STREAM s () WITH (DATASOURCE="t", FROMAT="json")"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown stream option \"FROMAT\" at 1:42; did you mean \"FORMAT\"?"
        );
    }

    #[test]
    fn other_statements() {
        assert_eq!(
            parse_statement("DROP STREAM demo").unwrap(),
            Statement::Drop(StreamKind::Stream, "demo".into())
        );
        assert_eq!(
            parse_statement("describe stream demo").unwrap(),
            Statement::Describe(StreamKind::Stream, "demo".into())
        );
        assert_eq!(
            parse_statement("SHOW STREAMS").unwrap(),
            Statement::Show(StreamKind::Stream)
        );
        assert!(parse_statement("SHOW STREAM").is_err());
    }

    /// `ARRAY(` nested `depth` times around BIGINT.
    fn nested_array(depth: usize) -> String {
        format!(
            "CREATE STREAM s (a {}BIGINT{}) WITH (DATASOURCE=\"t\")",
            "ARRAY(".repeat(depth),
            ")".repeat(depth)
        )
    }

    #[test]
    fn type_nesting_is_bounded() {
        // Issue 21: tens of thousands of `ARRAY(` overflowed the stack.
        let err = parse_create(&nested_array(5_000)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "column type nesting is above the limit of 32 levels at 1:212"
        );
        let mut ok = parse_create(&nested_array(MAX_TYPE_NESTING - 1))
            .unwrap()
            .columns
            .unwrap()
            .remove(0)
            .ty;
        let mut levels = 0;
        while let FieldType::Array(inner) = ok {
            ok = *inner;
            levels += 1;
        }
        assert_eq!(levels, MAX_TYPE_NESTING - 1);
        assert!(parse_create(&nested_array(MAX_TYPE_NESTING)).is_err());
        let structs = format!(
            "CREATE STREAM s (a {}BIGINT{})",
            "STRUCT(x ".repeat(40),
            ")".repeat(40)
        );
        assert!(
            parse_create(&structs)
                .unwrap_err()
                .reason
                .contains("limit of 32")
        );
    }

    #[test]
    fn statement_text_is_bounded() {
        let long = format!(
            "CREATE STREAM s (a BIGINT) WITH (DATASOURCE=\"{}\")",
            "x".repeat(crate::limits::MAX_SQL_BYTES)
        );
        assert_eq!(
            parse_statement(&long).unwrap_err().to_string(),
            format!(
                "SQL text of {} bytes is above the limit of 65536",
                long.len()
            )
        );
    }
}
