//! `GET /openapi.json`: an OpenAPI 3 description of the REST API, for clients, generators and
//! API testers (CI runs schemathesis against a live quiverd with it, see scripts/test.sh).
//!
//! The document is hand-maintained in `openapi.json` next to this file: the handlers take raw
//! bodies and return eKuiper's shapes, which a derive would describe no better, and a
//! generator crate would add a large dependency tree. A test keeps it honest: it lists
//! exactly the paths and methods the router in `mod.rs` serves.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

/// The OpenAPI document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /openapi.json`.
pub async fn document() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::DOCUMENT;

    /// `(path, method)` for every route in the router's source: each `.route("path", ...)`
    /// call and the `get`/`post`/`put`/`delete` handlers chained in it.
    fn router_routes() -> BTreeSet<(String, String)> {
        let source = include_str!("mod.rs");
        let body = &source[source.find("pub fn router").expect("the router function")..];
        let mut routes = BTreeSet::new();
        for call in body.split(".route(").skip(1) {
            let path = call.split('"').nth(1).expect("a path literal");
            // The call's own text: up to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let end = call
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(call.len(), |(i, _)| i);
            for method in ["get", "post", "put", "delete", "patch"] {
                let called = call[..end]
                    .match_indices(&format!("{method}("))
                    .any(|(i, _)| i == 0 || !call.as_bytes()[i - 1].is_ascii_alphanumeric());
                if called {
                    routes.insert((path.to_string(), method.to_string()));
                }
            }
        }
        routes
    }

    #[test]
    fn document_lists_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.0.3");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if method != "parameters" {
                    documented.insert((path.clone(), method.clone()));
                }
            }
        }
        let served = router_routes();
        assert!(served.len() > 20, "the route parser found {served:?}");
        let missing: Vec<_> = served.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "server/src/api/openapi.json is out of date: not documented {missing:?}, not served {extra:?}"
        );
    }

    #[test]
    fn every_operation_has_an_id_and_a_response() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                if method == "parameters" {
                    continue;
                }
                let id = op["operationId"].as_str().expect("operationId");
                assert!(
                    ids.insert(id.to_string()),
                    "{method} {path}: duplicate id {id}"
                );
                assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
            }
        }
    }
}
