//! The `rest` sink: sends each result batch to an HTTP endpoint, eKuiper's way.
//!
//! - A batch is one request with a JSON array body; with `sendSingle` each row is a request of
//!   its own with a JSON object body. A `dataTemplate`'s output is sent as it is.
//! - Templated properties (`url`, `method`, `bodyType`, `headers`) are rendered per row; rows
//!   of a batch that render to different targets go out as one request per run of equal
//!   targets, in order. A templated batch payload (`dataTemplate` without `sendSingle`) is
//!   sent to the target of the batch's first row.
//! - A request fails on a transport error, a timeout, or a non-2xx answer; the failure names
//!   the method, URL, status and the start of the body, and counts as an error of the batch
//!   (the rule keeps running). The other requests of the batch are still sent.
//! - One keep-alive client per sink: requests reuse the open connection.

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use super::config::RestSinkConfig;
use crate::codec::encode;
use crate::http::{BodyType, HttpClient, Target, form};
use crate::{ConnectorError, Sink};

/// Sends result batches to an HTTP endpoint.
#[derive(Debug)]
pub struct RestSink {
    config: RestSinkConfig,
    client: HttpClient,
    /// The target when no property depends on the row.
    fixed: Option<Target>,
}

impl RestSink {
    /// A sink with `config`; it connects on the first request.
    pub fn new(config: RestSinkConfig) -> Self {
        let client = HttpClient::new(config.request.timeout, &config.request.tls);
        let fixed = if config.request.is_dynamic() {
            None
        } else {
            config.request.target(&Value::Null).ok()
        };
        RestSink {
            config,
            client,
            fixed,
        }
    }

    /// The settings this sink was created with.
    pub fn config(&self) -> &RestSinkConfig {
        &self.config
    }

    /// The target for `row` (the fixed one when nothing is templated).
    fn target_for(&self, row: &Value) -> Result<Target, String> {
        match &self.fixed {
            Some(t) => Ok(t.clone()),
            None => self.config.request.target(row),
        }
    }

    /// Sends one request; the error names the method, URL and what went wrong, and says
    /// whether the request itself was refused (a 4xx answer other than 408 and 429), which
    /// sending again cannot mend.
    async fn send(&self, target: &Target, body: Bytes) -> Result<(), (String, bool)> {
        let what = target.describe();
        let mut request = target.request(body).map_err(|e| (e, true))?;
        // A compressed body says how, unless the action's `headers` already do.
        if let Some(token) = self.config.format.compression.http_content_encoding() {
            request
                .headers_mut()
                .entry(hyper::header::CONTENT_ENCODING)
                .or_insert(hyper::header::HeaderValue::from_static(token));
        }
        let response = self
            .client
            .send(request)
            .await
            .map_err(|e| (format!("{what}: {e}"), false))?;
        let status = response.status.as_u16();
        let refused = (400..500).contains(&status) && status != 408 && status != 429;
        if self.config.debug_resp {
            tracing::info!(
                "rest sink {what}: response {}: {}",
                response.status,
                response.excerpt()
            );
        }
        self.config
            .request
            .response_type
            .check(&response)
            .map_err(|e| (format!("{what} {e}"), refused))
    }

    /// Sends requests in order, going on after a failure; the error counts them and quotes
    /// the first.
    async fn send_all(
        &self,
        requests: Vec<Result<(Target, Bytes), String>>,
    ) -> Result<(), ConnectorError> {
        let total = requests.len();
        let mut failed = 0;
        let mut first = None;
        // Whether every failure was a refusal of the request itself: only then is the batch
        // not worth sending again.
        let mut all_refused = true;
        for request in requests {
            let sent = match request {
                Ok((target, body)) => self.send(&target, body).await,
                Err(e) => Err((e, true)),
            };
            if let Err((e, refused)) = sent {
                failed += 1;
                all_refused &= refused;
                first.get_or_insert(e);
            }
        }
        let reason = match first {
            None => return Ok(()),
            Some(e) if total == 1 => e,
            Some(e) => format!("{failed} of {total} requests failed; the first: {e}"),
        };
        Err(if all_refused {
            ConnectorError::Rejected {
                connector: "rest",
                reason,
            }
        } else {
            io_error(reason)
        })
    }
}

