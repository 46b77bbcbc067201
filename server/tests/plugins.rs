//! End-to-end tests of native plugins with real plugin libraries.
//!
//! Each test plugin under `tests/plugins/` is its own Cargo project (own Cargo.lock), built
//! here as a cdylib, zipped in eKuiper's layout, served from a loopback HTTP server (or a
//! `file://` URL), installed into a running `quiverd` over REST and used by rules.

mod common;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::plugin_zip::{build_plugin, package, package_with, write_zip};
use common::{
    Server, repo_root, serve_files, serve_files_tls, temp_dir, wait_metric, wait_rule_status,
};
use serde_json::{Value, json};

/// The JSON lines the memo sink wrote to `path`, once there are at least `n` row lines.
fn memo_lines(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(path) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.iter().filter(|l| l.get("batch").is_none()).count() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "the memo sink wrote only {text:?} to {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The row lines (not the `{"batch": n}` markers), in arrival order.
fn rows(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l.get("batch").is_none())
        .cloned()
        .collect()
}

/// Rows sorted by their text: two workers may deliver them in either order.
fn sorted(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|r| r.to_string());
    rows
}

fn install(server: &Server, kind: &str, name: &str, file: &str) -> (u16, Value) {
    server.json(
        "POST",
        &format!("/plugins/{kind}"),
        Some(json!({"name": name, "file": file})),
    )
}

