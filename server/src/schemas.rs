//! The schema registry (eKuiper's `/schemas/{type}`): named schemas stored as files under
//! `<data-dir>/schemas/<type>/`, one `<name>.proto` per `protobuf` schema and one `<name>.so`
//! per `custom` schema (a converter library, loaded and checked before it is stored and again
//! at start, then registered with the codec's custom formats). The files are the registry: a
//! restart lists what the folder holds, as eKuiper does.
//!
//! Bounds: names are letters, digits, `_` and `-` (so a name is always one file in the
//! folder), [`MAX_SCHEMAS`] per type, [`quiver_connectors::codec::protobuf::MAX_SCHEMA_BYTES`]
//! per `.proto` and [`MAX_SO_BYTES`] per `.so`. A protobuf schema is parsed, and a custom one
//! loaded, before it is stored.
//! Writes go to a temporary file renamed over the old one, under one lock per registry; the
//! lock is never held across a download.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use quiver_connectors::codec::custom::{self, ConverterLibrary};
use quiver_connectors::codec::protobuf::{self, MAX_SCHEMA_BYTES, valid_schema_name};
use serde::Serialize;

use crate::plugins::converter::ConverterPlugin;

/// The folder (under `custom/`) of the copies of custom libraries this run loaded.
const LOADED: &str = ".loaded";

/// The most schemas of one type.
pub const MAX_SCHEMAS: usize = 1000;

/// The largest `custom` schema file (a converter library): a plugin package's limit, since a
/// debug build of one runs to tens of MB.
pub const MAX_SO_BYTES: usize = 256 << 20;

/// A schema type, as the path names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaType {
    /// `.proto` text.
    Protobuf,
    /// A converter plugin's `.so`.
    Custom,
}

impl SchemaType {
    /// The type a path segment names.
    pub fn parse(segment: &str) -> Result<SchemaType, SchemaError> {
        match segment {
            "protobuf" => Ok(SchemaType::Protobuf),
            "custom" => Ok(SchemaType::Custom),
            other => Err(SchemaError::NotFound(format!(
                "unknown schema type \"{other}\"; use protobuf or custom"
            ))),
        }
    }

    /// The path segment and folder name.
    pub fn name(self) -> &'static str {
        match self {
            SchemaType::Protobuf => "protobuf",
            SchemaType::Custom => "custom",
        }
    }

    fn ext(self) -> &'static str {
        match self {
            SchemaType::Protobuf => "proto",
            SchemaType::Custom => "so",
        }
    }
}

/// What went wrong: the plugin manager's four outcomes (400 invalid, 404 not found, 409
/// conflict or in use, 500 the folder failed), mapped to statuses in one place.
pub type SchemaError = crate::plugins::PluginError;

/// One schema as `GET /schemas/{type}/{name}` shows it (eKuiper's `Info`).
#[derive(Debug, Serialize)]
pub struct SchemaInfo {
    /// `protobuf` or `custom`.
    #[serde(rename = "type")]
    pub schema_type: SchemaType,
    /// Its name.
    pub name: String,
    /// The `.proto` text (empty for `custom`).
    pub content: String,
    /// Where the schema file is stored (empty for `custom`).
    pub file: String,
    /// Where the converter plugin file is stored (`custom` only).
    #[serde(rename = "soFile", skip_serializing_if = "String::is_empty")]
    pub so_file: String,
}

/// What a create or update stores.
#[derive(Debug)]
pub enum SchemaBody {
    /// `.proto` text.
    Proto(String),
    /// A converter plugin's bytes.
    So(Vec<u8>),
}

/// The registry over `<data-dir>/schemas`.
#[derive(Debug)]
pub struct SchemaRegistry {
    dir: PathBuf,
    /// Serialises writes (count check, write, rename).
    write: Mutex<()>,
}

