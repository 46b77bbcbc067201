//! Issue 21, items 1, 2 and 4, through the real `quiverd`: eKuiper's JWT RS256 authentication
//! and the static token (401s), browser safety (403 for a foreign `Origin` or a rebinding
//! `Host`, curl-like requests served), the refusal to serve a non-loopback address without
//! authentication, and masked secrets in REST answers.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{Server, free_port, temp_dir};
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
use rsa::signature::{SignatureEncoding as _, Signer as _};
use serde_json::{Value, json};
use sha2::Sha256;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An RS256 token over `claims`, signed by `key`.
fn token(key: &RsaPrivateKey, claims: &Value) -> String {
    let signed = format!(
        "{}.{}",
        b64(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    let signature = SigningKey::<Sha256>::new(key.clone()).sign(signed.as_bytes());
    format!("{signed}.{}", b64(&signature.to_bytes()))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap_or_default()["message"]
        .as_str()
        .unwrap_or(body)
        .to_string()
}

#[test]
fn jwt_rs256_tokens_as_ekuiper_documents_them() {
    let dir = temp_dir("sec-jwt");
    let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("an RSA key");
    std::fs::create_dir_all(dir.join("mgmt")).unwrap();
    std::fs::write(
        dir.join("mgmt/sample_key.pub"),
        key.to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let log = dir.join("quiverd.log");
    let server = Server::start_args(&dir, &["--auth".into(), "jwt".into()], Some(&log));
    let get = |auth: Option<&str>| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        server.request("GET", "/rules", &headers, None)
    };

    // Open: /ping only.
    assert_eq!(server.call("GET", "/ping", None).0, 200);
    let (status, body) = get(None);
    assert_eq!((status, message(&body).as_str()), (401, "missing_token"));
    assert_eq!(server.call("GET", "/", None).0, 401);

    let claims = |extra: Value| {
        let mut c = json!({"iss": "sample_key.pub", "aud": "eKuiper", "exp": now() + 600});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    let good = token(&key, &claims(json!({})));
    assert_eq!(get(Some(&good)), (200, "[]".into()), "a valid token");
    assert_eq!(get(Some(&format!("Bearer {good}"))).0, 200, "with Bearer");
    // eKuiper's own example names the file in another case; the array form of aud.
    let other_case = token(
        &key,
        &claims(json!({"iss": "SAMPLE_KEY.pub", "aud": ["x", "eKuiper"]})),
    );
    assert_eq!(get(Some(&other_case)).0, 200);
    // A write goes through too.
    let (status, body) = server.request(
        "POST",
        "/streams",
        &[("Authorization", good.as_str())],
        Some(
            &json!({"sql": r#"CREATE STREAM demo () WITH (DATASOURCE="demo", TYPE="memory")"#})
                .to_string(),
        ),
    );
    assert_eq!(status, 201, "{body}");
    // Authenticated requests are not subject to the browser checks.
    let (status, _) = server.request(
        "GET",
        "/streams",
        &[
            ("Authorization", good.as_str()),
            ("Origin", "http://evil.example"),
        ],
        None,
    );
    assert_eq!(status, 200);

    let refused = [
        ("garbage", "abc".to_string(), "malformed"),
        (
            "expired",
            token(&key, &claims(json!({"exp": now() - 10}))),
            "expired",
        ),
        (
            "not yet valid",
            token(&key, &claims(json!({"nbf": now() + 600}))),
            "not valid yet",
        ),
        (
            "wrong audience",
            token(&key, &claims(json!({"aud": "other"}))),
            "audience",
        ),
        (
            "no audience",
            token(&key, &json!({"iss": "sample_key.pub", "exp": now() + 600})),
            "audience",
        ),
        (
            "unknown key",
            token(&key, &claims(json!({"iss": "nope.pub"}))),
            "no public key named \"nope.pub\"",
        ),
        (
            "no issuer",
            token(&key, &json!({"aud": "eKuiper"})),
            "issuer",
        ),
        (
            "tampered payload",
            {
                let mut parts: Vec<String> = good.split('.').map(String::from).collect();
                parts[1] = b64(claims(json!({"exp": now() + 99_999}))
                    .to_string()
                    .as_bytes());
                parts.join(".")
            },
            "signature",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none"}"#),
                b64(claims(json!({})).to_string().as_bytes())
            ),
            "RS256",
        ),
    ];
    for (case, bad, why) in &refused {
        let (status, body) = get(Some(bad));
        assert_eq!(status, 401, "{case}: {body}");
        assert!(message(&body).contains(why), "{case}: {body}");
        assert!(!body.contains(bad.as_str()), "{case}: the token is echoed");
    }

    // Refusals are logged (at debug level here), tokens never.
    server.stop();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("missing_token"), "{log}");
    assert!(!log.contains(&good), "the log shows a token");
    for (case, bad, _) in &refused {
        assert!(
            bad.len() < 8 || !log.contains(bad.as_str()),
            "{case} logged"
        );
    }
}

#[test]
fn a_static_token_from_a_file() {
    let dir = temp_dir("sec-token");
    let file = dir.join("token");
    std::fs::write(&file, "s3cret-static-token\n").unwrap();
    let server = Server::start_args(
        &dir,
        &["--auth-token-file".into(), file.display().to_string()],
        None,
    );
    let get = |headers: &[(&str, &str)]| server.request("GET", "/rules", headers, None).0;
    assert_eq!(get(&[]), 401);
    assert_eq!(get(&[("Authorization", "s3cret-static-toke")]), 401);
    assert_eq!(get(&[("Authorization", "s3cret-static-token2")]), 401);
    assert_eq!(get(&[("Authorization", "Basic s3cret-static-token")]), 401);
    assert_eq!(get(&[("Authorization", "s3cret-static-token")]), 200);
    assert_eq!(get(&[("Authorization", "Bearer s3cret-static-token")]), 200);
    assert_eq!(server.call("GET", "/ping", None).0, 200);

    // The push listener needs no token (eKuiper's push clients send none), but a token lifts
    // its browser checks.
    let origin = ("Origin", "http://evil.example");
    assert_eq!(server.push_with("/demo", &[origin], "{}").0, 403);
    let (status, body) = server.push_with(
        "/demo",
        &[origin, ("Authorization", "s3cret-static-token")],
        "{}",
    );
    assert_eq!(status, 404, "past the guard, no rule reads /demo: {body}");
    assert_eq!(server.push("/demo", "{}").0, 404);
}

#[test]
fn browser_requests_are_refused_and_curl_like_ones_served() {
    let dir = temp_dir("sec-browser");
    let server = Server::start_args(
        &dir,
        &[
            "--allow-origin".into(),
            "https://dash.example".into(),
            "--allow-host".into(),
            "quiver.lan".into(),
        ],
        None,
    );
    let port = server.addr().rsplit(':').next().unwrap().to_string();
    let host = |name: &str| format!("{name}:{port}");
    // curl: no Origin, Host localhost:PORT or 127.0.0.1:PORT.
    for h in [host("localhost"), host("127.0.0.1"), host("quiver.lan")] {
        assert_eq!(
            server
                .request("GET", "/rules", &[("Host", h.as_str())], None)
                .0,
            200,
            "{h}"
        );
    }
    let allowed = [("Origin", "https://dash.example")];
    assert_eq!(server.request("GET", "/rules", &allowed, None).0, 200);

    // A page elsewhere posting a rule (text/plain needs no preflight) is refused, and nothing
    // is created.
    let rule = r#"{"id": "evil", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]}"#;
    server.create_stream(r#"CREATE STREAM demo () WITH (DATASOURCE="demo", TYPE="memory")"#);
    let (status, body) = server.request(
        "POST",
        "/rules",
        &[("Origin", "http://evil.example")],
        Some(rule),
    );
    assert_eq!(status, 403, "{body}");
    assert!(message(&body).contains("origin"), "{body}");
    assert_eq!(server.call("GET", "/rules/evil", None).0, 404);
    assert_eq!(
        server
            .request("GET", "/rules", &[("Origin", "null")], None)
            .0,
        403
    );
    // DNS rebinding: the attacker's name resolves to 127.0.0.1, the browser sends its Host.
    let (status, body) = server.request(
        "GET",
        "/rules",
        &[("Host", host("rebind.evil.example").as_str())],
        None,
    );
    assert_eq!(status, 403, "{body}");
    assert!(message(&body).contains("host"), "{body}");
    // /ping stays open.
    assert_eq!(
        server
            .request("GET", "/ping", &[("Origin", "http://evil.example")], None)
            .0,
        200
    );

    // The push listener: the same checks.
    let push_port = server.push_addr().rsplit(':').next().unwrap().to_string();
    assert_eq!(
        server
            .push_with("/demo", &[("Origin", "http://evil.example")], "{}")
            .0,
        403
    );
    assert_eq!(
        server
            .push_with(
                "/demo",
                &[("Host", format!("evil.example:{push_port}").as_str())],
                "{}"
            )
            .0,
        403
    );
    let (status, body) = server.push_with(
        "/demo",
        &[("Host", format!("localhost:{push_port}").as_str())],
        "{}",
    );
    assert_eq!(status, 404, "curl-like push passes the guard: {body}");
}

/// Runs quiverd with `args` until it exits (or `wait` passes); its exit status, if it exited,
/// and its output.
fn run_quiverd(args: &[String], wait: Duration) -> (Option<std::process::ExitStatus>, String) {
    let dir = temp_dir(&format!("sec-bind-{}", free_port()));
    let log = dir.join("out.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quiverd"))
        .args(["--push-bind", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(&dir)
        .args(["--workers", "1"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + wait;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(&log).unwrap())
}

#[test]
fn a_non_loopback_bind_needs_authentication_or_consent() {
    let bind = |port: u16| vec!["--bind".to_string(), format!("0.0.0.0:{port}")];
    let (status, out) = run_quiverd(&bind(free_port()), Duration::from_secs(20));
    let status = status.expect("quiverd should exit");
    assert!(!status.success(), "{out}");
    assert!(out.contains("refusing to serve the REST API"), "{out}");
    assert!(out.contains("--allow-unauthenticated"), "{out}");

    // With consent it serves, and says why that is risky.
    let port = free_port();
    let mut args = bind(port);
    args.push("--allow-unauthenticated".into());
    let (status, out) = run_quiverd(&args, Duration::from_secs(3));
    assert!(status.is_none(), "quiverd stopped: {out}");
    assert!(out.contains("without authentication"), "{out}");

    // With authentication it serves.
    let dir = temp_dir("sec-bind-token");
    let file = dir.join("token");
    std::fs::write(&file, "t0ken").unwrap();
    let mut args = bind(free_port());
    args.extend(["--auth-token-file".into(), file.display().to_string()]);
    let (status, out) = run_quiverd(&args, Duration::from_secs(3));
    assert!(status.is_none(), "quiverd stopped: {out}");
}

#[test]
fn secrets_are_masked_in_rest_answers_and_stored_as_given() {
    let dir = temp_dir("sec-mask");
    let log = dir.join("quiverd.log");
    let server = Server::start_args(&dir, &[], Some(&log));
    server.create_stream(r#"CREATE STREAM demo () WITH (DATASOURCE="demo", TYPE="memory")"#);
    let closed = free_port();
    let rule = json!({
        "id": "r",
        "sql": "SELECT * FROM demo",
        "actions": [
            {"mqtt": {"server": format!("tcp://127.0.0.1:{closed}"), "topic": "t",
                      "username": "u", "password": "hunter2-mqtt"}},
            {"memory": {"topic": "out", "accessToken": "tok-secret-1",
                        "url": "mysql://root:dbpw-9@127.0.0.1:3306/test"}}
        ]
    });
    assert_eq!(server.call("POST", "/rules", Some(rule.clone())).0, 201);
    let secrets = ["hunter2-mqtt", "tok-secret-1", "dbpw-9"];

    let (status, shown) = server.json("GET", "/rules/r", None);
    assert_eq!(status, 200);
    let mut want = rule.clone();
    want["actions"][0]["mqtt"]["password"] = json!("******");
    want["actions"][1]["memory"]["accessToken"] = json!("******");
    want["actions"][1]["memory"]["url"] = json!("mysql://root:******@127.0.0.1:3306/test");
    assert_eq!(shown, want);

    // Editing what GET showed keeps the stored secrets (the mask is never stored).
    let mut edited = shown.clone();
    edited["actions"][1]["memory"]["topic"] = json!("out2");
    let (status, body) = server.call("PUT", "/rules/r", Some(edited.clone()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.json("GET", "/rules/r", None).1, edited);

    // Nothing else shows them either.
    std::thread::sleep(Duration::from_millis(300));
    for path in [
        "/rules",
        "/rules/r/status",
        "/rules/status/all",
        "/rules/r/explain",
        "/rules/r/topo",
    ] {
        let (status, body) = server.call("GET", path, None);
        assert_eq!(status, 200, "{path}: {body}");
        for s in secrets {
            assert!(!body.contains(s), "{path} shows {s}: {body}");
        }
    }
    // An error that echoes a URL with a password.
    let (status, body) = server.call(
        "POST",
        "/rules",
        Some(json!({"id": "bad", "sql": "SELECT * FROM demo",
            "actions": [{"mqtt": {"server": "ftp://u:srvpw-5@127.0.0.1:1", "topic": "t"}}]})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("srvpw-5"), "{body}");
    assert!(body.contains("ftp://u:******@127.0.0.1:1"), "{body}");

    // A refused request whose Origin carries a password: the answer and the (debug) log line
    // that name the Origin mask it.
    let (status, body) = server.request(
        "GET",
        "/rules",
        &[("Origin", "http://u:originpw-2@evil.example")],
        None,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("http://u:******@evil.example"), "{body}");

    // Stored as given, the edit included: the catalog has the secrets, so the sinks get them.
    server.stop();
    let stored = quiver_server::catalog::Catalog::open(&dir)
        .unwrap()
        .rule_json("r")
        .unwrap()
        .expect("rule r is stored");
    let mut want = rule;
    want["actions"][1]["memory"]["topic"] = json!("out2");
    assert_eq!(serde_json::from_str::<Value>(&stored).unwrap(), want);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("http://u:******@evil.example"), "{log}");
    for s in secrets.iter().chain(&["srvpw-5", "originpw-2"]) {
        assert!(!log.contains(s), "the log shows {s}");
    }
}
