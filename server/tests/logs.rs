//! quiverd's log as a person or a collector reads it: `--log-format json` lines parse and carry
//! each rule state change with its reason; text logs written to a file have no colour codes.

mod common;

use common::{Server, temp_dir};
use serde_json::{Value, json};

/// Creates rule `id` (started), stops it, starts it again and deletes it.
fn rule_story(server: &Server, id: &str) {
    server.create_stream(r#"CREATE STREAM demo () WITH (DATASOURCE="demo", TYPE="memory")"#);
    let rule = json!({"id": id, "sql": "SELECT * FROM demo", "actions": [{"nop": {}}]});
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    assert_eq!(
        server.call("POST", &format!("/rules/{id}/stop"), None).0,
        200
    );
    assert_eq!(
        server.call("POST", &format!("/rules/{id}/start"), None).0,
        200
    );
    assert_eq!(server.call("DELETE", &format!("/rules/{id}"), None).0, 200);
}

#[test]
fn json_logs_parse_and_tell_each_rule_state_change() {
    let dir = temp_dir("logs-json");
    let log = dir.join("quiverd.log");
    let args = ["--log-format".to_string(), "json".to_string()];
    let server = Server::start_args(&dir, &args, Some(&log));
    rule_story(&server, "r1");
    server.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let changes: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["fields"]["rule"] == "r1" && l["fields"]["state"].is_string())
        .map(|l| {
            let f = &l["fields"];
            let state = f["state"].as_str().unwrap().to_string();
            (state, f["reason"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    let want = [
        ("running", ""),
        ("stopped", "stopped by user"),
        ("running", ""),
        ("stopped", "deleted"),
    ]
    .map(|(s, r)| (s.to_string(), r.to_string()));
    assert_eq!(changes, want, "{text}");
    let started = lines.iter().find(|l| l["fields"]["rule"] == "r1").unwrap();
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["fields"]["message"], "rule \"r1\" started");
}

#[test]
fn text_logs_in_a_file_have_no_colour_codes() {
    let dir = temp_dir("logs-text");
    let log = dir.join("quiverd.log");
    let server = Server::start_args(&dir, &[], Some(&log));
    rule_story(&server, "r2");
    server.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains('\u{1b}'), "escape codes in {text}");
    assert!(text.contains("rule \"r2\" started"), "{text}");
    assert!(text.contains("rule \"r2\" stopped by user"), "{text}");
}

#[test]
fn an_unknown_log_format_is_refused_by_name() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quiverd"))
        .args(["--log-format", "xml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--log-format: \"xml\" is not text or json"),
        "{err}"
    );
}