impl SchemaRegistry {
    /// The registry in `<data_dir>/schemas`, creating its folders; names the protobuf folder
    /// to the decoders and encoders.
    pub fn open(data_dir: &Path) -> Result<SchemaRegistry, SchemaError> {
        let dir = data_dir.join("schemas");
        for t in [SchemaType::Protobuf, SchemaType::Custom] {
            std::fs::create_dir_all(dir.join(t.name()))
                .map_err(|e| SchemaError::Io(format!("creating {}: {e}", dir.display())))?;
        }
        protobuf::set_schema_dir(dir.join(SchemaType::Protobuf.name()));
        // Copies loaded by an earlier run are no longer mapped by anyone.
        let loaded = dir.join(SchemaType::Custom.name()).join(LOADED);
        let _ = std::fs::remove_dir_all(&loaded);
        let registry = SchemaRegistry {
            dir,
            write: Mutex::new(()),
        };
        for name in registry.list(SchemaType::Custom)? {
            let stored = registry.path(SchemaType::Custom, &name);
            match std::fs::read(&stored)
                .map_err(|e| SchemaError::Io(format!("reading {}: {e}", stored.display())))
                .and_then(|bytes| registry.load_custom(&name, &bytes))
            {
                Ok(library) => custom::register(&name, library),
                // A library this build cannot load leaves its streams refused with the reason
                // when they start, not the whole server down.
                Err(e) => tracing::error!("custom schema \"{name}\" not loaded: {e}"),
            }
        }
        Ok(registry)
    }

    /// Loads `bytes` as custom schema `name`'s converter library and checks it, from a copy
    /// of its own: a loaded library stays mapped for the life of the process, and the dynamic
    /// loader would hand back the first library loaded from a path for any later file there.
    pub fn load_custom(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<Arc<dyn ConverterLibrary>, SchemaError> {
        check_name(name)?;
        let dir = self.dir.join(SchemaType::Custom.name()).join(LOADED);
        std::fs::create_dir_all(&dir)
            .map_err(|e| SchemaError::Io(format!("creating {}: {e}", dir.display())))?;
        static LOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = LOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let copy = dir.join(format!("{name}-{n}.so"));
        std::fs::write(&copy, bytes)
            .map_err(|e| SchemaError::Io(format!("writing {}: {e}", copy.display())))?;
        match ConverterPlugin::load(&copy, name) {
            Ok(library) => Ok(Arc::new(library)),
            Err(e) => {
                let _ = std::fs::remove_file(&copy);
                Err(SchemaError::Invalid(format!(
                    "soFile of schema custom.{name}: {e}"
                )))
            }
        }
    }

    fn path(&self, t: SchemaType, name: &str) -> PathBuf {
        self.dir.join(t.name()).join(format!("{name}.{}", t.ext()))
    }

    /// The names of `t`'s schemas, sorted.
    pub fn list(&self, t: SchemaType) -> Result<Vec<String>, SchemaError> {
        let folder = self.dir.join(t.name());
        let entries = std::fs::read_dir(&folder)
            .map_err(|e| SchemaError::Io(format!("reading {}: {e}", folder.display())))?;
        let suffix = format!(".{}", t.ext());
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|f| f.is_file()))
            .filter_map(|e| {
                let file = e.file_name().into_string().ok()?;
                let name = file.strip_suffix(&suffix)?;
                valid_schema_name(name).then(|| name.to_string())
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// One schema.
    pub fn get(&self, t: SchemaType, name: &str) -> Result<SchemaInfo, SchemaError> {
        check_name(name)?;
        let path = self.path(t, name);
        if !path.is_file() {
            return Err(not_found(t, name));
        }
        let shown = path.display().to_string();
        Ok(match t {
            SchemaType::Protobuf => SchemaInfo {
                schema_type: t,
                name: name.to_string(),
                content: std::fs::read_to_string(&path)
                    .map_err(|e| SchemaError::Io(format!("reading {shown}: {e}")))?,
                file: shown,
                so_file: String::new(),
            },
            SchemaType::Custom => SchemaInfo {
                schema_type: t,
                name: name.to_string(),
                content: String::new(),
                file: String::new(),
                so_file: shown,
            },
        })
    }

    /// True when the schema exists.
    pub fn exists(&self, t: SchemaType, name: &str) -> bool {
        valid_schema_name(name) && self.path(t, name).is_file()
    }

    /// Checks `body` as `t`'s schema `name` would be stored: the size, and for protobuf that it
    /// parses (imports resolve among the registry's files). Returns the parsed pool.
    pub fn check(
        &self,
        t: SchemaType,
        name: &str,
        body: &SchemaBody,
    ) -> Result<Option<prost_reflect::DescriptorPool>, SchemaError> {
        check_name(name)?;
        match (t, body) {
            (SchemaType::Protobuf, SchemaBody::Proto(text)) => {
                if text.len() > MAX_SCHEMA_BYTES {
                    return Err(SchemaError::Invalid(format!(
                        "schema content is above the limit of {MAX_SCHEMA_BYTES} bytes"
                    )));
                }
                protobuf::check_source(&self.dir.join(t.name()), name, text)
                    .map(Some)
                    .map_err(SchemaError::Invalid)
            }
            (SchemaType::Custom, SchemaBody::So(bytes)) => {
                if bytes.len() > MAX_SO_BYTES {
                    return Err(SchemaError::Invalid(format!(
                        "soFile is above the limit of {MAX_SO_BYTES} bytes"
                    )));
                }
                Ok(None)
            }
            _ => Err(SchemaError::Invalid(format!(
                "a {} schema takes {}",
                t.name(),
                match t {
                    SchemaType::Protobuf => "\"content\" or \"file\"",
                    SchemaType::Custom => "\"soFile\"",
                }
            ))),
        }
    }

    /// Stores a schema: `create` refuses an existing name, else one must exist. The bytes go to
    /// a temporary file first, outside the lock; the lock covers the checks and the rename.
    /// Blocking: handlers call it on a blocking thread.
    pub fn store(
        &self,
        t: SchemaType,
        name: &str,
        body: &SchemaBody,
        create: bool,
    ) -> Result<(), SchemaError> {
        check_name(name)?;
        let path = self.path(t, name);
        let bytes = match body {
            SchemaBody::Proto(text) => text.as_bytes(),
            SchemaBody::So(bytes) => bytes.as_slice(),
        };
        // A name of its own per write; never listed (a schema file ends in .proto or .so).
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(t.name())
            .join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes)
            .map_err(|e| SchemaError::Io(format!("writing {}: {e}", tmp.display())))?;
        let stored = self.replace(t, name, &tmp, &path, create);
        if stored.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        stored
    }

    /// Moves `tmp` to `path` after the create/update checks, under the lock.
    fn replace(
        &self,
        t: SchemaType,
        name: &str,
        tmp: &Path,
        path: &Path,
        create: bool,
    ) -> Result<(), SchemaError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        match (create, path.is_file()) {
            (true, true) => {
                return Err(SchemaError::Conflict(format!(
                    "schema {}.{name} already exists",
                    t.name()
                )));
            }
            (false, false) => return Err(not_found(t, name)),
            (true, false) if self.list(t)?.len() >= MAX_SCHEMAS => {
                return Err(SchemaError::Invalid(format!(
                    "there are {MAX_SCHEMAS} {} schemas already, the limit",
                    t.name()
                )));
            }
            _ => {}
        }
        std::fs::rename(tmp, path)
            .map_err(|e| SchemaError::Io(format!("writing {}: {e}", path.display())))
    }

