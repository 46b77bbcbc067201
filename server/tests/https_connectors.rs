//! The HTTP connectors over HTTPS, end to end through quiverd: an httppull stream pulls from
//! and a rest action posts to a real HTTPS server on loopback (the test's recording HTTP
//! server behind a TLS front with a certificate the test's CA signed), verified with
//! eKuiper's `rootCaPath`; a server signed by another CA is refused with the reason in the
//! rule status, and `insecureSkipVerify` accepts it.

mod common;

#[path = "../../connectors/tests/support/http.rs"]
mod http;

use std::path::Path;
use std::sync::Arc;

use common::pki::Pki;
use common::{Server, temp_dir, wait_metric, wait_rule_status};
use http::TestServer;
use serde_json::json;

/// A TLS front on a free loopback port: each connection's TLS is ended here and its bytes
/// relayed to the plain HTTP server behind. Stops with the process.
fn tls_front(pki: &Pki, backend: &TestServer) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
    let backend = backend.base.trim_start_matches("http://").to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, backend) = (acceptor.clone(), backend.clone());
                tokio::spawn(async move {
                    // A client that refuses our certificate ends its handshake here.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(&backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
    });
    // Named by the certificate's host name, `localhost`.
    format!("https://localhost:{port}")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[test]
fn httppull_and_rest_speak_https_verified_by_the_given_ca() {
    let web = TestServer::start();
    let dir = temp_dir("https-connectors");
    let pki = Arc::new(Pki::new(&dir));
    let base = tls_front(&pki, &web);
    let config = dir.join("profiles.yaml");
    std::fs::write(
        &config,
        format!(
            "httppull:\n  secure:\n    url: {base}/echo\n    method: post\n    interval: 50\n    incremental: true\n    rootCaPath: {}\n    body: '{{\"device\": \"x\", \"temperature\": 30}}'\n",
            path(&pki.ca)
        ),
    )
    .unwrap();
    let server = Server::start_with(&dir, Some(&config));
    server.create_stream(
        r#"CREATE STREAM pulled (device STRING, temperature FLOAT) WITH (DATASOURCE="/readings", TYPE="httppull", CONF_KEY="secure")"#,
    );
    let rule = json!({
        "id": "secure",
        "sql": "SELECT device, temperature + 1 AS t FROM pulled",
        "actions": [
            {"rest": {"url": format!("{base}/sink"), "method": "post", "rootCaPath": path(&pki.ca)}},
            // Another CA signed nothing here: every request fails verification.
            {"rest": {"url": format!("{base}/wrong-ca"), "method": "post", "rootCaPath": path(&pki.other_ca)}},
            // eKuiper's escape hatch: any certificate is accepted.
            {"rest": {"url": format!("{base}/skip"), "method": "post", "insecureSkipVerify": true}}
        ]
    });
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    let st = wait_metric(&server, "secure", "sink_rest_0_0_records_out_total", 1);
    assert_eq!(st["source_pulled_0_records_in_total"], json!(1), "{st}");
    wait_metric(&server, "secure", "sink_rest_2_0_records_out_total", 1);
    let st = wait_rule_status(&server, "secure", |st| {
        st["sink_rest_1_0_exceptions_total"].as_u64() >= Some(1)
    });
    let reason = st["sink_rest_1_0_last_exception"].as_str().unwrap();
    assert!(
        reason.contains("UnknownIssuer") || reason.contains("certificate"),
        "{reason}"
    );
    let posted: Vec<_> = web
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    let at = |p: &str| posted.iter().filter(|r| r.path == p).count();
    assert!(
        at("/echo/readings") >= 1,
        "the pull went through TLS: {posted:?}"
    );
    assert_eq!(at("/sink"), 1);
    assert_eq!(at("/skip"), 1);
    assert_eq!(at("/wrong-ca"), 0, "a server the CA did not sign got data");
    let sent = posted.iter().find(|r| r.path == "/sink").unwrap();
    assert_eq!(sent.json(), json!([{"device": "x", "t": 31}]));

    // A CA file that does not exist is refused when the rule is created, naming it.
    let (status, body) = server.json(
        "POST",
        "/rules",
        Some(json!({"id": "bad", "sql": "SELECT * FROM pulled",
                    "actions": [{"rest": {"url": format!("{base}/x"), "rootCaPath": "/nonexistent/ca.pem"}}]})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("/nonexistent/ca.pem"), "{body}");
}
