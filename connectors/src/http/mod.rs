//! What the HTTP connectors (the `rest` sink, the `httppull` source) share: the client and
//! the request properties eKuiper gives them both (`url`, `method`, `bodyType`, `headers`,
//! `timeout`, `responseType`).
//!
//! One client is made per sink or source, so its connections are reused from request to
//! request; nothing is shared between rules. `https://` URLs are verified with eKuiper's TLS
//! properties (`rootCaPath`, `certificationPath`, `insecureSkipVerify`, ...; the system's
//! roots by default); the httppull connectors also take eKuiper's `oAuth` token flow.

mod client;
mod oauth;
mod request;

pub use client::{HttpClient, MAX_RESPONSE_BYTES, Response, excerpt, parse_url};
pub use oauth::{OAuth, OAuthSpec};
pub use request::{BodyType, DEFAULT_TIMEOUT, Headers, RequestSpec, ResponseType, Target, form};
