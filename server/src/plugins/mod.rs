//! Native plugins: loading, installing and removing sink and function plugins.
//!
//! Plugins live under `<data-dir>/plugins/{sources,sinks,functions}/` as `Name@vX.Y.Z.so`
//! (eKuiper's naming; the highest version of a name wins) with an optional `name.json`
//! metadata file and, for sources, an optional `name.yaml` of default properties. The files are the record: all are loaded at start-up, before the catalog's
//! rules are restored, so rules that use plugins come back too.
//!
//! Invariants:
//! - a loaded library is never overwritten or unloaded (abi_stable keeps it mapped), so an
//!   installed file is only ever created under a new name, atomically (write, then rename);
//! - every call into a plugin is guarded on the plugin side (`export_plugin!` catches panics)
//!   and a panic stops only the rule that made the call;
//! - a package is fetched and checked (bounded in size, time and entries, see [`package`])
//!   before the install lock is taken, so a slow or stuck download never blocks other
//!   installs.

pub mod converter;
mod function;
mod loader;
pub mod package;
mod sink;
mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use quiver_dataflow::Engine;
use quiver_plugin_abi::ffi::PluginKind;
use serde_json::{Value, json};

pub use loader::LoadedPlugin;

/// What can go wrong managing plugins.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// A bad request: a bad package, a library that is not a (compatible) plugin.
    #[error("{0}")]
    Invalid(String),
    /// No such plugin.
    #[error("{0}")]
    NotFound(String),
    /// Already installed, or still used by rules.
    #[error("{0}")]
    Conflict(String),
    /// A failure of the server's own files.
    #[error("{0}")]
    Io(String),
}

/// An installed plugin.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The plugin's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// What it provides.
    pub kind: PluginKind,
    /// The library file.
    pub file: PathBuf,
    /// `name.json`, if it had one.
    pub metadata: Option<Value>,
}

/// Loads, installs and removes plugins, and registers them with the engine.
pub struct PluginManager {
    dir: PathBuf,
    engine: Engine,
    installed: Mutex<BTreeMap<(u8, String), Installed>>,
    /// Serialises installs and deletes (each spans writing files and a library load; the
    /// download comes before it is taken).
    change: tokio::sync::Mutex<()>,
    /// The folder `file://` installs may read from (canonical); `None`: no `file://`.
    file_dir: Option<PathBuf>,
}

/// The plugin kind a REST path segment names (`sources`, `sinks`, `functions`).
pub fn kind_of(segment: &str) -> Option<PluginKind> {
    match segment {
        "sources" => Some(PluginKind::Source),
        "sinks" => Some(PluginKind::Sink),
        "functions" => Some(PluginKind::Function),
        _ => None,
    }
}

fn key(kind: PluginKind, name: &str) -> (u8, String) {
    (kind as u8, name.to_string())
}

fn kind_word(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Source => "source",
        PluginKind::Sink => "sink",
        PluginKind::Function => "function",
    }
}

