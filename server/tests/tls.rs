//! TLS end to end, with certificates the test makes (rcgen): rules reading and writing through a
//! private Mosquitto's TLS listener (`ssl://`, `mqtts://`, eKuiper's `rootCaPath` and
//! `insecureSkipVerify`, MQTT 5 over TLS), a wrong CA refused with a clear error in the rule
//! status; the REST API and push listener over HTTPS.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::mqtt::{PrivateBroker, TestClient, free_port, unique};
use common::pki::Pki;
use common::{Server, https, publish_until_received, temp_dir};
use serde_json::{Value, json};

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A private Mosquitto with a plain listener on `plain` (for the test's own clients) and a
/// TLS listener on `tls` serving the test CA's server certificate; `listener` adds settings
/// of that TLS listener.
fn tls_broker(pki: &Pki, plain: u16, tls: u16, listener: &str) -> PrivateBroker {
    let extra = format!(
        "listener {tls} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n{listener}",
        path(&pki.ca),
        path(&pki.cert),
        path(&pki.key)
    );
    let broker = PrivateBroker::start_with(plain, &extra);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", tls)).is_err() {
        assert!(Instant::now() < deadline, "no TLS listener on {tls}");
        std::thread::sleep(Duration::from_millis(50));
    }
    broker
}

/// Creates `rule`, then returns what it publishes on `output` once `payload` is published on
/// `input` (both topics on the broker's plain listener `port`).
async fn rule_output(
    server: &Server,
    port: u16,
    rule: Value,
    output: &str,
    input: &str,
    payload: &str,
) -> String {
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    let publisher = TestClient::start(port, None);
    let mut subscriber = TestClient::start(port, Some(output.to_string()));
    subscriber.subscribed().await;
    publish_until_received(&publisher, &mut subscriber, input, payload).await
}

