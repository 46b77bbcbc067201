//! eKuiper's REST API: thin handlers that parse, call the engine and the catalog, and map
//! errors to statuses. Paths and JSON shapes follow eKuiper's REST documentation.

mod bulk;
mod connections;
mod data;
mod data_sections;
mod error;
mod graph;
pub mod limits;
mod metadata;
pub mod openapi;
mod operators;
pub(crate) mod plugins;
mod rules;
mod ruleset;
mod ruletest;
mod schemas;
mod streams;
mod system;
mod tags;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::routing::{delete, get, post, put};
use quiver_dataflow::Engine;

pub use error::ApiError;
pub use rules::parse as parse_rule;

use crate::catalog::Catalog;
use crate::plugins::PluginManager;

/// What every handler shares.
pub struct AppState {
    /// The engine.
    pub engine: Engine,
    /// The persistent catalog.
    pub catalog: Catalog,
    /// When the server started.
    pub started: Instant,
    /// Installed plugins.
    pub plugins: Arc<PluginManager>,
    /// The `--config` file's connection profiles, composed with the REST-made ones.
    pub profiles: crate::profiles::Profiles,
    /// The errors of the last `POST /data/import`.
    pub import_status: data::ImportStatus,
    /// Open rule tests (`/ruletest`).
    pub tests: crate::ruletest::RuleTests,
    /// The schema registry (`/schemas`).
    pub schemas: Arc<crate::schemas::SchemaRegistry>,
}

/// Shared handler state.
pub type State = axum::extract::State<Arc<AppState>>;

/// The REST router, under the request [`limits`].
pub fn router(state: Arc<AppState>) -> Router {
    // The web console: its event streams are long-lived, so they are not under the limits.
    let console = crate::console::router(state.clone());
    let routes = Router::new()
        .route("/", get(system::info))
        .route("/ping", get(system::ping))
        .route("/metrics", get(system::metrics))
        .route("/metadata/functions", get(system::functions))
        .route("/metadata/sources", get(metadata::sources))
        .route("/metadata/sinks", get(metadata::sinks))
        .route("/metadata/operators", get(operators::list))
        .route("/metadata/sources/{name}", get(metadata::source))
        .route("/metadata/sinks/{name}", get(metadata::sink))
        .route(
            "/metadata/sources/yaml/{name}",
            get(metadata::source_conf_keys),
        )
        .route(
            "/metadata/sources/{name}/confKeys/{confKey}",
            put(metadata::put_source_conf_key).delete(metadata::delete_source_conf_key),
        )
        .route("/openapi.json", get(openapi::document))
        .route(
            "/connections",
            get(connections::list).post(connections::create),
        )
        .route(
            "/connections/{id}",
            get(connections::show)
                .put(connections::update)
                .delete(connections::delete),
        )
        .route("/streams", get(streams::list).post(streams::create))
        .route(
            "/streams/{name}",
            get(streams::describe)
                .put(streams::update)
                .delete(streams::drop),
        )
        .route("/streams/{name}/schema", get(streams::schema))
        .route("/streamdetails", get(streams::stream_details))
        .route("/tabledetails", get(streams::table_details))
        .route(
            "/tables",
            get(streams::list_tables).post(streams::create_table),
        )
        .route(
            "/tables/{name}",
            get(streams::describe_table)
                .put(streams::update_table)
                .delete(streams::drop_table),
        )
        .route("/tables/{name}/schema", get(streams::table_schema))
        .route("/rules", get(rules::list).post(rules::create))
        .route("/rules/validate", post(rules::validate))
        .route("/rules/status/all", get(rules::status_all))
        .route("/rules/tags/match", get(tags::matching))
        .route("/rules/bulkstart", post(bulk::start))
        .route("/rules/bulkstop", post(bulk::stop))
        .route("/ruleset/export", post(ruleset::export))
        .route("/ruleset/import", post(ruleset::import))
        .route("/data/export", get(data::export).post(data::export_rules))
        .route("/data/import", post(data::import))
        .route("/data/import/status", get(data::import_status))
        .route("/ruletest", post(ruletest::create))
        .route("/ruletest/{id}/start", post(ruletest::start))
        .route("/ruletest/{id}", delete(ruletest::delete))
        .route(
            "/rules/{id}",
            get(rules::show).put(rules::update).delete(rules::delete),
        )
        .route("/rules/{id}/start", post(rules::start))
        .route("/rules/{id}/stop", post(rules::stop))
        .route("/rules/{id}/restart", post(rules::restart))
        .route("/rules/{id}/status", get(rules::status))
        .route("/v2/rules/{id}/status", get(rules::status_v2))
        .route("/rules/{id}/schema", get(rules::schema))
        .route("/rules/{id}/reset_state", put(rules::reset_state))
        .route("/rules/{id}/topo", get(rules::topo))
        .route("/rules/{id}/explain", get(rules::explain))
        .route(
            "/rules/{id}/tags",
            put(tags::reset).patch(tags::add).delete(tags::remove),
        )
        .route("/schemas/{type}", get(schemas::list).post(schemas::create))
        .route(
            "/schemas/{type}/{name}",
            get(schemas::describe)
                .put(schemas::update)
                .delete(schemas::delete),
        )
        // `udfs` is matched before `{type}`: axum prefers the static segment.
        .route("/plugins/udfs", get(plugins::udfs))
        .route("/plugins/udfs/{name}", get(plugins::udf))
        .route("/plugins/{type}", get(plugins::list).post(plugins::install))
        .route(
            "/plugins/{type}/{name}",
            get(plugins::describe)
                .put(plugins::update)
                .delete(plugins::delete),
        )
        .with_state(state);
    limits::apply(routes, limits::Limits::default()).merge(console)
}