/// True when `name` is a valid plugin name (eKuiper: letters, digits, `_`).
fn valid_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl PluginManager {
    /// A manager over `<data_dir>/plugins`, creating the folders.
    pub fn open(data_dir: &Path, engine: Engine) -> Result<PluginManager, PluginError> {
        let dir = data_dir.join("plugins");
        for kind in [PluginKind::Source, PluginKind::Sink, PluginKind::Function] {
            let d = dir.join(kind.folder());
            std::fs::create_dir_all(&d)
                .map_err(|e| PluginError::Io(format!("creating {}: {e}", d.display())))?;
        }
        Ok(PluginManager {
            dir,
            engine,
            installed: Mutex::new(BTreeMap::new()),
            change: tokio::sync::Mutex::new(()),
            file_dir: None,
        })
    }

    /// Allows `file://` installs from `dir` (and its subfolders) only; `None` refuses them.
    pub fn with_file_dir(mut self, dir: Option<&Path>) -> Result<PluginManager, PluginError> {
        self.file_dir = dir
            .map(|d| {
                d.canonicalize()
                    .map_err(|e| PluginError::Io(format!("--plugin-file-dir {}: {e}", d.display())))
            })
            .transpose()?;
        Ok(self)
    }

    /// Loads every installed plugin (the highest version of each name). A plugin that fails
    /// to load is logged and skipped; the server starts anyway.
    pub fn load_all(&self) {
        for kind in [PluginKind::Sink, PluginKind::Function, PluginKind::Source] {
            let folder = self.dir.join(kind.folder());
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            // name → (version, file); the highest version wins.
            let mut best: BTreeMap<String, (String, PathBuf)> = BTreeMap::new();
            for entry in entries.flatten() {
                let file_name = entry.file_name().to_string_lossy().to_string();
                if file_name.starts_with(".install-") {
                    // Left by an install the process did not live to finish.
                    let _ = std::fs::remove_file(entry.path());
                    continue;
                }
                let Some((stem_name, version)) = package::parse_so_name(&file_name) else {
                    continue;
                };
                let name = lower_first(&stem_name);
                let version = version.unwrap_or_else(|| "0.0.0".into());
                let newer = best
                    .get(&name)
                    .is_none_or(|(v, _)| package::version_key(&version) > package::version_key(v));
                if newer {
                    best.insert(name, (version, entry.path()));
                }
            }
            for (name, (_, path)) in best {
                match self.activate(kind, &name, &path) {
                    Ok(p) => tracing::info!(
                        plugin = %name,
                        version = %p.version,
                        kind = kind_word(kind),
                        "plugin loaded"
                    ),
                    Err(e) => tracing::error!(plugin = %name, "plugin not loaded: {e}"),
                }
            }
        }
    }

    /// Loads `path` as plugin `name` of `kind`, checks it and registers it.
    fn activate(
        &self,
        kind: PluginKind,
        name: &str,
        path: &Path,
    ) -> Result<Installed, PluginError> {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        let loaded = check(loader::load(path, &file)?, kind, name, &file)?;
        let metadata = self.read_metadata(kind, name);
        self.register(Arc::new(loaded), path, metadata)
    }

    fn read_metadata(&self, kind: PluginKind, name: &str) -> Option<Value> {
        let path = self.dir.join(kind.folder()).join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).ok()?;
        match serde_json::from_str(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("ignoring {}: not valid JSON: {e}", path.display());
                None
            }
        }
    }

    /// The `default` section of a source's `name.yaml` (eKuiper's source config layout).
    fn read_defaults(&self, name: &str) -> Result<serde_json::Map<String, Value>, PluginError> {
        let path = self.dir.join("sources").join(format!("{name}.yaml"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(serde_json::Map::new());
        };
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text)
            .map_err(|e| PluginError::Invalid(format!("{}: {e}", path.display())))?;
        match serde_json::to_value(yaml) {
            Ok(Value::Object(mut sections)) => match sections.remove("default") {
                Some(Value::Object(defaults)) => Ok(defaults),
                None => Ok(serde_json::Map::new()),
                Some(_) => Err(PluginError::Invalid(format!(
                    "{}: \"default\" must be a map of properties",
                    path.display()
                ))),
            },
            _ => Err(PluginError::Invalid(format!(
                "{}: expected a map of profiles such as default: {{...}}",
                path.display()
            ))),
        }
    }

    /// Registers a loaded plugin with the engine and records it.
    fn register(
        &self,
        plugin: Arc<LoadedPlugin>,
        path: &Path,
        metadata: Option<Value>,
    ) -> Result<Installed, PluginError> {
        let name = plugin.name;
        match plugin.kind {
            PluginKind::Sink => {
                // Makes (and drops) one instance now, so a plugin that cannot make sinks is
                // refused at install rather than at the first rule.
                drop(plugin.new_sink()?);
                self.engine.connectors().register_sink(
                    name,
                    Arc::new(sink::PluginSinkFactory {
                        plugin: plugin.clone(),
                    }),
                );
            }
            PluginKind::Function => {
                let f = plugin.new_function()?;
                let f = function::PluginFunction::new(plugin.clone(), f, metadata.as_ref());
                if quiver_compiler::Registry::builtin().get(name).is_some() {
                    return Err(PluginError::Conflict(format!(
                        "plugin function \"{name}\" would hide the built-in function of that name"
                    )));
                }
                self.engine.register_function(Arc::new(f));
            }
            PluginKind::Source => {
                drop(plugin.new_source()?);
                let defaults = self.read_defaults(name)?;
                self.engine.connectors().register_source(
                    name,
                    Arc::new(source::PluginSourceFactory {
                        plugin: plugin.clone(),
                        defaults,
                    }),
                );
            }
        }
        let installed = Installed {
            name: name.to_string(),
            version: plugin.version.clone(),
            kind: plugin.kind,
            file: path.to_path_buf(),
            metadata,
        };
        self.installed
            .lock()
            .expect("plugins lock")
            .insert(key(plugin.kind, name), installed.clone());
        Ok(installed)
    }

    /// Installs plugin `name` of `kind` from the zip at `url`. On any failure nothing is left
    /// in the plugin folders.
    pub async fn install(
        &self,
        kind: PluginKind,
        name: &str,
        url: &str,
    ) -> Result<Installed, PluginError> {
        self.install_checked(kind, name, url, None).await
    }

    /// [`PluginManager::install`], refusing a package whose SHA-256 is not `sha256` (hex)
    /// before anything is unpacked or written.
    pub async fn install_checked(
        &self,
        kind: PluginKind,
        name: &str,
        url: &str,
        sha256: Option<&str>,
    ) -> Result<Installed, PluginError> {
        check_name(name)?;
        let pkg = self.fetch(name, url, sha256).await?;
        self.install_unpacked(kind, name, pkg).await
    }

    /// [`PluginManager::install`] from the zip's bytes (the web console's upload).
    pub async fn install_zip(
        &self,
        kind: PluginKind,
        name: &str,
        zip: Vec<u8>,
    ) -> Result<Installed, PluginError> {
        check_name(name)?;
        let pkg = unpack(name, zip, None).await?;
        self.install_unpacked(kind, name, pkg).await
    }

    /// [`PluginManager::update`] from the zip's bytes (the web console's upload).
    pub async fn update_zip(
        &self,
        kind: PluginKind,
        name: &str,
        zip: Vec<u8>,
    ) -> Result<(Installed, Vec<String>), PluginError> {
        if self.get(kind, name).is_none() {
            return Err(not_found(kind, name));
        }
        let pkg = unpack(name, zip, None).await?;
        self.update_unpacked(kind, name, pkg).await
    }

    async fn install_unpacked(
        &self,
        kind: PluginKind,
        name: &str,
        pkg: package::Package,
    ) -> Result<Installed, PluginError> {
        let _change = self.change.lock().await;
        if self.get(kind, name).is_some() {
            return Err(PluginError::Conflict(format!(
                "{} plugin \"{name}\" is already installed; update it with PUT or delete it first",
                kind_word(kind)
            )));
        }
        let built_in = match kind {
            PluginKind::Sink => self.engine.connectors().sink_types().contains(&name),
            PluginKind::Source => self.engine.connectors().source_types().contains(&name),
            PluginKind::Function => false,
        };
        if built_in {
            return Err(PluginError::Conflict(format!(
                "\"{name}\" is a built-in {}",
                kind_word(kind)
            )));
        }
        self.install_package(kind, name, pkg).await
    }

    /// Replaces plugin `name` by the version in the zip at `url`, without a server restart:
    /// the new library is loaded under its own file name (a loaded one is never overwritten)
    /// and the rules that use the plugin are recreated on it. Returns the new version and the
    /// ids of the rules that moved over.
    /// With `sha256`, a package of another digest is refused as in
    /// [`PluginManager::install_checked`].
    pub async fn update(
        &self,
        kind: PluginKind,
        name: &str,
        url: &str,
        sha256: Option<&str>,
    ) -> Result<(Installed, Vec<String>), PluginError> {
        if self.get(kind, name).is_none() {
            return Err(not_found(kind, name));
        }
        let pkg = self.fetch(name, url, sha256).await?;
        self.update_unpacked(kind, name, pkg).await
    }

    async fn update_unpacked(
        &self,
        kind: PluginKind,
        name: &str,
        pkg: package::Package,
    ) -> Result<(Installed, Vec<String>), PluginError> {
        let _change = self.change.lock().await;
        let Some(old) = self.get(kind, name) else {
            return Err(not_found(kind, name));
        };
        let new = self.install_package(kind, name, pkg).await?;
        if new.file != old.file {
            // Still mapped in this process; the file only has to go so a restart loads the
            // new version.
            let _ = std::fs::remove_file(&old.file);
        }
        let users = self.users(kind, name);
        for id in &users {
            // Recreated, not just restarted: a rule's compiled plan holds the function it was
            // bound to, and its sinks are made anew from the registered factory.
            let Some(spec) = self.engine.rule_spec(id) else {
                continue;
            };
            let running = self.engine.rule_running(id);
            let recreated = self
                .engine
                .delete_rule(id)
                .and_then(|()| self.engine.create_rule_with(spec, running));
            if let Err(e) = recreated {
                tracing::error!(rule = %id, "rule not moved to {name} {}: {e}", new.version);
            }
        }
        Ok((new, users))
    }

    /// Downloads or reads the package and checks it (its digest first, when `sha256` is
    /// given), holding no lock; hashing, unpacking and parsing run on a blocking thread.
    async fn fetch(
        &self,
        name: &str,
        url: &str,
        sha256: Option<&str>,
    ) -> Result<package::Package, PluginError> {
        if let Some(digest) = sha256 {
            package::validate_sha256(digest)?;
        } else if url.starts_with("http://") {
            tracing::warn!(
                plugin = %name,
                "installing from {url} over plain HTTP without a sha256: anyone on the network \
                 path could swap the library; prefer https:// or give the package's sha256"
            );
        }
        let bytes = package::fetch(url, self.file_dir.as_deref()).await?;
        unpack(name, bytes, sha256.map(|d| (url, d))).await
    }

    async fn install_package(
        &self,
        kind: PluginKind,
        name: &str,
        mut pkg: package::Package,
    ) -> Result<Installed, PluginError> {
        if pkg.had_install_script {
            tracing::warn!(plugin = %name, "the package's install.sh was not run");
        }
        let folder = self.dir.join(kind.folder());
        // A fresh name each time: the dynamic loader hands back an already loaded library
        // for a path it has seen, even if the file was replaced since.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = folder.join(format!(".install-{name}-{}-{n}.so.tmp", std::process::id()));
        let result = self
            .install_files(kind, name, &mut pkg, &folder, &tmp)
            .await;
        // Whatever happened, the temporary file goes; on success it was renamed already.
        let _ = std::fs::remove_file(&tmp);
        result
    }

    async fn install_files(
        &self,
        kind: PluginKind,
        name: &str,
        pkg: &mut package::Package,
        folder: &Path,
        tmp: &Path,
    ) -> Result<Installed, PluginError> {
        let io = |what: &str, e: std::io::Error| PluginError::Io(format!("{what}: {e}"));
        // Writing the library and loading it (which runs its initialisers): off the async
        // threads.
        let (tmp_path, so_name, so) = (
            tmp.to_path_buf(),
            pkg.so_name.clone(),
            std::mem::take(&mut pkg.so),
        );
        let loaded = tokio::task::spawn_blocking(move || {
            write_synced(&tmp_path, &so).map_err(|e| io("writing the plugin", e))?;
            drop(so);
            loader::load(&tmp_path, &so_name)
        })
        .await
        .map_err(|e| PluginError::Io(format!("loading the plugin: {e}")))??;
        let loaded = check(loaded, kind, name, &pkg.so_name)?;
        if let Some(v) = &pkg.so_version
            && *v != loaded.version
        {
            return Err(PluginError::Invalid(format!(
                "{} says version {v} but the plugin says {}",
                pkg.so_name, loaded.version
            )));
        }
        let file = folder.join(format!(
            "{}@v{}.so",
            package::capitalised(name),
            loaded.version
        ));
        if file.exists() {
            return Err(PluginError::Conflict(format!(
                "{} already exists; a loaded library is never overwritten, so install a new version",
                file.display()
            )));
        }
        let defaults_file = folder.join(format!("{name}.yaml"));
        if let Some(defaults) = &pkg.defaults {
            let tmp_defaults = folder.join(format!(".install-{name}.yaml.tmp"));
            write_synced(&tmp_defaults, defaults).map_err(|e| io("writing the defaults", e))?;
            std::fs::rename(&tmp_defaults, &defaults_file)
                .map_err(|e| io("writing the defaults", e))?;
        } else {
            let _ = std::fs::remove_file(&defaults_file);
        }
        let metadata_file = folder.join(format!("{name}.json"));
        if let Some(meta) = &pkg.metadata {
            let tmp_meta = folder.join(format!(".install-{name}.json.tmp"));
            let text =
                serde_json::to_vec_pretty(meta).map_err(|e| PluginError::Io(e.to_string()))?;
            write_synced(&tmp_meta, &text).map_err(|e| io("writing the metadata", e))?;
            std::fs::rename(&tmp_meta, &metadata_file)
                .map_err(|e| io("writing the metadata", e))?;
        } else {
            let _ = std::fs::remove_file(&metadata_file);
        }
        std::fs::rename(tmp, &file).map_err(|e| io("installing the plugin", e))?;
        match self.register(Arc::new(loaded), &file, pkg.metadata.clone()) {
            Ok(installed) => Ok(installed),
            Err(e) => {
                let _ = std::fs::remove_file(&file);
                let _ = std::fs::remove_file(&metadata_file);
                let _ = std::fs::remove_file(&defaults_file);
                Err(e)
            }
        }
    }

    /// Removes plugin `name`; refused while rules use it, naming them.
    pub async fn delete(&self, kind: PluginKind, name: &str) -> Result<(), PluginError> {
        let _change = self.change.lock().await;
        let Some(installed) = self.get(kind, name) else {
            return Err(not_found(kind, name));
        };
        let streams = self.streams_of(kind, name);
        if !streams.is_empty() {
            return Err(PluginError::Conflict(format!(
                "source plugin \"{name}\" is used by streams: {}; drop them first",
                streams.join(", ")
            )));
        }
        let users = self.users(kind, name);
        if !users.is_empty() {
            return Err(PluginError::Conflict(format!(
                "{} plugin \"{name}\" is used by rules: {}; delete or update them first",
                kind_word(kind),
                users.join(", ")
            )));
        }
        match kind {
            PluginKind::Sink => {
                self.engine.connectors().unregister_sink(name);
            }
            PluginKind::Function => {
                self.engine.unregister_function(name);
            }
            PluginKind::Source => {
                self.engine.connectors().unregister_source(name);
            }
        }
        self.installed
            .lock()
            .expect("plugins lock")
            .remove(&key(kind, name));
        // The library stays mapped until the process exits; only the files go.
        let folder = self.dir.join(kind.folder());
        let _ = std::fs::remove_file(folder.join(format!("{name}.json")));
        let _ = std::fs::remove_file(folder.join(format!("{name}.yaml")));
        std::fs::remove_file(&installed.file)
            .map_err(|e| PluginError::Io(format!("removing {}: {e}", installed.file.display())))
    }

    /// Streams whose `TYPE` is source plugin `name` (none for other kinds).
    fn streams_of(&self, kind: PluginKind, name: &str) -> Vec<String> {
        if kind != PluginKind::Source {
            return Vec::new();
        }
        self.engine
            .stream_names()
            .into_iter()
            .filter(|s| {
                self.engine
                    .stream(s)
                    .is_some_and(|d| d.options.source_type == name)
            })
            .collect()
    }

    /// Ids of the rules that use plugin `name` of `kind`.
    fn users(&self, kind: PluginKind, name: &str) -> Vec<String> {
        let streams = self.streams_of(kind, name);
        self.engine
            .rule_ids()
            .into_iter()
            .filter(|id| {
                let Some(spec) = self.engine.rule_spec(id) else {
                    return false;
                };
                match kind {
                    PluginKind::Sink => spec.actions.iter().any(|a| a.sink_type == name),
                    PluginKind::Function => calls_function(&spec.sql, name),
                    PluginKind::Source => self
                        .engine
                        .compile(&spec.sql)
                        .is_ok_and(|p| streams.contains(&p.plan.scan().stream)),
                }
            })
            .collect()
    }

    /// The installed plugin `name` of `kind`.
    pub fn get(&self, kind: PluginKind, name: &str) -> Option<Installed> {
        self.installed
            .lock()
            .expect("plugins lock")
            .get(&key(kind, name))
            .cloned()
    }

    /// Reads the file at `url` as a plugin package is read: `file://` only inside
    /// `--plugin-file-dir`, or http(s); bounded in size and time (`POST /data/import`).
    pub async fn fetch_url(&self, url: &str) -> Result<Vec<u8>, PluginError> {
        package::fetch(url, self.file_dir.as_deref()).await
    }

    /// Names of the installed plugins of `kind`, sorted.
    pub fn list(&self, kind: PluginKind) -> Vec<String> {
        self.installed
            .lock()
            .expect("plugins lock")
            .values()
            .filter(|p| p.kind == kind)
            .map(|p| p.name.clone())
            .collect()
    }

    /// The REST description of a plugin: `{"name", "version"}` plus its metadata.
    pub fn describe(installed: &Installed) -> Value {
        let mut out = serde_json::Map::new();
        if let Some(Value::Object(meta)) = &installed.metadata {
            out.extend(meta.clone());
        }
        out.insert("name".into(), json!(installed.name));
        out.insert("version".into(), json!(installed.version));
        Value::Object(out)
    }
}

