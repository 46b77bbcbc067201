//! One rule test run from the CLI (`test rule`, `query`): `POST /ruletest`, the WebSocket of
//! its results on the push listener (`/test/{id}`, with the token), `POST /ruletest/{id}/start`,
//! the results as they arrive, and `DELETE /ruletest/{id}` at the end.

use futures_util::StreamExt as _;
use quiver_connectors::websocket::{ClientTarget, Connection, connect_with};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Client, Method, segment};
use crate::error::CliError;

/// A rule test the server runs, and its results' connection.
pub struct Trial {
    client: Client,
    id: String,
    ws: Connection,
}

impl Trial {
    /// Creates the test `body` (`{id, sql, mockSource, sinkProps}`), connects to its results
    /// and starts it. A failure after the create deletes the test again.
    pub async fn open(client: Client, body: &Value) -> Result<Trial, CliError> {
        let reply = client
            .send(Method::POST, "/ruletest", Some(body.to_string()))
            .await?;
        let answer = reply.json()?;
        let (Some(id), Some(port)) = (
            answer["id"].as_str().map(str::to_string),
            answer["port"].as_u64().and_then(|p| u16::try_from(p).ok()),
        ) else {
            return Err(CliError::BadAnswer(reply.text()));
        };
        let ws = match connect(&client, port, &id).await {
            Ok(ws) => ws,
            Err(e) => {
                let _ = delete(&client, &id).await;
                return Err(e);
            }
        };
        let trial = Trial { client, id, ws };
        let path = format!("/ruletest/{}/start", segment(&trial.id));
        if let Err(e) = trial.client.send(Method::POST, &path, None).await {
            let _ = trial.close().await;
            return Err(e);
        }
        Ok(trial)
    }

    /// The next result the test sent (a JSON text: one row, or a list of rows); None once
    /// the server has ended the test.
    pub async fn next(&mut self) -> Option<Result<String, CliError>> {
        loop {
            return match self.ws.next().await? {
                Ok(Message::Text(text)) => Some(Ok(text.to_string())),
                Ok(Message::Binary(bytes)) => {
                    Some(Ok(String::from_utf8_lossy(&bytes).into_owned()))
                }
                Ok(Message::Close(_)) => None,
                Ok(_) => continue,
                Err(e) => Some(Err(CliError::Unreachable {
                    host: format!("the results of test {}", self.id),
                    reason: e.to_string(),
                })),
            };
        }
    }

    /// Deletes the test on the server.
    pub async fn close(mut self) -> Result<(), CliError> {
        let _ = self.ws.close(None).await;
        delete(&self.client, &self.id).await
    }
}

async fn delete(client: &Client, id: &str) -> Result<(), CliError> {
    let path = format!("/ruletest/{}", segment(id));
    client.send(Method::DELETE, &path, None).await.map(|_| ())
}

/// Connects to `/test/{id}` on the push listener at `port` of `--host`'s host, through the
/// websocket connector's client (TLS when `--host` is https), with the token.
async fn connect(client: &Client, port: u16, id: &str) -> Result<Connection, CliError> {
    let target = ClientTarget {
        host: client.host()?,
        port,
        path: format!("/test/{}", segment(id)),
        tls: client.tls().cloned(),
    };
    connect_with(&target, client.authorization())
        .await
        .map_err(|reason| CliError::Unreachable {
            host: format!("{}:{port}", target.host),
            reason,
        })
}

/// The rows of one result message, for printing one per line: a list's items, or the value.
pub fn rows(message: &str) -> Vec<String> {
    match serde_json::from_str::<Value>(message) {
        Ok(Value::Array(rows)) => rows.iter().map(Value::to_string).collect(),
        Ok(value) => vec![value.to_string()],
        Err(_) => vec![message.to_string()],
    }
}
