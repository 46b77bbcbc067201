//! The httppull source task: one request per interval on one keep-alive client.

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Value, json};

use super::HttpPullConfig;
use crate::http::{HttpClient, OAuth};
use crate::{ConnectorError, RawMessage, Source, SourceEvent, SourceOutput};

/// Polls an HTTP endpoint.
#[derive(Debug)]
pub struct HttpPullSource {
    config: HttpPullConfig,
}

impl HttpPullSource {
    /// A source with `config`; it connects on the first pull.
    pub fn new(config: HttpPullConfig) -> Self {
        HttpPullSource { config }
    }
}

#[async_trait]
impl Source for HttpPullSource {
    async fn run(&mut self, out: SourceOutput) -> Result<(), ConnectorError> {
        let client = HttpClient::new(self.config.request.timeout, &self.config.request.tls);
        let oauth = self.config.oauth.clone().map(OAuth::new);
        let interval_ms = self.config.interval.as_millis() as i64;
        let mut ticker = tokio::time::interval(self.config.interval);
        // A slow rule or server delays the next pull rather than bunching missed ones.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // eKuiper: the first pull's window is one interval long.
        let mut last_pull: Option<i64> = None;
        let mut last_body: Option<Bytes> = None;
        let mut failures = 0u64;
        loop {
            ticker.tick().await;
            let pull_time = chrono::Utc::now().timestamp_millis();
            let last = last_pull.unwrap_or(pull_time - interval_ms);
            let times = pull_times(pull_time, last);
            let body = match pull(&self.config, &client, oauth.as_ref(), &times).await {
                Ok(body) => body,
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!("httppull source: {e}; retrying every interval");
                    } else {
                        tracing::debug!("httppull source: pull {failures} failed: {e}");
                    }
                    continue;
                }
            };
            if failures > 0 {
                tracing::info!("httppull source: pulling again after {failures} failures");
                failures = 0;
            }
            // Only a successful pull moves the window eKuiper's templates see.
            last_pull = Some(pull_time);
            if self.config.incremental {
                if last_body.as_ref() == Some(&body) {
                    continue;
                }
                last_body = Some(body.clone());
            }
            if body.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let message = RawMessage::new(body, self.config.topic.clone());
            out.send(SourceEvent::Raw(vec![message])).await?;
        }
    }
}

/// One pull: the answer's body, or what went wrong (method, URL and the answer's start).
/// With `oauth`, the token fields join `times` as the templates' data.
pub(super) async fn pull(
    config: &HttpPullConfig,
    client: &HttpClient,
    oauth: Option<&OAuth>,
    times: &Value,
) -> Result<Bytes, String> {
    let with_tokens;
    let data = match oauth {
        None => times,
        Some(oauth) => {
            let mut fields = oauth.tokens(client).await?;
            if let Value::Object(t) = times {
                fields.extend(t.clone());
            }
            with_tokens = Value::Object(fields);
            &with_tokens
        }
    };
    let request = &config.request;
    let target = request.target(data)?;
    let what = target.describe();
    let body = config.body.render(data)?;
    let response = client
        .send(target.request(body.into())?)
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    request
        .response_type
        .check(&response)
        .map_err(|e| format!("{what} {e}"))?;
    Ok(response.body)
}

/// eKuiper's dynamic properties of a pull: this pull and the last one (Unix ms).
pub(super) fn pull_times(pull_time: i64, last_pull: i64) -> Value {
    json!({"PullTime": pull_time, "LastPullTime": last_pull})
}