/// Refuses a plugin name that is not lowercase letters, digits and `_`.
fn check_name(name: &str) -> Result<(), PluginError> {
    if valid_name(name) {
        return Ok(());
    }
    Err(PluginError::Invalid(format!(
        "invalid plugin name \"{name}\"; use lowercase letters, digits and _"
    )))
}

/// Checks the package's digest against `(url, sha256)` when given, then unpacks and parses it,
/// on a blocking thread.
async fn unpack(
    name: &str,
    bytes: Vec<u8>,
    digest: Option<(&str, &str)>,
) -> Result<package::Package, PluginError> {
    let name = name.to_string();
    let digest = digest.map(|(url, d)| (url.to_string(), d.to_string()));
    tokio::task::spawn_blocking(move || {
        if let Some((url, digest)) = digest {
            package::check_sha256(&url, &bytes, &digest)?;
        }
        package::open(&bytes, &name)
    })
    .await
    .map_err(|e| PluginError::Io(format!("unpacking the plugin: {e}")))?
}

fn not_found(kind: PluginKind, name: &str) -> PluginError {
    PluginError::NotFound(format!("{} plugin \"{name}\" not found", kind_word(kind)))
}

/// Checks that a loaded library is the plugin the caller asked for.
fn check(
    loaded: LoadedPlugin,
    kind: PluginKind,
    name: &str,
    file: &str,
) -> Result<LoadedPlugin, PluginError> {
    if loaded.name != name {
        return Err(PluginError::Invalid(format!(
            "{file} is plugin \"{}\", not \"{name}\"",
            loaded.name
        )));
    }
    if loaded.kind != kind {
        return Err(PluginError::Invalid(format!(
            "{file} is a {} plugin, not a {}",
            kind_word(loaded.kind),
            kind_word(kind)
        )));
    }
    Ok(loaded)
}

/// `Mysql` → `mysql`: eKuiper accepts both spellings in file names.
fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// True when `sql` calls function `name` (`name(` as a whole word, any case).
fn calls_function(sql: &str, name: &str) -> bool {
    let sql = sql.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    let bytes = sql.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    sql.match_indices(&name).any(|(i, _)| {
        let before_ok = i == 0 || !ident(bytes[i - 1]);
        let after = sql[i + name.len()..].trim_start();
        before_ok && after.starts_with('(')
    })
}

/// Writes `data` to `path` and flushes it to disk, so a rename after it is durable.
fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_function_calls() {
        assert!(calls_function("SELECT double(x) FROM s", "double"));
        assert!(calls_function("SELECT DOUBLE (x) FROM s", "double"));
        assert!(!calls_function("SELECT doubled(x) FROM s", "double"));
        assert!(!calls_function("SELECT double FROM s", "double"));
        assert!(!calls_function("SELECT my_double(x) FROM s", "double"));
    }
}