/// Polls the rule status until `done` holds.
async fn wait_status(server: &Server, rule: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, st) = tokio::task::block_in_place(|| {
            server.json("GET", &format!("/rules/{rule}/status"), None)
        });
        if done(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "rule {rule}: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A private TLS broker (see [`tls_broker`]) and a quiverd whose `--config` holds the MQTT
/// profiles `profiles` writes (YAML under `mqtt:`, given the PKI and the TLS port).
struct Setup {
    pki: Pki,
    plain: u16,
    tls: u16,
    server: Server,
    _broker: PrivateBroker,
}

fn setup(name: &str, listener: &str, profiles: impl FnOnce(&Pki, u16) -> String) -> Setup {
    let dir = temp_dir(name);
    let pki = Pki::new(&dir);
    let (plain, tls) = (free_port(), free_port());
    let broker = tls_broker(&pki, plain, tls, listener);
    let config = dir.join("quiver.yaml");
    std::fs::write(&config, format!("mqtt:\n{}", profiles(&pki, tls))).unwrap();
    let server = tokio::task::block_in_place(|| Server::start_with(&dir, Some(&config)));
    Setup {
        pki,
        plain,
        tls,
        server,
        _broker: broker,
    }
}

/// `CREATE STREAM name (columns)` over MQTT topic `prefix/name` with profile `conf`.
fn create_stream(server: &Server, prefix: &str, name: &str, columns: &str, conf: &str) {
    server.create_stream(&format!(
        r#"CREATE STREAM {name} ({columns}) WITH (DATASOURCE="{prefix}/{name}", TYPE="mqtt", FORMAT="json", CONF_KEY="{conf}")"#
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_read_and_write_over_mqtts_and_a_wrong_ca_is_refused() {
    let Setup {
        pki,
        plain,
        tls,
        server,
        _broker,
    } = setup("tls-mqtt", "", |pki, tls| {
        format!(
            "  default:\n    server: \"ssl://127.0.0.1:{tls}\"\n    rootCaPath: \"{}\"\n  \
             wrongca:\n    server: \"ssl://127.0.0.1:{tls}\"\n    rootCaPath: \"{}\"\n  \
             skip:\n    server: \"mqtts://localhost:{tls}\"\n    insecureSkipVerify: true\n    \
             protocolVersion: \"5\"\n",
            path(&pki.ca),
            path(&pki.other_ca)
        )
    });
    let prefix = format!("quiver-tls/{}", unique());
    let columns = "device STRING, temperature FLOAT";
    create_stream(&server, &prefix, "good", columns, "default");
    create_stream(&server, &prefix, "bad", columns, "wrongca");
    create_stream(&server, &prefix, "skipped", columns, "skip");

    // Source and sink both over TLS, trusting the test CA.
    let rule = json!({
        "id": "overtls",
        "sql": "SELECT device, temperature FROM good",
        "actions": [{"mqtt": {"server": format!("mqtts://127.0.0.1:{tls}"),
                              "rootCaPath": path(&pki.ca),
                              "topic": format!("{prefix}/out"), "sendSingle": true}}]
    });
    let got = rule_output(
        &server,
        plain,
        rule,
        &format!("{prefix}/out"),
        &format!("{prefix}/good"),
        r#"{"device":"a","temperature":21}"#,
    )
    .await;
    assert_eq!(got, r#"{"device":"a","temperature":21}"#);
    let st = wait_status(&server, "overtls", |st| {
        st["source_good_0_connection_status"] == json!(1)
    })
    .await;
    assert_eq!(
        st["source_good_0_connection_last_disconnected_message"],
        json!("")
    );

    // A CA that did not sign the broker's certificate: the connection is refused, the rule
    // keeps running and its status says why.
    let rule = json!({"id": "wrongca", "sql": "SELECT * FROM bad", "actions": [{"log": {}}]});
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    let st = wait_status(&server, "wrongca", |st| {
        st["source_bad_0_connection_last_disconnected_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    })
    .await;
    let message = st["source_bad_0_connection_last_disconnected_message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains(&format!("TLS handshake with ssl://127.0.0.1:{tls} failed"))
            && message.contains("UnknownIssuer")
            && message.contains("rootCaPath"),
        "{message}"
    );
    assert_eq!(st["source_bad_0_connection_status"], json!(0));
    assert_eq!(st["status"], json!("running"));

    // insecureSkipVerify: the same unknown issuer is accepted (over MQTT 5 here).
    let rule = json!({
        "id": "skipverify",
        "sql": "SELECT device FROM skipped",
        "actions": [{"mqtt": {"server": format!("tcp://127.0.0.1:{plain}"),
                              "topic": format!("{prefix}/out2"), "sendSingle": true}}]
    });
    let got = rule_output(
        &server,
        plain,
        rule,
        &format!("{prefix}/out2"),
        &format!("{prefix}/skipped"),
        r#"{"device":"b","temperature":1}"#,
    )
    .await;
    assert_eq!(got, r#"{"device":"b"}"#);

    // TLS properties on a plain-TCP server are refused by name, not ignored.
    let rule = json!({
        "id": "plain",
        "sql": "SELECT * FROM good",
        "actions": [{"mqtt": {"server": format!("tcp://127.0.0.1:{plain}"),
                              "insecureSkipVerify": true, "topic": "x"}}]
    });
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("insecureSkipVerify") && body.contains("TLS connections only"),
        "{body}"
    );
    tokio::task::block_in_place(|| server.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_requires_a_client_certificate_gets_ours() {
    use base64::Engine as _;
    let Setup {
        pki,
        plain,
        tls,
        server,
        _broker,
    } = setup("tls-mutual", "require_certificate true\n", |pki, tls| {
        format!(
            "  mutual:\n    server: \"ssl://127.0.0.1:{tls}\"\n    rootCaPath: \"{}\"\n    \
             certificationPath: \"{}\"\n    privateKeyPath: \"{}\"\n  \
             nocert:\n    server: \"ssl://127.0.0.1:{tls}\"\n    rootCaPath: \"{}\"\n",
            path(&pki.ca),
            path(&pki.client_cert),
            path(&pki.client_key),
            path(&pki.ca)
        )
    });
    let prefix = format!("quiver-mtls/{}", unique());
    create_stream(&server, &prefix, "withcert", "v BIGINT", "mutual");
    create_stream(&server, &prefix, "nocert", "v BIGINT", "nocert");

    // The source with the certificate files, the sink with the same certificates as base64
    // (eKuiper's *Raw forms).
    let raw =
        |p: &Path| base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).unwrap());
    let rule = json!({
        "id": "mutual",
        "sql": "SELECT v FROM withcert",
        "actions": [{"mqtt": {"server": format!("mqtts://127.0.0.1:{tls}"),
                              "rootCARaw": raw(&pki.ca),
                              "certificationRaw": raw(&pki.client_cert),
                              "privateKeyRaw": raw(&pki.client_key),
                              "topic": format!("{prefix}/out"), "sendSingle": true}}]
    });
    let got = rule_output(
        &server,
        plain,
        rule,
        &format!("{prefix}/out"),
        &format!("{prefix}/withcert"),
        r#"{"v":7}"#,
    )
    .await;
    assert_eq!(got, r#"{"v":7}"#);

    // Without a client certificate the broker hangs up, and the status says so.
    let rule = json!({"id": "nocert", "sql": "SELECT * FROM nocert", "actions": [{"log": {}}]});
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    let st = wait_status(&server, "nocert", |st| {
        st["source_nocert_0_connection_last_disconnected_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    })
    .await;
    assert_eq!(st["source_nocert_0_connection_status"], json!(0), "{st}");
    tokio::task::block_in_place(|| server.stop());
}

#[test]
fn rest_api_and_push_listener_serve_https() {
    let dir = temp_dir("tls-rest");
    let pki = Pki::new(&dir);
    let args = [
        "--tls-cert".to_string(),
        path(&pki.cert).to_string(),
        "--tls-key".to_string(),
        path(&pki.key).to_string(),
    ];
    let server = Server::spawn(&dir.join("data"), &args, &[], None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !https(&pki.ca, server.addr(), "GET", "/ping", "").is_ok_and(|r| r.0 == 200) {
        assert!(
            Instant::now() < deadline,
            "quiverd did not answer /ping over HTTPS"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The REST API works as before, over TLS.
    let stream = json!({"sql": r#"CREATE STREAM pushed (v BIGINT) WITH (DATASOURCE="/in", TYPE="httppush", FORMAT="json")"#});
    let (status, body) = https(
        &pki.ca,
        server.addr(),
        "POST",
        "/streams",
        &stream.to_string(),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let rule = json!({"id": "p", "sql": "SELECT v FROM pushed", "actions": [{"log": {}}]});
    let (status, body) =
        https(&pki.ca, server.addr(), "POST", "/rules", &rule.to_string()).unwrap();
    assert_eq!(status, 201, "{body}");

    // The push listener too: a pushed message reaches the rule.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) =
            https(&pki.ca, server.push_addr(), "POST", "/in", r#"{"v":1}"#).unwrap();
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "push never reached the rule: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = https(&pki.ca, server.addr(), "GET", "/rules/p/status", "").unwrap();
        let st: Value = serde_json::from_str(&body).unwrap();
        if st["sink_log_0_0_records_in_total"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pushed row never reached the sink: {st}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // No plain-HTTP fallback, and a client that trusts another CA is refused.
    let plain = common::http(server.addr(), "GET", "/ping", &[], None);
    assert!(!matches!(plain, Ok((200, _))), "{plain:?}");
    let e = https(&pki.other_ca, server.addr(), "GET", "/ping", "")
        .unwrap_err()
        .to_string();
    assert!(e.contains("UnknownIssuer"), "{e}");
}

#[test]
fn tls_flags_come_in_pairs_and_bad_files_stop_the_start() {
    let dir = temp_dir("tls-flags");
    let pki = Pki::new(&dir);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_quiverd"))
            .args(["--bind", &format!("127.0.0.1:{}", free_port())])
            .args(["--push-bind", &format!("127.0.0.1:{}", free_port())])
            .args(["--data-dir", path(&dir.join("data"))])
            .args(args)
            .output()
            .expect("quiverd runs");
        assert!(!out.status.success());
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let said = run(&["--tls-cert", path(&pki.cert)]);
    assert!(said.contains("--tls-cert needs --tls-key"), "{said}");
    // The CA's certificate with the server's key: not a key pair.
    let said = run(&["--tls-cert", path(&pki.ca), "--tls-key", path(&pki.key)]);
    assert!(said.contains("do not make a key pair"), "{said}");
    let said = run(&[
        "--tls-cert",
        path(&pki.cert),
        "--tls-key",
        path(&dir.join("missing.key")),
    ]);
    assert!(
        said.contains("--tls-key") && said.contains("missing.key"),
        "{said}"
    );
}