#[async_trait]
impl Sink for RestSink {
    async fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let c = &self.config;
        if !c.format.is_plain_json() {
            // Another format, or compression: the bodies are the format's messages.
            let bodies = c
                .format
                .messages(batch, c.send_single, c.send_nil, c.omit_if_empty)?;
            return self.send_bodies(Some(batch), &bodies).await;
        }
        let n = batch.num_rows();
        // Templates and form bodies read the rows as objects.
        let needs_rows = self
            .fixed
            .as_ref()
            .is_none_or(|t| t.body_type == BodyType::Form);
        // An empty batch is `[]` to a fixed JSON-ish target, nothing otherwise.
        if n == 0 && (self.config.omit_if_empty || self.config.send_single || needs_rows) {
            return Ok(());
        }
        let rows: Vec<Value> = if needs_rows {
            encode::batch_to_rows(batch, self.config.send_nil)
                .into_iter()
                .map(Value::Object)
                .collect()
        } else {
            Vec::new()
        };
        let row = |i: usize| rows.get(i).unwrap_or(&Value::Null);
        let requests = if self.config.send_single {
            encode::batch_to_json_objects(batch, self.config.send_nil)
                .into_iter()
                .enumerate()
                .map(|(i, json)| {
                    let target = self.target_for(row(i))?;
                    let body = row_body(&target, json, row(i));
                    Ok((target, body))
                })
                .collect()
        } else if let Some(target) = &self.fixed {
            vec![
                batch_body(target, batch, &rows, self.config.send_nil).map(|b| (target.clone(), b)),
            ]
        } else {
            // Runs of consecutive rows with the same target: one request each.
            let targets: Vec<Result<Target, String>> =
                (0..n).map(|i| self.target_for(row(i))).collect();
            let mut requests = Vec::new();
            let mut start = 0;
            while start < n {
                let mut end = start + 1;
                while end < n && targets[end] == targets[start] {
                    end += 1;
                }
                requests.push(match &targets[start] {
                    Ok(t) => batch_body(
                        t,
                        &batch.slice(start, end - start),
                        &rows[start..end],
                        self.config.send_nil,
                    )
                    .map(|b| (t.clone(), b)),
                    Err(e) => Err(e.clone()),
                });
                start = end;
            }
            requests
        };
        self.send_all(requests).await
    }

    fn accepts_payloads(&self) -> bool {
        true
    }

    async fn collect_payloads(&mut self, payloads: &[Vec<u8>]) -> Result<(), ConnectorError> {
        let bodies = self
            .config
            .format
            .payloads(payloads, self.config.send_single)?;
        self.send_bodies(None, &bodies).await
    }

    async fn collect_rendered(
        &mut self,
        batch: &RecordBatch,
        payloads: &[Vec<u8>],
    ) -> Result<(), ConnectorError> {
        let bodies = self
            .config
            .format
            .payloads(payloads, self.config.send_single)?;
        self.send_bodies(Some(batch), &bodies).await
    }
}

impl RestSink {
    /// Sends encoded bodies (a `dataTemplate`'s or a `format`'s output), each to its target:
    /// the fixed one, or the one the row it was made from (the first row for a batch) names.
    async fn send_bodies(
        &mut self,
        batch: Option<&RecordBatch>,
        bodies: &[Vec<u8>],
    ) -> Result<(), ConnectorError> {
        if let Some(target) = &self.fixed {
            let requests = bodies
                .iter()
                .map(|p| Ok((target.clone(), payload_body(target, p))))
                .collect();
            return self.send_all(requests).await;
        }
        let Some(batch) = batch else {
            return Err(io_error(
                "templated properties need the rows the payload was made from".into(),
            ));
        };
        let rows: Vec<Value> = encode::batch_to_rows(batch, self.config.send_nil)
            .into_iter()
            .map(Value::Object)
            .collect();
        let per_row = self.config.send_single && bodies.len() == rows.len();
        let requests = bodies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let row = rows
                    .get(if per_row { i } else { 0 })
                    .unwrap_or(&Value::Null);
                let target = self.target_for(row)?;
                Ok((target.clone(), payload_body(&target, p)))
            })
            .collect();
        self.send_all(requests).await
    }
}

/// The body of a one-row request: the row as JSON, or as a form.
fn row_body(target: &Target, json: Vec<u8>, row: &Value) -> Bytes {
    match (target.body_type, row) {
        (BodyType::Form, Value::Object(map)) => form(map).into(),
        _ => json.into(),
    }
}

/// The body of a batch request: a JSON array, or a form of its one row.
fn batch_body(
    target: &Target,
    batch: &RecordBatch,
    rows: &[Value],
    send_nil: bool,
) -> Result<Bytes, String> {
    if target.body_type != BodyType::Form {
        return Ok(encode::batch_to_json_array(batch, send_nil).into());
    }
    match rows {
        [Value::Object(map)] => Ok(form(map).into()),
        _ => Err(format!(
            "{} {}: a form body holds one row, the batch has {}; set \"sendSingle\": true",
            target.method,
            target.uri,
            batch.num_rows()
        )),
    }
}

/// A `dataTemplate` payload as the body: a JSON object becomes a form when the body type is
/// form; anything else is sent as it is.
fn payload_body(target: &Target, payload: &[u8]) -> Bytes {
    if target.body_type == BodyType::Form
        && let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(payload)
    {
        return form(&map).into();
    }
    Bytes::copy_from_slice(payload)
}

fn io_error(reason: String) -> ConnectorError {
    ConnectorError::Io {
        connector: "rest",
        reason,
    }
}
