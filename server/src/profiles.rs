//! Connection profiles (eKuiper's confKeys): the ones in the `--config` file and the ones made
//! over REST (`PUT /metadata/sources/{type}/confKeys/{name}`), stored in the catalog.
//!
//! Precedence: a REST-made profile replaces the file's profile of the same type and name, as
//! a whole (keys are not merged); deleting it over REST brings the file's back. The file is
//! the deployment's starting point and is never written; the dashboard's edits win while they
//! exist. A profile only in the file cannot be deleted over REST.

use quiver_dataflow::Engine;
use quiver_dataflow::engine::SourceProfiles;
use serde_json::{Map, Value};

use crate::catalog::{Catalog, CatalogError};

/// The `--config` file's profiles, kept to compose them with the REST-made ones.
#[derive(Debug, Default)]
pub struct Profiles {
    file: SourceProfiles,
}

impl Profiles {
    /// Profiles read from the `--config` file (empty without one).
    pub fn new(file: SourceProfiles) -> Self {
        Profiles { file }
    }

    /// Whether the file defines profile `name` of `source_type` (lower case).
    pub fn in_file(&self, source_type: &str, name: &str) -> bool {
        self.file
            .get(source_type)
            .is_some_and(|by_name| by_name.contains_key(name))
    }

    /// The file's profile `name` of `source_type`, if any.
    pub fn file_profile(&self, source_type: &str, name: &str) -> Option<Map<String, Value>> {
        self.file.get(source_type)?.get(name).cloned()
    }

    /// Every profile in force: the file's, with the catalog's replacing same-named ones.
    pub fn merged(&self, catalog: &Catalog) -> Result<SourceProfiles, CatalogError> {
        let mut all = self.file.clone();
        for (source_type, name, props) in catalog.conf_keys()? {
            match serde_json::from_str::<Map<String, Value>>(&props) {
                Ok(props) => {
                    all.entry(source_type).or_default().insert(name, props);
                }
                Err(e) => tracing::error!(
                    "confKey \"{source_type}.{name}\" in the catalog is not a JSON object: {e}"
                ),
            }
        }
        Ok(all)
    }

    /// Hands every profile in force to the engine (at start). In a cluster the REST-made ones
    /// also go to every other process, through the sequence, where they win over the
    /// process's `--config` file: a follower keeps no catalog.
    pub fn apply(&self, engine: &Engine, catalog: &Catalog) -> Result<(), CatalogError> {
        engine.set_source_profiles(self.merged(catalog)?);
        if engine.cluster_process().is_some() {
            for (source_type, name, props) in catalog.conf_keys()? {
                if let Ok(props) = serde_json::from_str::<Map<String, Value>>(&props) {
                    engine.set_source_profile(&source_type, &name, Some(props));
                }
            }
        }
        Ok(())
    }
}
