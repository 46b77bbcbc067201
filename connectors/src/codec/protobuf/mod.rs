//! eKuiper's `protobuf` format: messages described by a `.proto` file of the schema registry,
//! named `SCHEMAID="file.Message"` on a stream and `schemaId` on a sink.
//!
//! The registry (the server's `/schemas/protobuf` routes) keeps one `<name>.proto` per schema in
//! one folder, which the server names here once at startup ([`set_schema_dir`]). A descriptor
//! is parsed from that folder when a decoder or encoder is built (rule start), with `protox`,
//! so no `protoc` is needed; a file may import the registry's other files and Google's
//! well-known types, and nothing else (no path reaches outside the folder).
//!
//! - [`decode`]: messages straight into Arrow columns; a bad message costs its own row.
//! - [`encode`]: one message per row for byte sinks.

pub mod decode;
pub mod encode;

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use prost_reflect::{DescriptorPool, MessageDescriptor};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

pub use decode::ProtobufDecoder;
pub use encode::ProtobufEncoder;

/// The largest `.proto` file the registry stores and a descriptor is parsed from.
pub const MAX_SCHEMA_BYTES: usize = 1 << 20;

/// The longest schema name (the file name without `.proto`).
pub const MAX_SCHEMA_NAME: usize = 128;

/// How deep messages may nest in a stream's columns (a recursive message type would be
/// infinitely deep).
pub const MAX_NESTING: usize = 32;

/// The folder of the registry's `.proto` files; None until the server names it.
static SCHEMA_DIR: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Names the folder the protobuf schemas live in (`<data-dir>/schemas/protobuf`).
pub fn set_schema_dir(dir: PathBuf) {
    *SCHEMA_DIR.write().expect("schema dir lock") = Some(dir);
}

/// The folder of the protobuf schemas, once named.
pub fn schema_dir() -> Option<PathBuf> {
    SCHEMA_DIR.read().expect("schema dir lock").clone()
}

/// True for a schema name the registry accepts: letters, digits, `_` and `-`, at most
/// [`MAX_SCHEMA_NAME`] characters. No `.` (it ends the name in a schema id) and no `/`, so a
/// name is always one file inside the folder.
pub fn valid_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SCHEMA_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Splits a schema id `file.Message` (the message may be package-qualified, `file.pkg.Message`).
pub fn split_schema_id(id: &str) -> Result<(&str, &str), String> {
    match id.split_once('.') {
        Some((file, message)) if valid_schema_name(file) && !message.is_empty() => {
            Ok((file, message))
        }
        _ => Err(format!(
            "schema id \"{id}\" must be \"schema.MessageName\", the schema a registered name"
        )),
    }
}

/// The message type a schema id names, parsed from the registry folder.
pub fn message_descriptor(schema_id: &str) -> Result<MessageDescriptor, String> {
    let (file, message) = split_schema_id(schema_id)?;
    let dir = schema_dir().ok_or_else(|| "the schema registry is not available".to_string())?;
    if !dir.join(format!("{file}.proto")).is_file() {
        return Err(format!("protobuf schema \"{file}\" is not registered"));
    }
    let pool = compile(&dir, file)?;
    find_message(&pool, file, message)
}

/// Parses `<dir>/<file>.proto` with its imports.
pub fn compile(dir: &Path, file: &str) -> Result<DescriptorPool, String> {
    let mut resolver = ChainFileResolver::new();
    resolver.add(RegistryResolver {
        dir: dir.to_path_buf(),
    });
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler
        .open_file(format!("{file}.proto"))
        .map_err(|e| format!("protobuf schema \"{file}\" does not compile: {e}"))?;
    Ok(compiler.descriptor_pool())
}

/// Parses one schema's text alone (imports of the registry's files resolve in `dir`), to check
/// it before it is stored; returns its descriptors.
pub fn check_source(dir: &Path, name: &str, source: &str) -> Result<DescriptorPool, String> {
    let mut resolver = ChainFileResolver::new();
    resolver.add(Override {
        name: format!("{name}.proto"),
        source: source.to_string(),
    });
    resolver.add(RegistryResolver {
        dir: dir.to_path_buf(),
    });
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler
        .open_file(format!("{name}.proto"))
        .map_err(|e| format!("protobuf schema \"{name}\" does not compile: {e}"))?;
    Ok(compiler.descriptor_pool())
}

