//! What the HTTP connectors (the `rest` sink, the `httppull` source) share: the client and
//! the request properties eKuiper gives them both (`url`, `method`, `bodyType`, `headers`,
//! `timeout`, `responseType`).
//!
//! One client is made per sink or source, so its connections are reused from request to
//! request; nothing is shared between rules. Plain HTTP only: `https://` URLs, TLS files and
//! OAuth are refused by name.

mod client;
mod request;

pub use client::{HttpClient, MAX_RESPONSE_BYTES, Response, excerpt, parse_url};
pub(crate) use request::REQUEST_KEYS;
pub use request::{BodyType, DEFAULT_TIMEOUT, Headers, RequestSpec, ResponseType, Target, form};
