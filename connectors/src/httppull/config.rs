//! Settings of the `httppull` source, parsed and validated once from the stream's profile.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::ConnectorError;
use crate::codec::template::TextProp;
use crate::http::{OAuthSpec, RequestSpec};
use crate::props::Props;

/// eKuiper's default interval between two pulls (its shipped `http_pull.yaml`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Settings of an httppull source.
#[derive(Debug, Clone)]
pub struct HttpPullConfig {
    /// The request: `url` (+ `DATASOURCE`), `method`, `bodyType`, `headers`, `timeout`,
    /// `responseType`.
    pub request: RequestSpec,
    /// The wait between two pulls (`interval` ms or a duration, default 10 s).
    pub interval: Duration,
    /// Skip an answer equal to the previous one (`incremental`, default false).
    pub incremental: bool,
    /// The request body (`body`), a template over the pull times.
    pub body: TextProp,
    /// The topic the messages carry (`DATASOURCE`).
    pub topic: Arc<str>,
    /// eKuiper's `oAuth` token flow; its token fields join the templates' data.
    pub oauth: Option<OAuthSpec>,
}

impl HttpPullConfig {
    /// Validates the stream's DATASOURCE and profile.
    pub fn parse(datasource: &str, props: &Map<String, Value>) -> Result<Self, ConnectorError> {
        let p = Props::new("httppull", props);
        p.refuse_unknown(
            "httppull source",
            &crate::spec::source_spec("httppull").accepted(),
        )?;
        Self::read(datasource, &p)
    }

    /// Validates a lookup table's DATASOURCE and profile: the request properties, `body` and
    /// the `lookup` cache object (pulling at an interval does not apply to a lookup).
    pub fn parse_lookup(
        datasource: &str,
        props: &Map<String, Value>,
    ) -> Result<Self, ConnectorError> {
        let p = Props::new("httppull", props);
        p.refuse_unknown(
            "httppull lookup",
            &crate::spec::lookup_spec("httppull").accepted(),
        )?;
        Self::read(datasource, &p)
    }

    fn read(datasource: &str, p: &Props<'_>) -> Result<Self, ConnectorError> {
        let request = RequestSpec::parse(p, datasource.trim())?;
        let interval = match p.duration("interval")? {
            Some(d) => d,
            None if p.get("interval").is_some() => {
                return Err(p.error("\"interval\" must be at least 1 ms".into()));
            }
            None => DEFAULT_INTERVAL,
        };
        let body =
            TextProp::parse("body", p.string("body")?.unwrap_or("")).map_err(|e| p.error(e))?;
        Ok(HttpPullConfig {
            request,
            interval,
            incremental: p.boolean("incremental")?.unwrap_or(false),
            body,
            topic: datasource.into(),
            oauth: OAuthSpec::parse(p)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{DEFAULT_TIMEOUT, ResponseType};
    use serde_json::json;

    fn parse(datasource: &str, props: Value) -> Result<HttpPullConfig, String> {
        HttpPullConfig::parse(datasource, props.as_object().unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_refusals() {
        let c = parse("/v1/data", json!({"url": "http://127.0.0.1:9090/api"})).unwrap();
        assert!(
            matches!(&c.request.url, TextProp::Fixed(u) if u == "http://127.0.0.1:9090/api/v1/data")
        );
        assert_eq!(c.interval, DEFAULT_INTERVAL);
        assert_eq!(c.request.timeout, Some(DEFAULT_TIMEOUT));
        assert_eq!(c.request.response_type, ResponseType::Code);
        assert!(!c.incremental);
        let c = parse(
            "",
            json!({"url": "http://h/p?from={{.LastPullTime}}", "interval": "1s",
                   "incremental": true, "method": "post", "body": "{\"to\": {{.PullTime}}}"}),
        )
        .unwrap();
        assert!(c.request.url.is_template() && c.body.is_template() && c.incremental);
        assert_eq!(c.interval, Duration::from_secs(1));
        assert!(
            parse("", json!({}))
                .unwrap_err()
                .contains("\"url\" is required")
        );
        assert!(
            parse("", json!({"url": "http://h/", "interval": 0}))
                .unwrap_err()
                .contains("1 ms")
        );
        parse("", json!({"url": "https://h/"})).unwrap();
        assert!(
            parse("", json!({"url": "http://h/", "oAuth": {}}))
                .unwrap_err()
                .contains("\"oAuth\" needs \"access\"")
        );
        assert!(
            parse(
                "",
                json!({"url": "http://h/", "oAuth": {"access": {"body": "{}"}}})
            )
            .unwrap_err()
            .contains("\"oAuth.access.url\" is required")
        );
        assert!(
            parse("", json!({"url": "http://h/", "oAuth": {"access": {"url": "http://t/", "expiry": "1"}}}))
                .unwrap_err()
                .contains("expiry")
        );
        let c = parse(
            "",
            json!({"url": "http://h/", "oAuth": {"access": {"url": "http://t/", "expire": "{{.expires_in}}"},
                   "refresh": {"url": "http://t/r", "headers": {"token": "{{.token}}"}}}}),
        )
        .unwrap();
        assert!(c.oauth.is_some());
        // A lookup table reads the request, `body` and `lookup`; pulling at an interval is
        // refused there.
        let lookup = |props: Value| {
            HttpPullConfig::parse_lookup("", props.as_object().unwrap()).map_err(|e| e.to_string())
        };
        lookup(json!({"url": "http://h/", "lookup": {"cache": true}, "body": "{}"})).unwrap();
        assert!(
            lookup(json!({"url": "http://h/", "interval": 5}))
                .unwrap_err()
                .contains("unknown property \"interval\"")
        );
        assert!(
            parse("", json!({"url": "http://h/", "intervall": 5}))
                .unwrap_err()
                .contains("unknown property \"intervall\"")
        );
    }
}