/// The message `name` of `file`'s pool: as written, else inside the file's package.
pub fn find_message(
    pool: &DescriptorPool,
    file: &str,
    name: &str,
) -> Result<MessageDescriptor, String> {
    if let Some(m) = pool.get_message_by_name(name) {
        return Ok(m);
    }
    pool.files()
        .filter(|f| f.name() == format!("{file}.proto"))
        .find_map(|f| pool.get_message_by_name(&format!("{}.{name}", f.package_name())))
        .ok_or_else(|| format!("message type \"{name}\" is not in protobuf schema \"{file}\""))
}

/// Opens `name.proto` files of the registry folder only: a name with a path in it is not found.
struct RegistryResolver {
    dir: PathBuf,
}

impl FileResolver for RegistryResolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        let Some(stem) = name.strip_suffix(".proto").filter(|s| valid_schema_name(s)) else {
            return Err(protox::Error::file_not_found(name));
        };
        let path = self.dir.join(format!("{stem}.proto"));
        let text = read_bounded(&path).map_err(|_| protox::Error::file_not_found(name))?;
        File::from_source(name, &text)
    }
}

/// One file given as text (a schema being checked before it is stored).
struct Override {
    name: String,
    source: String,
}

impl FileResolver for Override {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == self.name {
            File::from_source(name, &self.source)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

/// A schema file's text, refusing one above [`MAX_SCHEMA_BYTES`].
fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_SCHEMA_BYTES as u64 + 1)
        .read_to_string(&mut text)?;
    if text.len() > MAX_SCHEMA_BYTES {
        return Err(std::io::Error::other("schema file too large"));
    }
    Ok(text)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The message type `message` of one schema text, for the codec tests.
    pub(crate) fn message(source: &str, message: &str) -> MessageDescriptor {
        let mut resolver = ChainFileResolver::new();
        resolver.add(Override {
            name: "t.proto".into(),
            source: source.into(),
        });
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.open_file("t.proto").unwrap();
        find_message(&compiler.descriptor_pool(), "t", message).unwrap()
    }

    #[test]
    fn names_and_ids() {
        assert!(valid_schema_name("schema_1-a"));
        for bad in ["", "a.b", "../x", "a/b", "é", &"x".repeat(129)] {
            assert!(!valid_schema_name(bad), "{bad}");
        }
        assert_eq!(split_schema_id("s.pkg.Book").unwrap(), ("s", "pkg.Book"));
        assert!(split_schema_id("s").is_err());
        assert!(split_schema_id("../s.Book").is_err());
    }

    #[test]
    fn registry_files_import_each_other_and_nothing_outside() {
        let dir = std::env::temp_dir().join(format!("quiver-proto-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("base.proto"),
            "syntax=\"proto3\"; message Base { int64 id = 1; }",
        )
        .unwrap();
        std::fs::write(
            dir.join("top.proto"),
            "syntax=\"proto3\"; package p; import \"base.proto\"; message Top { Base b = 1; }",
        )
        .unwrap();
        let pool = compile(&dir, "top").unwrap();
        assert!(find_message(&pool, "top", "Top").is_ok());
        assert!(find_message(&pool, "top", "p.Top").is_ok());
        assert!(
            find_message(&pool, "top", "Nope")
                .unwrap_err()
                .contains("\"Nope\" is not in protobuf schema \"top\"")
        );
        let outside = check_source(
            &dir,
            "evil",
            "syntax=\"proto3\"; import \"../etc/passwd.proto\"; message E {}",
        );
        assert!(outside.is_err());
        let err = check_source(&dir, "bad", "message {").unwrap_err();
        assert!(
            err.starts_with("protobuf schema \"bad\" does not compile"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