    /// Removes a schema.
    pub fn delete(&self, t: SchemaType, name: &str) -> Result<(), SchemaError> {
        check_name(name)?;
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.path(t, name);
        if !path.is_file() {
            return Err(not_found(t, name));
        }
        std::fs::remove_file(&path)
            .map_err(|e| SchemaError::Io(format!("removing {}: {e}", path.display())))
    }
}

fn check_name(name: &str) -> Result<(), SchemaError> {
    if valid_schema_name(name) {
        Ok(())
    } else {
        Err(SchemaError::Invalid(format!(
            "invalid schema name \"{}\": use 1 to {} letters, digits, \"_\" or \"-\"",
            name.chars().take(64).collect::<String>(),
            protobuf::MAX_SCHEMA_NAME
        )))
    }
}

fn not_found(t: SchemaType, name: &str) -> SchemaError {
    SchemaError::NotFound(format!("schema {}.{name} not found", t.name()))
}

/// The schema of type `t` a stream reads (`FORMAT="protobuf"` or `"custom"`,
/// `SCHEMAID="schema.Message"`): schema and message names.
pub fn stream_schema(t: SchemaType, sql: &str) -> Option<(String, String)> {
    let Ok(quiver_compiler::ddl::Statement::Create(def)) = quiver_compiler::parse_statement(sql)
    else {
        return None;
    };
    if def.options.format != t.name() {
        return None;
    }
    split(def.options.raw.get("SCHEMAID")?)
}

