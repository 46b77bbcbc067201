//! Settings of the `rest` sink, parsed and validated once from eKuiper's properties.
//!
//! `method`, `url`, `bodyType` and each `headers` value may be templates over the row
//! (`"url": "http://host/{{.device}}"`, eKuiper's dynamic properties); fixed ones are checked
//! here, rendered ones before each request.

use serde_json::Value;

use crate::ConnectorError;
use crate::http::RequestSpec;
use crate::props::action_props;

/// Settings of a rest sink.
#[derive(Debug, Clone)]
pub struct RestSinkConfig {
    /// The request: `url`, `method`, `bodyType`, `headers`, `timeout`, `responseType`.
    pub request: RequestSpec,
    /// Log each response's status and body (`debugResp`, default false).
    pub debug_resp: bool,
    /// One request per row instead of one JSON array per batch (`sendSingle`).
    pub send_single: bool,
    /// Keep null fields as `null` (`sendNilField`, default false).
    pub send_nil: bool,
    /// Send nothing for a batch without rows (`omitIfEmpty`, default false).
    pub omit_if_empty: bool,
    /// `format` (with `delimiter`, `hasHeader`, `fields`) and `compression`.
    pub format: std::sync::Arc<crate::codec::sink_format::SinkFormat>,
}

impl RestSinkConfig {
    /// Validates the action's properties.
    pub fn parse(props: &Value) -> Result<Self, ConnectorError> {
        let props = action_props("rest", props)?;
        let request = RequestSpec::parse(&props, "")?;
        if let Some((name, _)) = props.get("oauth") {
            return Err(props.error(format!(
                "\"{name}\" is supported by the httppull source and lookup only; \
                 put the rest sink's token in \"headers\""
            )));
        }
        props.refuse_unknown_sink_keys("rest sink", &crate::spec::sink_spec("rest").accepted())?;
        Ok(RestSinkConfig {
            request,
            debug_resp: props.boolean("debugresp")?.unwrap_or(false),
            send_single: props.boolean("sendsingle")?.unwrap_or(false),
            send_nil: props.boolean("sendnilfield")?.unwrap_or(false),
            omit_if_empty: props.boolean("omitifempty")?.unwrap_or(false),
            format: std::sync::Arc::new(crate::codec::sink_format::SinkFormat::parse(
                &props, true,
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::template::TextProp;
    use crate::http::{DEFAULT_TIMEOUT, ResponseType};
    use serde_json::json;

    fn reason(props: Value) -> String {
        crate::error::config_reason(RestSinkConfig::parse(&props).unwrap_err())
    }

    #[test]
    fn defaults_follow_ekuiper() {
        let c = RestSinkConfig::parse(&json!({"url": "http://127.0.0.1:9/x"})).unwrap();
        assert!(matches!(&c.request.method, TextProp::Fixed(m) if m == "get"));
        assert!(matches!(&c.request.body_type, TextProp::Fixed(b) if b == "none"));
        assert_eq!(c.request.timeout, Some(DEFAULT_TIMEOUT));
        assert_eq!(c.request.response_type, ResponseType::Code);
        assert!(!c.send_single && !c.debug_resp && !c.request.is_dynamic());
        let c = RestSinkConfig::parse(
            &json!({"url": "http://h/x", "method": "POST", "timeout": "0", "sendSingle": true}),
        )
        .unwrap();
        assert!(matches!(&c.request.body_type, TextProp::Fixed(b) if b == "json"));
        assert_eq!(c.request.timeout, None);
        assert!(c.send_single);
        let c = RestSinkConfig::parse(&json!({
            "url": "http://h/{{.device}}", "method": "post",
            "headers": {"X-Id": "{{.id}}", "Authorization": "Basic abc"}
        }))
        .unwrap();
        assert!(c.request.is_dynamic());
    }

    #[test]
    fn refusals_name_the_property() {
        assert_eq!(reason(json!({})), "\"url\" is required");
        assert!(reason(json!({"url": "http://h/", "method": "trace"})).contains("trace"));
        assert!(reason(json!({"url": "http://h/", "bodyType": "yaml"})).contains("yaml"));
        assert!(reason(json!({"url": "http://h/", "bodyType": "formdata"})).contains("formdata"));
        assert!(
            reason(json!({"url": "http://h/", "rootCaPath": "/ca"})).contains("\"rootCaPath\"")
        );
        assert!(reason(json!({"url": "http://h/", "oAuth": {}})).contains("\"oAuth\""));
        assert_eq!(
            reason(json!({"url": "http://h/", "urll": "x"})),
            "rest sink: unknown property \"urll\""
        );
        assert!(reason(json!({"url": "http://h/", "enableCache": true})).contains("enableCache"));
        RestSinkConfig::parse(&json!({"url": "http://h/", "enableCache": false, "concurrency": 1}))
            .unwrap();
        assert!(
            reason(json!({"url": "http://h/", "headers": {"bad name": "x"}})).contains("bad name")
        );
        assert!(reason(json!({"url": "http://h/", "headers": "not json"})).contains("headers"));
        assert!(reason(json!({"url": "http://h/{{.a", "method": "post"})).contains("template"));
        assert!(reason(json!({"url": "http://h/", "timeout": -1})).contains("timeout"));
        assert!(reason(json!({"url": "http://h/", "responseType": "x"})).contains("responseType"));
    }
}
