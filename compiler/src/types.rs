//! eKuiper's schema types and their Arrow representation.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, TimeUnit};

/// A column type in a `CREATE STREAM` schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// `BIGINT`: 64-bit signed integer.
    Bigint,
    /// `FLOAT`: 64-bit float.
    Float,
    /// `STRING`: UTF-8 text.
    String,
    /// `DATETIME`: milliseconds since the epoch, UTC.
    Datetime,
    /// `BOOLEAN`.
    Boolean,
    /// `BYTEA`: raw bytes.
    Bytea,
    /// `ARRAY(t)`.
    Array(Box<FieldType>),
    /// `STRUCT(name t, ...)`.
    Struct(Vec<(String, FieldType)>),
}

impl FieldType {
    /// The Arrow type a column of this type is stored as.
    pub fn to_arrow(&self) -> DataType {
        match self {
            FieldType::Bigint => DataType::Int64,
            FieldType::Float => DataType::Float64,
            FieldType::String => DataType::Utf8,
            FieldType::Datetime => DataType::Timestamp(TimeUnit::Millisecond, None),
            FieldType::Boolean => DataType::Boolean,
            FieldType::Bytea => DataType::Binary,
            FieldType::Array(t) => DataType::List(Arc::new(Field::new("item", t.to_arrow(), true))),
            FieldType::Struct(fields) => DataType::Struct(
                fields
                    .iter()
                    .map(|(n, t)| Field::new(n, t.to_arrow(), true))
                    .collect::<Fields>(),
            ),
        }
    }

    /// Parses a simple type keyword (not ARRAY/STRUCT), case-insensitively.
    pub fn simple(word: &str) -> Option<FieldType> {
        Some(match word.to_ascii_uppercase().as_str() {
            "BIGINT" => FieldType::Bigint,
            "FLOAT" => FieldType::Float,
            "STRING" => FieldType::String,
            "DATETIME" => FieldType::Datetime,
            "BOOLEAN" => FieldType::Boolean,
            "BYTEA" => FieldType::Bytea,
            _ => return None,
        })
    }

    /// eKuiper's lowercase type name as shown by `DESCRIBE` and the REST API.
    pub fn ekuiper_name(&self) -> &'static str {
        match self {
            FieldType::Bigint => "bigint",
            FieldType::Float => "float",
            FieldType::String => "string",
            FieldType::Datetime => "datetime",
            FieldType::Boolean => "boolean",
            FieldType::Bytea => "bytea",
            FieldType::Array(_) => "array",
            FieldType::Struct(_) => "struct",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldType::Array(t) => write!(f, "ARRAY({t})"),
            FieldType::Struct(fields) => {
                f.write_str("STRUCT(")?;
                for (i, (n, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{n} {t}")?;
                }
                f.write_str(")")
            }
            other => f.write_str(&other.ekuiper_name().to_ascii_uppercase()),
        }
    }
}

/// The plan-time type of an expression: known from a schema, or only known at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlType {
    /// A concrete Arrow type.
    Known(DataType),
    /// Schemaless data: the type is whatever each batch carries.
    Any,
}

impl SqlType {
    /// True when the type is known to be numeric (integer or float).
    pub fn is_numeric(&self) -> bool {
        matches!(self, SqlType::Known(t) if is_numeric(t))
    }

    /// The known Arrow type, if any.
    pub fn known(&self) -> Option<&DataType> {
        match self {
            SqlType::Known(t) => Some(t),
            SqlType::Any => None,
        }
    }

    /// eKuiper's name for the type, for error messages.
    pub fn describe(&self) -> String {
        match self {
            SqlType::Known(t) => type_name(t).to_string(),
            SqlType::Any => "any".to_string(),
        }
    }
}

/// True for the Arrow types that represent eKuiper numbers.
pub fn is_numeric(t: &DataType) -> bool {
    t.is_integer() || t.is_floating()
}

/// eKuiper's name for an Arrow type, used in messages (`bigint`, `float`, `string`, ...).
pub fn type_name(t: &DataType) -> &'static str {
    match t {
        DataType::Null => "null",
        DataType::Boolean => "boolean",
        t if t.is_integer() => "bigint",
        t if t.is_floating() => "float",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => "datetime",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea",
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => "array",
        DataType::Struct(_) | DataType::Map(..) => "struct",
        _ => "unknown",
    }
}