/// The schemas of type `t` a rule's actions write (`format: "protobuf"` or `"custom"`,
/// `schemaId`).
pub fn rule_schemas(t: SchemaType, rule_json: &str) -> Vec<(String, String)> {
    let Ok(rule) = serde_json::from_str::<serde_json::Value>(rule_json) else {
        return Vec::new();
    };
    let Some(actions) = rule.get("actions").and_then(|a| a.as_array()) else {
        return Vec::new();
    };
    let key = |props: &serde_json::Map<String, serde_json::Value>, k: &str| {
        props
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(k))
            .and_then(|(_, v)| v.as_str().map(str::to_string))
    };
    actions
        .iter()
        .filter_map(|a| a.as_object())
        .flat_map(|a| a.values())
        .filter_map(|props| props.as_object())
        .filter(|props| key(props, "format").is_some_and(|f| f.eq_ignore_ascii_case(t.name())))
        .filter_map(|props| split(&key(props, "schemaId")?))
        .collect()
}

fn split(id: &str) -> Option<(String, String)> {
    id.split_once('.')
        .map(|(s, m)| (s.to_string(), m.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_list_get_delete_and_bounds() {
        let dir = std::env::temp_dir().join(format!("quiver-schemas-{}", std::process::id()));
        let r = SchemaRegistry::open(&dir).unwrap();
        let p = SchemaType::Protobuf;
        let body =
            SchemaBody::Proto("syntax=\"proto3\"; message Book { string title = 1; }".into());
        r.check(p, "books", &body).unwrap();
        r.store(p, "books", &body, true).unwrap();
        assert!(matches!(
            r.store(p, "books", &body, true),
            Err(SchemaError::Conflict(_))
        ));
        assert_eq!(r.list(p).unwrap(), ["books"]);
        let info = r.get(p, "books").unwrap();
        assert!(info.content.contains("message Book"));
        assert!(info.file.ends_with("schemas/protobuf/books.proto"));
        for bad in ["../x", "a.b", "a/b", ""] {
            assert!(
                matches!(r.check(p, bad, &body), Err(SchemaError::Invalid(_))),
                "{bad}"
            );
            assert!(
                matches!(r.get(p, bad), Err(SchemaError::Invalid(_))),
                "{bad}"
            );
        }
        let big = SchemaBody::Proto(" ".repeat(MAX_SCHEMA_BYTES + 1));
        assert!(matches!(
            r.check(p, "big", &big),
            Err(SchemaError::Invalid(_))
        ));
        assert!(matches!(
            r.check(p, "x", &SchemaBody::Proto("message {".into())),
            Err(SchemaError::Invalid(_))
        ));
        // Reopened (a restart), the folder is the registry.
        let r = SchemaRegistry::open(&dir).unwrap();
        assert!(r.exists(p, "books"));
        r.delete(p, "books").unwrap();
        assert!(matches!(
            r.delete(p, "books"),
            Err(SchemaError::NotFound(_))
        ));
        assert!(SchemaType::parse("avro").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn users_are_found_in_streams_and_rules() {
        assert_eq!(
            stream_schema(
                SchemaType::Protobuf,
                r#"CREATE STREAM s () WITH (FORMAT="protobuf", SCHEMAID="books.Book", DATASOURCE="t")"#
            ),
            Some(("books".into(), "Book".into()))
        );
        assert_eq!(
            stream_schema(
                SchemaType::Custom,
                r#"CREATE STREAM s () WITH (FORMAT="protobuf", SCHEMAID="books.Book", DATASOURCE="t")"#
            ),
            None
        );
        assert_eq!(
            stream_schema(
                SchemaType::Protobuf,
                r#"CREATE STREAM s () WITH (DATASOURCE="t")"#
            ),
            None
        );
        let rule = r#"{"id":"r","sql":"SELECT * FROM s","actions":[
            {"mqtt":{"topic":"o","format":"protobuf","schemaId":"books.Book"}},{"log":{}}]}"#;
        assert_eq!(
            rule_schemas(SchemaType::Protobuf, rule),
            [("books".to_string(), "Book".to_string())]
        );
        assert!(rule_schemas(SchemaType::Custom, rule).is_empty());
    }
}