/// Files left in the server's plugin folders (installs that failed must leave none).
fn plugin_files(data: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for kind in ["sources", "sinks", "functions"] {
        if let Ok(entries) = std::fs::read_dir(data.join("plugins").join(kind)) {
            for e in entries.flatten() {
                out.push(format!("{kind}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn sink_and_function_plugins_install_run_and_survive_a_restart() {
    let dir = temp_dir("plugins-e2e");
    let zips = dir.join("zips");
    std::fs::create_dir_all(&zips).expect("zips dir");
    let memo_meta = json!({
        "about": {"author": {"name": "quiver"}, "description": {"en_US": "rows as JSON lines"}},
        "properties": [{"name": "path", "default": "", "optional": false, "type": "string"}]
    });
    package(&zips, "sink_memo", "memo", "1.0.0", memo_meta);
    let double_zip = package(
        &zips,
        "func_double",
        "double",
        "1.2.0",
        json!({"functions": [{"name": "double", "example": "double(2) = 4", "hint": {"en_US": "twice x"}}]}),
    );
    let base = serve_files(&zips);
    let data = dir.join("data");
    let server = Server::start_with_plugin_files(&data, &zips);

    // The sink over http://, the function (arrow 59 inside) over file://.
    let (status, body) = install(&server, "sinks", "memo", &format!("{base}/memo.zip"));
    assert_eq!(status, 201, "{body}");
    let (status, body) = install(
        &server,
        "functions",
        "double",
        &format!("file://{}", double_zip.display()),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        install(&server, "sinks", "memo", &format!("{base}/memo.zip")).0,
        409,
        "installing twice"
    );
    assert_eq!(
        server.json("GET", "/plugins/sinks", None),
        (200, json!(["memo"]))
    );
    let (status, memo) = server.json("GET", "/plugins/sinks/memo", None);
    assert_eq!(status, 200);
    assert_eq!(memo["name"], json!("memo"));
    assert_eq!(memo["version"], json!("1.0.0"));
    assert_eq!(memo["properties"][0]["name"], json!("path"));
    assert_eq!(
        server.json("GET", "/plugins/udfs", None),
        (200, json!(["double"]))
    );
    assert_eq!(
        server.json("GET", "/plugins/udfs/double", None),
        (200, json!({"name": "double", "plugin": "double"}))
    );
    assert_eq!(server.json("GET", "/plugins/sinks/nope", None).0, 404);
    assert_eq!(
        plugin_files(&data),
        [
            "functions/Double@v1.2.0.so",
            "functions/double.json",
            "sinks/Memo@v1.0.0.so",
            "sinks/memo.json"
        ]
    );

    server.create_stream(
        r#"CREATE STREAM readings (device STRING, temperature FLOAT) WITH (DATASOURCE="/readings", TYPE="httppush", FORMAT="json")"#,
    );
    // The function is checked at rule creation like a built-in.
    let (status, err) = server.json(
        "POST",
        "/rules",
        Some(json!({"id": "bad", "sql": "SELECT double(device) FROM readings", "actions": [{"log": {}}]})),
    );
    assert_eq!(status, 400);
    assert!(
        err["message"]
            .as_str()
            .unwrap_or("")
            .contains("expects a number but got string"),
        "{err}"
    );
    let out = dir.join("out.jsonl");
    let batched = dir.join("batched.jsonl");
    let (status, body) = server.json(
        "POST",
        "/rules",
        Some(json!({
            "id": "r1",
            "sql": "SELECT device, double(temperature) AS t2 FROM readings",
            "actions": [{"memo": {"path": out.display().to_string()}}]
        })),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.json(
        "POST",
        "/rules",
        Some(json!({
            "id": "r2",
            "sql": "SELECT device FROM readings",
            "actions": [{"memo": {"path": batched.display().to_string(), "batchSize": 3, "lingerInterval": 60000}}]
        })),
    );
    assert_eq!(status, 201, "{body}");
    // A missing required property is refused at rule creation, with the plugin's message.
    let (status, err) = server.json(
        "POST",
        "/rules",
        Some(json!({"id": "r3", "sql": "SELECT * FROM readings", "actions": [{"memo": {}}]})),
    );
    assert_eq!(status, 400);
    assert!(
        err["message"]
            .as_str()
            .unwrap_or("")
            .contains("memo needs a \"path\" property"),
        "{err}"
    );

    for (d, t) in [("a", 20.5), ("b", -1.0), ("c", 3.0)] {
        let (status, body) = server.push(
            "/readings",
            &json!({"device": d, "temperature": t}).to_string(),
        );
        assert_eq!(status, 200, "{body}");
    }
    let lines = memo_lines(&out, 3);
    assert_eq!(
        sorted(rows(&lines)),
        [
            json!({"device": "a", "t2": 41.0}),
            json!({"device": "b", "t2": -2.0}),
            json!({"device": "c", "t2": 6.0})
        ]
    );
    // batchSize 3: the plugin saw the three rows as one collect_list call.
    let lines = memo_lines(&batched, 3);
    assert_eq!(lines.last(), Some(&json!({"batch": 3})), "{lines:?}");
    assert_eq!(rows(&lines).len(), 3);
    wait_metric(&server, "r1", "sink_memo_0_0_records_out_total", 3);

    // Deleting a plugin in use is refused with the rules that use it.
    let (status, err) = server.json("DELETE", "/plugins/sinks/memo", None);
    assert_eq!(status, 409);
    assert!(
        err["message"]
            .as_str()
            .unwrap_or("")
            .contains("used by rules: r1, r2"),
        "{err}"
    );
    let (status, err) = server.json("DELETE", "/plugins/functions/double", None);
    assert_eq!(status, 409);
    assert!(
        err["message"].as_str().unwrap_or("").contains("r1"),
        "{err}"
    );

    // Restart: plugins load from the data dir before the rules are restored.
    server.stop();
    let server = Server::start(&data);
    assert_eq!(
        server.json("GET", "/plugins/sinks", None),
        (200, json!(["memo"]))
    );
    assert_eq!(
        server.json("GET", "/plugins/functions/double", None).1["version"],
        json!("1.2.0")
    );
    let (status, body) = server.push(
        "/readings",
        &json!({"device": "d", "temperature": 100}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let lines = memo_lines(&out, 4);
    assert_eq!(rows(&lines)[3], json!({"device": "d", "t2": 200.0}));

    // Update without a restart: version 2.0.0 tags its rows, and the rules move over to it.
    package_with(&zips, "sink_memo", Some("v2"), "memo", "2.0.0", json!({}));
    let (status, body) = server.call(
        "PUT",
        "/plugins/sinks/memo",
        Some(json!({"name": "memo", "file": format!("{base}/memo-2.0.0.zip")})),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("updated to version 2.0.0; rules moved to it: r1, r2"),
        "{body}"
    );
    assert_eq!(
        server.json("GET", "/plugins/sinks/memo", None).1["version"],
        json!("2.0.0")
    );
    assert_eq!(
        server
            .call(
                "PUT",
                "/plugins/sinks/memo",
                Some(json!({"name": "memo", "file": format!("{base}/memo-2.0.0.zip")}))
            )
            .0,
        409,
        "the same version again"
    );
    let (status, body) = server.push(
        "/readings",
        &json!({"device": "e", "temperature": 1}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let lines = memo_lines(&out, 5);
    assert_eq!(rows(&lines)[4], json!({"device": "e", "t2": 2.0, "v": 2}));
    assert!(
        plugin_files(&data).contains(&"sinks/Memo@v2.0.0.so".to_string())
            && !plugin_files(&data).contains(&"sinks/Memo@v1.0.0.so".to_string()),
        "{:?}",
        plugin_files(&data)
    );

    // Without users, a delete goes through and takes the files with it.
    for rule in ["r1", "r2"] {
        assert_eq!(
            server.call("DELETE", &format!("/rules/{rule}"), None).0,
            200
        );
    }
    assert_eq!(server.call("DELETE", "/plugins/sinks/memo", None).0, 200);
    assert_eq!(
        server.call("DELETE", "/plugins/functions/double", None).0,
        200
    );
    assert_eq!(server.json("GET", "/plugins/sinks", None), (200, json!([])));
    assert_eq!(plugin_files(&data), Vec::<String>::new());
    let (status, _) = server.json(
        "POST",
        "/rules",
        Some(json!({"id": "r4", "sql": "SELECT * FROM readings", "actions": [{"memo": {"path": "/tmp/x"}}]})),
    );
    assert_eq!(status, 400, "memo is no longer a sink type");
    server.stop();
}

#[test]
fn a_plugin_downloads_over_https_and_a_wrong_sha256_writes_nothing() {
    use sha2::Digest as _;
    let dir = temp_dir("plugins-https");
    let zips = dir.join("zips");
    std::fs::create_dir_all(&zips).expect("zips dir");
    let pki = Pki::new(&dir);
    let zip = package(&zips, "sink_noop", "noop", "1.0.0", json!({}));
    let digest: String = sha2::Sha256::digest(std::fs::read(&zip).expect("zip"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let base = serve_files_tls(&zips, &pki);
    let data = dir.join("data");
    // quiverd trusts the system's roots; SSL_CERT_FILE names the test CA instead.
    let ca = pki.ca.to_str().expect("a UTF-8 path");
    let mut server = Server::spawn(&data, &[], &[("SSL_CERT_FILE", ca)], None);
    server.wait_ready();
    let body = |sha256: &str| json!({"name": "noop", "file": format!("{base}/noop.zip"), "sha256": sha256});

    // A digest that is not the package's: 400 naming both, and nothing written.
    let wrong = "ab".repeat(32);
    let (status, said) = server.call("POST", "/plugins/sinks", Some(body(&wrong)));
    assert_eq!(status, 400, "{said}");
    assert!(
        said.contains("sha256 mismatch") && said.contains(&wrong) && said.contains(&digest),
        "{said}"
    );
    assert!(plugin_files(&data).is_empty(), "{:?}", plugin_files(&data));
    let (status, said) = server.json("POST", "/plugins/sinks", Some(body("12345")));
    assert_eq!(status, 400, "{said}");
    assert!(
        said["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"sha256\" must be")),
        "{said}"
    );

    // The right digest (any case) over https: installed.
    let (status, said) = server.call(
        "POST",
        "/plugins/sinks",
        Some(body(&digest.to_ascii_uppercase())),
    );
    assert_eq!(status, 201, "{said}");
    assert_eq!(
        plugin_files(&data),
        ["sinks/Noop@v1.0.0.so", "sinks/noop.json"]
    );
}

/// A sink plugin built against quiver-plugin-abi 1.1 (before the epoch methods) loads and
/// runs at qos 1, and a qos 2 rule with it is refused with a 400 naming it: the server sees
/// the methods its vtable lacks as absent instead of calling them.
#[test]
fn a_sink_built_before_epochs_runs_at_qos_1_and_is_refused_at_qos_2() {
    let dir = temp_dir("plugins-abi11");
    let zips = dir.join("zips");
    std::fs::create_dir_all(&zips).expect("zips dir");
    let zip = package(&zips, "sink_abi11", "vintage", "1.0.0", json!({}));
    let server = Server::start_with_plugin_files(&dir.join("data"), &zips);
    let (status, body) = install(
        &server,
        "sinks",
        "vintage",
        &format!("file://{}", zip.display()),
    );
    assert_eq!(status, 201, "{body}");
    server.create_stream(
        r#"CREATE STREAM old_in (n BIGINT) WITH (DATASOURCE="/old", TYPE="httppush", FORMAT="json")"#,
    );
    let out = dir.join("vintage.jsonl");
    let rule = |id: &str, qos: u64| {
        json!({"id": id, "sql": "SELECT n FROM old_in",
            "actions": [{"vintage": {"path": out.display().to_string()}}],
            "options": {"qos": qos, "checkpointInterval": 200}})
    };
    let (status, body) = server.call("POST", "/rules", Some(rule("exact", 2)));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("needs sinks that write in transactions")
            && body.contains("the vintage sink does not"),
        "{body}"
    );
    let (status, body) = server.call("POST", "/rules", Some(rule("atleast", 1)));
    assert_eq!(status, 201, "{body}");
    wait_rule_status(&server, "atleast", |st| st["status"] == json!("running"));
    let (status, body) = server.push("/old", &json!([{"n": 1}, {"n": 2}, {"n": 3}]).to_string());
    assert_eq!(status, 200, "{body}");
    // The plugin appends {"rows": n} per batch; the three rows arrive, however batched.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let rows: u64 = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|l| l["rows"].as_u64())
            .sum();
        if rows >= 3 {
            assert_eq!(rows, 3, "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "the plugin wrote {text:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
}

#[test]
fn incompatible_and_foreign_libraries_and_bad_zips_are_refused() {
    let dir = temp_dir("plugins-refused");
    let zips = dir.join("zips");
    std::fs::create_dir_all(&zips).expect("zips dir");
    let future = package(&zips, "sink_badabi", "future", "1.0.0", json!({}));
    let foreign = package(&zips, "not_a_plugin", "notplugin", "0.1.0", json!({}));
    let old_layout = package(&zips, "sink_oldlayout", "oldie", "1.0.0", json!({}));
    let next_major = package(&zips, "sink_futureabi", "nextgen", "1.0.0", json!({}));
    let memo = std::fs::read(build_plugin("sink_memo")).expect("memo library");
    let traversal = zips.join("traversal.zip");
    write_zip(&traversal, &[("../Memo@v1.0.0.so", memo.clone())]);
    let nested = zips.join("nested.zip");
    write_zip(&nested, &[("lib/Memo@v1.0.0.so", memo.clone())]);
    let misnamed = zips.join("misnamed.zip");
    write_zip(&misnamed, &[("Other@v1.0.0.so", memo.clone())]);
    let wrong_version = zips.join("wrongversion.zip");
    write_zip(&wrong_version, &[("Memo@v9.9.9.so", memo)]);
    let not_zip = zips.join("notzip.zip");
    std::fs::write(&not_zip, b"PK but not really").expect("write");

    let data = dir.join("data");
    let server = Server::start_with_plugin_files(&data, &zips);
    let url = |p: &Path| format!("file://{}", p.display());
    let cases = [
        (
            "future",
            url(&future),
            "declares plugin ABI 2, but this server speaks plugin ABI 1 (quiver-plugin-abi 1.2.0); rebuild the plugin against quiver-plugin-abi 1.*",
        ),
        ("notplugin", url(&foreign), "is not a Quiver plugin"),
        (
            "nextgen",
            url(&next_major),
            "Nextgen@v1.0.0.so was built against quiver-plugin-abi 2.0.0 (plugin ABI 2), but this server speaks plugin ABI 1 (quiver-plugin-abi 1.2.0); rebuild the plugin against quiver-plugin-abi 1.*",
        ),
        (
            "oldie",
            url(&old_layout),
            "Oldie@v1.0.0.so does not match this server's plugin interface (quiver-plugin-abi 1.2.0): incompatible type size (expected 72, found 64), and 4 more differences; rebuild the plugin against quiver-plugin-abi 1.*",
        ),
        ("memo", url(&traversal), "is not at the zip root"),
        ("memo", url(&nested), "is not at the zip root"),
        ("memo", url(&misnamed), "does not name plugin \"memo\""),
        (
            "memo",
            url(&wrong_version),
            "says version 9.9.9 but the plugin says 1.0.0",
        ),
        ("memo", url(&not_zip), "not a zip file"),
        ("memo", url(&zips.join("missing.zip")), "cannot read"),
        (
            "memo",
            "ftp://host/memo.zip".into(),
            "unsupported plugin file URL",
        ),
    ];
    for (name, file, want) in cases {
        let (status, err) = install(&server, "sinks", name, &file);
        assert_eq!(status, 400, "{name} from {file}: {err}");
        let message = err["message"].as_str().unwrap_or("");
        assert!(
            message.contains(want),
            "{name} from {file}: {message:?} should say {want:?}"
        );
    }
    // Nothing was left behind, and the server still works.
    assert_eq!(plugin_files(&data), Vec::<String>::new());
    assert_eq!(server.json("GET", "/plugins/sinks", None), (200, json!([])));
    assert_eq!(server.call("GET", "/ping", None).0, 200);

    // A refused file dropped into the folder by hand is skipped at start-up, not fatal, and
    // the temporary file of an install that was cut short is cleaned up.
    std::fs::copy(
        build_plugin("sink_badabi"),
        data.join("plugins/sinks/Future@v1.0.0.so"),
    )
    .expect("copy");
    std::fs::write(
        data.join("plugins/sinks/.install-memo-1-0.so.tmp"),
        b"partial",
    )
    .expect("tmp");
    server.stop();
    let server = Server::start(&data);
    assert_eq!(server.json("GET", "/plugins/sinks", None), (200, json!([])));
    assert_eq!(plugin_files(&data), ["sinks/Future@v1.0.0.so"]);
    server.stop();
}

#[test]
fn a_panicking_sink_fails_only_its_rule() {
    let dir = temp_dir("plugins-panic");
    let zips = dir.join("zips");
    std::fs::create_dir_all(&zips).expect("zips dir");
    let boom = package(&zips, "sink_panic", "boom", "1.0.0", json!({}));
    let memo = package(&zips, "sink_memo", "memo", "1.0.0", json!({}));
    let server = Server::start_with_plugin_files(&dir.join("data"), &zips);
    let url = |p: &Path| format!("file://{}", p.display());
    assert_eq!(install(&server, "sinks", "boom", &url(&boom)).0, 201);
    assert_eq!(install(&server, "sinks", "memo", &url(&memo)).0, 201);
    server.create_stream(
        r#"CREATE STREAM readings (device STRING) WITH (DATASOURCE="/readings", TYPE="httppush", FORMAT="json")"#,
    );
    let out = dir.join("out.jsonl");
    for (id, action) in [
        ("crash", json!({"boom": {}})),
        ("fine", json!({"memo": {"path": out.display().to_string()}})),
    ] {
        let (status, body) = server.json(
            "POST",
            "/rules",
            Some(json!({"id": id, "sql": "SELECT device FROM readings", "actions": [action]})),
        );
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(server.push("/readings", r#"{"device": "a"}"#).0, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let (_, st) = server.json("GET", "/rules/crash/status", None);
        if st["status"] == json!("stopped by error") {
            break st;
        }
        assert!(Instant::now() < deadline, "the rule did not fail: {st}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let message = status["message"].as_str().unwrap_or("");
    assert!(
        message.contains("plugin panicked in collect_list: boom after 1 rows"),
        "{message}"
    );
    // The server and the other rule carry on.
    assert_eq!(server.call("GET", "/ping", None).0, 200);
    assert_eq!(server.push("/readings", r#"{"device": "b"}"#).0, 200);
    let lines = memo_lines(&out, 2);
    assert_eq!(
        sorted(rows(&lines)),
        [json!({"device": "a"}), json!({"device": "b"})]
    );
    assert_eq!(
        server.json("GET", "/rules/fine/status", None).1["status"],
        json!("running")
    );
    server.stop();
}

#[test]
fn an_aggregate_plugin_function_aggregates_each_window_group() {
    let dir = temp_dir("plugins-agg");
    let zips = dir.join("zips");
    std::fs::create_dir_all(&zips).expect("zips dir");
    let agg = package(
        &zips,
        "func_countplusone",
        "countplusone",
        "1.0.0",
        json!({"functions": [{"name": "countplusone", "aggregate": true}]}),
    );
    let memo = package(&zips, "sink_memo", "memo", "1.0.0", json!({}));
    let server = Server::start_with_plugin_files(&dir.join("data"), &zips);
    let url = |p: &Path| format!("file://{}", p.display());
    assert_eq!(
        install(&server, "functions", "countplusone", &url(&agg)).0,
        201
    );
    assert_eq!(install(&server, "sinks", "memo", &url(&memo)).0, 201);
    server.create_stream(
        r#"CREATE STREAM readings (device STRING, v BIGINT) WITH (DATASOURCE="/readings", TYPE="httppush", FORMAT="json")"#,
    );
    // Used outside a window the call is refused like any aggregate in WHERE.
    let (status, err) = server.json(
        "POST",
        "/rules",
        Some(json!({"id": "bad", "sql": "SELECT device FROM readings WHERE countplusone(v) > 1", "actions": [{"log": {}}]})),
    );
    assert_eq!(status, 400, "{err}");
    let out = dir.join("agg.jsonl");
    let (status, body) = server.json(
        "POST",
        "/rules",
        Some(json!({
            "id": "agg",
            "sql": "SELECT device, countplusone(v) AS c, count(*) AS n FROM readings GROUP BY device, COUNTWINDOW(4)",
            "actions": [{"memo": {"path": out.display().to_string()}}]
        })),
    );
    assert_eq!(status, 201, "{body}");
    // One count window of four rows: device a has two values and one null, b one value.
    assert_eq!(
        server
            .push(
                "/readings",
                r#"[{"device":"a","v":1},{"device":"a"},{"device":"b","v":3},{"device":"a","v":4}]"#
            )
            .0,
        200
    );
    let lines = memo_lines(&out, 2);
    assert_eq!(
        sorted(rows(&lines)),
        [
            json!({"device": "b", "c": 2, "n": 1}),
            json!({"device": "a", "c": 3, "n": 3})
        ]
    );
    server.stop();
}

#[test]
fn a_source_plugin_feeds_a_stream_with_its_yaml_defaults() {
    let dir = temp_dir("plugins-source");
    let zips = dir.join("zips");
    std::fs::create_dir_all(&zips).expect("zips dir");
    let so = std::fs::read(build_plugin("source_counter")).expect("counter library");
    let yaml =
        std::fs::read(repo_root().join("tests/plugins/source_counter/counter.yaml")).expect("yaml");
    let counter = zips.join("counter.zip");
    write_zip(
        &counter,
        &[("Counter@v1.0.0.so", so), ("counter.yaml", yaml)],
    );
    let memo = package(&zips, "sink_memo", "memo", "1.0.0", json!({}));
    let data = dir.join("data");
    let server = Server::start_with_plugin_files(&data, &zips);
    let url = |p: &Path| format!("file://{}", p.display());
    let (status, body) = install(&server, "sources", "counter", &url(&counter));
    assert_eq!(status, 201, "{body}");
    assert_eq!(install(&server, "sinks", "memo", &url(&memo)).0, 201);
    assert_eq!(
        server.json("GET", "/plugins/sources", None),
        (200, json!(["counter"]))
    );
    assert!(plugin_files(&data).contains(&"sources/counter.yaml".to_string()));

    // TYPE names the plugin; count and interval come from the package's counter.yaml.
    server.create_stream(
        r#"CREATE STREAM counts (device STRING, n BIGINT) WITH (DATASOURCE="c1", TYPE="counter", FORMAT="json")"#,
    );
    let out = dir.join("out.jsonl");
    let (status, body) = server.json(
        "POST",
        "/rules",
        Some(json!({
            "id": "counted",
            "sql": "SELECT device, n * 10 AS tens FROM counts",
            "actions": [{"memo": {"path": out.display().to_string()}}]
        })),
    );
    assert_eq!(status, 201, "{body}");
    let lines = memo_lines(&out, 3);
    assert_eq!(
        sorted(rows(&lines)),
        [
            json!({"device": "c1", "tens": 0}),
            json!({"device": "c1", "tens": 10}),
            json!({"device": "c1", "tens": 20})
        ]
    );
    // The source ended its input, so the rule finished.
    let st = wait_metric(&server, "counted", "source_counts_0_records_in_total", 3);
    assert_eq!(st["sink_memo_0_0_records_out_total"], json!(3), "{st}");

    let (status, err) = server.json("DELETE", "/plugins/sources/counter", None);
    assert_eq!(status, 409);
    assert!(
        err["message"]
            .as_str()
            .unwrap_or("")
            .contains("used by streams: counts"),
        "{err}"
    );
    server.stop();
}

/// The cost of the plugin boundary: the same rule over the same input, once with the built-in
/// `memory` sink (publishing to a topic nobody reads: a no-op) and once with the `noop` plugin
/// sink, alternating, best of several rounds, in one process. Two inputs: JSON messages of
/// 1024 rows (decoded by the rule, the usual case), and pre-built Arrow batches (no decoding,
/// so the sink's share of the time is as large as it gets).
///
/// `cargo nextest run --release -p quiver-server --test plugins bench_` with `QUIVER_BENCH_FULL=1`
#[test]
fn bench_plugin_sink_against_a_builtin_sink() {
    use quiver_connectors::Connectors;
    use quiver_connectors::memory::MemoryPayload;
    use quiver_dataflow::{Action, Engine, EngineConfig, RuleSpec};
    use quiver_plugin_abi::ffi::PluginKind;
    use quiver_server::plugins::PluginManager;
    use std::sync::Arc;

    // CI runs a small load so the harness cannot rot; QUIVER_BENCH_FULL=1 gives the figures.
    let full = std::env::var_os("QUIVER_BENCH_FULL").is_some();
    let batches: usize = if full { 2_000 } else { 20 };
    let rows: usize = 1024;
    let rounds: usize = if full { 5 } else { 1 };

    let dir = temp_dir("plugins-bench");
    let zip = package(&dir, "sink_noop", "noop", "1.0.0", json!({}));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let engine = Engine::start(
        EngineConfig {
            workers: 1,
            ..Default::default()
        },
        rt.handle().clone(),
        Connectors::new(),
    )
    .expect("engine");
    let plugins = PluginManager::open(&dir.join("data"), engine.clone())
        .and_then(|p| p.with_file_dir(Some(dir.as_path())))
        .expect("plugins");
    rt.block_on(plugins.install(
        PluginKind::Sink,
        "noop",
        &format!("file://{}", zip.display()),
    ))
    .expect("install noop");
    engine
        .create_stream(
            r#"CREATE STREAM bench (device STRING, temperature FLOAT) WITH (DATASOURCE="bench/in", TYPE="memory")"#,
        )
        .expect("stream");

    let batch = {
        use arrow::array::{ArrayRef, Float64Array, StringArray};
        let devices: Vec<String> = (0..rows).map(|i| format!("dev{}", i % 16)).collect();
        let temps: Vec<f64> = (0..rows).map(|i| (i % 50) as f64).collect();
        arrow::record_batch::RecordBatch::try_from_iter([
            ("device", Arc::new(StringArray::from(devices)) as ArrayRef),
            (
                "temperature",
                Arc::new(Float64Array::from(temps)) as ArrayRef,
            ),
        ])
        .expect("batch")
    };
    let json: Vec<u8> = {
        let rows: Vec<Value> = (0..rows)
            .map(|i| json!({"device": format!("dev{}", i % 16), "temperature": (i % 50) as f64}))
            .collect();
        serde_json::to_vec(&rows).expect("json")
    };
    let bus = engine.connectors().memory().clone();
    for (input, payload) in [
        ("JSON messages", MemoryPayload::Json(json.into())),
        ("Arrow batches", MemoryPayload::Batch(batch)),
    ] {
        let mut best = [f64::MAX; 2];
        for round in 0..rounds {
            for (i, (sink, props)) in [
                ("memory", json!({"topic": "bench/out"})),
                ("noop", json!({})),
            ]
            .into_iter()
            .enumerate()
            {
                let id = format!("{sink}{round}{}", input.len());
                engine
                    .create_rule(RuleSpec {
                        id: id.clone(),
                        name: id.clone(),
                        sql: "SELECT device, temperature FROM bench".into(),
                        actions: vec![Action {
                            sink_type: sink.into(),
                            props,
                        }],
                        options: serde_json::Map::new(),
                    })
                    .expect("rule");
                while bus.subscribers("bench/in") == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let started = Instant::now();
                rt.block_on(async {
                    for _ in 0..batches {
                        bus.publish("bench/in", payload.clone()).await;
                    }
                    bus.close("bench/in");
                    assert!(
                        engine
                            .wait_finished(&id, Duration::from_secs(120))
                            .await
                            .expect("rule"),
                        "{id} did not finish"
                    );
                });
                let secs = started.elapsed().as_secs_f64();
                let status = engine.rule_status(&id).expect("status");
                let out = status
                    .metrics
                    .iter()
                    .find(|(k, _)| k == &format!("sink_{sink}_0_0_records_out_total"))
                    .map(|(_, v)| v.clone());
                assert_eq!(
                    out,
                    Some(json!(batches * rows)),
                    "{id}: {:?}",
                    status.metrics
                );
                best[i] = best[i].min(secs);
                engine.delete_rule(&id).expect("delete");
            }
        }
        let rows = (batches * rows) as f64;
        let overhead = (best[1] - best[0]) / best[0] * 100.0;
        println!(
            "{input} of {rows} rows: built-in memory sink {:.2} M rows/s, noop plugin sink \
         {:.2} M rows/s, plugin boundary {:+.1} us per batch ({overhead:+.1}% of the rule's time; goal: under 5%)",
            rows / best[0] / 1e6,
            rows / best[1] / 1e6,
            (best[1] - best[0]) / batches as f64 * 1e6,
        );
    }
    let engine2 = engine.clone();
    rt.block_on(async move { tokio::task::spawn_blocking(move || engine2.shutdown()).await })
        .expect("shutdown");
}
