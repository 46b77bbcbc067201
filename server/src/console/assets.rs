//! The console's static files, embedded in the binary: one HTML page, one stylesheet, one
//! JavaScript module per page and the vendored graph layout library.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

/// `(file name, content type, bytes)` of every file under `/console/assets/`.
const FILES: &[(&str, &str, &[u8])] = &[
    ("style.css", CSS, include_bytes!("assets/style.css")),
    ("app.js", JS, include_bytes!("assets/app.js")),
    ("api.js", JS, include_bytes!("assets/api.js")),
    ("format.js", JS, include_bytes!("assets/format.js")),
    ("overview.js", JS, include_bytes!("assets/overview.js")),
    ("rule.js", JS, include_bytes!("assets/rule.js")),
    ("editor.js", JS, include_bytes!("assets/editor.js")),
    ("sql.js", JS, include_bytes!("assets/sql.js")),
    ("plugins.js", JS, include_bytes!("assets/plugins.js")),
    (
        "connections.js",
        JS,
        include_bytes!("assets/connections.js"),
    ),
    ("schemas.js", JS, include_bytes!("assets/schemas.js")),
    (
        "vendor/dagre.min.js",
        JS,
        include_bytes!("assets/vendor/dagre.min.js"),
    ),
];

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// What the pages may load and call: only this server. The graph's boxes are placed with
/// inline styles.
const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// `GET /console`: to the page, so relative asset paths resolve.
pub async fn redirect() -> Redirect {
    Redirect::permanent("/console/")
}

/// `GET /console/`: the one page; the scripts draw the rest.
pub async fn index() -> Response {
    serve(
        "text/html; charset=utf-8",
        include_bytes!("assets/index.html"),
    )
}

/// `GET /console/assets/{file}`.
pub async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, bytes)) => serve(kind, bytes),
        None => (
            StatusCode::NOT_FOUND,
            format!(
                "no console file \"{}\"",
                name.chars().take(100).collect::<String>()
            ),
        )
            .into_response(),
    }
}

fn serve(kind: &'static str, bytes: &'static [u8]) -> Response {
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Revalidated each time: a new quiverd may ship new pages under the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
