//! End-to-end tests of the `quiver` CLI: the built binary run against a real quiverd, as a
//! user or a script would run it, checking what it prints and its exit code (docs/cli.md).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::plugin_zip::package;
use common::{Server, free_port, serve_files, temp_dir};
use serde_json::{Value, json};

const DEMO: &str =
    r#"(id BIGINT, name STRING) WITH (DATASOURCE="demo", TYPE="memory", FORMAT="json")"#;

/// The subcommands that take `rule ID`.
const RULE_VERBS: [&str; 8] = [
    "describe",
    "start",
    "stop",
    "restart",
    "getstatus",
    "gettopo",
    "explain",
    "drop",
];

/// What one run of `quiver` did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts exit 0 and returns stdout.
    fn ok(self) -> String {
        assert_eq!(self.code, 0, "{self:?}");
        self.stdout
    }

    /// Asserts exit 0 and parses stdout as JSON.
    fn json(self) -> Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Asserts exit `code` and returns stderr.
    fn failed(self, code: i32) -> String {
        assert_eq!(self.code, code, "{self:?}");
        self.stderr
    }
}

/// Runs `quiver` with `args` and `env`, with none of the caller's QUIVER_* or NO_COLOR.
fn quiver_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(args)
        .env_remove("QUIVER_HOST")
        .env_remove("QUIVER_TOKEN")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .output()
        .expect("quiver runs");
    Run {
        code: output.status.code().expect("an exit code"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

/// Runs `quiver --host http://<server> args...`.
fn quiver(server: &Server, args: &[&str]) -> Run {
    let host = format!("http://{}", server.addr());
    let mut all = vec!["--host", host.as_str()];
    all.extend_from_slice(args);
    quiver_env(&all, &[])
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// The words of each line: a table's cells.
fn cells(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

/// The strings of a JSON array.
fn strs(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

/// Asserts that `run` exited with `code` and said `needle` on stderr.
fn fails_with(run: Run, code: i32, needle: &str) {
    let err = run.failed(code);
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

#[test]
fn streams_and_tables_are_created_shown_described_and_dropped() {
    let dir = temp_dir("cli-streams");
    let server = Server::start(&dir.join("data"));

    // eKuiper's inline form: name, then the definition.
    let out = quiver(&server, &["create", "stream", "demo", DEMO]).ok();
    assert_eq!(out.trim(), "Stream demo is created.");
    // The file form: the name is in the file, which may end with `;`.
    let file = dir.join("filed.sql");
    std::fs::write(
        &file,
        "filed (v FLOAT)\n  WITH (DATASOURCE=\"filed\", TYPE=\"memory\", FORMAT=\"json\");\n",
    )
    .unwrap();
    quiver(&server, &["create", "stream", "-f", file.to_str().unwrap()]).ok();
    // A whole statement, for a table.
    let table = r#"CREATE TABLE devices (id STRING, location STRING) WITH (DATASOURCE="devices", TYPE="memory", KEY="id")"#;
    let out = quiver(&server, &["create", "table", table]).ok();
    assert_eq!(out.trim(), "Table devices is created.");

    let out = quiver(&server, &["show", "streams"]).ok();
    let mut shown = lines(&out);
    shown.sort();
    assert_eq!(shown, ["demo", "filed"]);
    let listed = quiver(&server, &["show", "streams", "--json"]).json();
    let mut listed = strs(&listed);
    listed.sort();
    assert_eq!(listed, ["demo", "filed"]);
    assert_eq!(quiver(&server, &["show", "tables"]).ok().trim(), "devices");
    assert_eq!(
        quiver(&server, &["--json", "show", "tables"]).json(),
        json!(["devices"])
    );

    // describe: fields as a table and the options, or the server's JSON.
    let out = quiver(&server, &["describe", "stream", "demo"]).ok();
    let rows = cells(&out);
    assert_eq!(rows[0], ["FIELD", "TYPE"]);
    assert_eq!(rows[1], ["id", "bigint"]);
    assert_eq!(rows[2], ["name", "string"]);
    assert!(lines(&out).contains(&"DATASOURCE: demo"), "{out}");
    assert!(lines(&out).contains(&"TYPE: memory"), "{out}");
    let described = quiver(&server, &["describe", "stream", "filed", "--json"]).json();
    assert_eq!(described["Name"], "filed");
    assert_eq!(described["StreamFields"][0]["Name"], "v");
    assert_eq!(described["Options"]["DATASOURCE"], "filed");
    let described = quiver(&server, &["describe", "table", "devices", "--json"]).json();
    assert_eq!(described["Options"]["KEY"], "id");

    // drop, then it is gone; dropping again is refused by the server (exit 1, its message).
    let out = quiver(&server, &["drop", "stream", "filed"]).ok();
    assert!(out.contains("filed"), "{out}");
    assert_eq!(quiver(&server, &["show", "streams"]).ok().trim(), "demo");
    fails_with(
        quiver(&server, &["drop", "stream", "filed"]),
        1,
        "not found",
    );
    let dropped = quiver(&server, &["drop", "table", "devices", "--json"]).json();
    assert!(dropped["message"].as_str().unwrap().contains("devices"));
    fails_with(
        quiver(&server, &["describe", "table", "devices"]),
        1,
        "\"devices\" not found",
    );

    // A definition the server refuses: its message on stderr, exit 1.
    fails_with(
        quiver(
            &server,
            &[
                "create",
                "stream",
                "bad",
                "(id BIGINT) WITH (TYPE=\"nosuch\")",
            ],
        ),
        1,
        "nosuch",
    );
    // Arguments that make no request: exit 2, nothing sent.
    fails_with(
        quiver(&server, &["create", "stream", "lonely"]),
        2,
        "needs a definition",
    );
    fails_with(
        quiver(
            &server,
            &["create", "stream", "x", DEMO, "-f", file.to_str().unwrap()],
        ),
        2,
        "not both",
    );
    let missing = dir.join("missing.sql");
    fails_with(
        quiver(
            &server,
            &["create", "stream", "-f", missing.to_str().unwrap()],
        ),
        2,
        "missing.sql",
    );
    assert_eq!(quiver(&server, &["show", "streams"]).ok().trim(), "demo");
}

#[test]
fn rules_are_managed_and_inspected() {
    let dir = temp_dir("cli-rules");
    let server = Server::start(&dir.join("data"));
    quiver(&server, &["create", "stream", "demo", DEMO]).ok();

    let inline = r#"{"sql": "SELECT id, name FROM demo WHERE id > 1", "actions": [{"log": {}}]}"#;
    let out = quiver(&server, &["create", "rule", "r1", inline]).ok();
    assert!(out.contains("r1"), "{out}");
    let file = dir.join("r2.json");
    std::fs::write(
        &file,
        r#"{"id": "r2", "name": "second", "sql": "SELECT * FROM demo", "actions": [{"log": {}}], "tags": ["t1"]}"#,
    )
    .unwrap();
    quiver(
        &server,
        &["create", "rule", "r2", "-f", file.to_str().unwrap()],
    )
    .ok();
    // The id on the command line and in the JSON must agree.
    fails_with(
        quiver(
            &server,
            &["create", "rule", "other", "-f", file.to_str().unwrap()],
        ),
        2,
        "\"r2\"",
    );
    fails_with(
        quiver(&server, &["create", "rule", "r3", "{not json"]),
        2,
        "not valid JSON",
    );
    // A rule the server refuses: exit 1 with its message.
    fails_with(
        quiver(
            &server,
            &[
                "create",
                "rule",
                "r4",
                r#"{"sql": "SELECT * FROM nosuch", "actions": [{"log": {}}]}"#,
            ],
        ),
        1,
        "nosuch",
    );

    // show rules: a table, or the server's list.
    let out = quiver(&server, &["show", "rules"]).ok();
    let rows = cells(&out);
    assert_eq!(rows[0], ["ID", "NAME", "STATUS", "TAGS"]);
    assert!(
        rows.contains(&vec!["r2", "second", "running", "t1"]),
        "{out}"
    );
    let listed = quiver(&server, &["show", "rules", "--json"]).json();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"r1") && ids.contains(&"r2"), "{listed}");

    let described = quiver(&server, &["describe", "rule", "r1", "--json"]).json();
    assert_eq!(described["sql"], "SELECT id, name FROM demo WHERE id > 1");
    assert_eq!(described["id"], "r1");
    let out = quiver(&server, &["describe", "rule", "r2"]).ok();
    let pretty: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(pretty["name"], "second");
    assert!(out.lines().count() > 3, "indented: {out}");

    // stop, start, restart, and the status each leaves.
    let out = quiver(&server, &["stop", "rule", "r1"]).ok();
    assert_eq!(out.trim(), "Rule r1 was stopped.");
    assert_eq!(
        quiver(&server, &["getstatus", "rule", "r1", "--json"]).json()["status"],
        "stopped"
    );
    let out = quiver(&server, &["getstatus", "rule", "r1"]).ok();
    assert_eq!(lines(&out)[0], "status: stopped");
    quiver(&server, &["start", "rule", "r1"]).ok();
    let status = quiver(&server, &["getstatus", "rule", "r1", "--json"]).json();
    assert_eq!(status["status"], "running");
    let out = quiver(&server, &["restart", "rule", "r1", "--json"]).json();
    assert!(
        out["message"].as_str().unwrap().contains("restarted"),
        "{out}"
    );
    // The human status: one row per node of the server's metrics.
    let status = quiver(&server, &["getstatus", "rule", "r1", "--json"]).json();
    let out = quiver(&server, &["getstatus", "rule", "r1"]).ok();
    assert_eq!(lines(&out)[0], "status: running");
    let header = lines(&out)
        .into_iter()
        .find(|l| l.starts_with("NODE"))
        .unwrap_or_else(|| panic!("no node table: {out}"));
    assert!(
        header.contains("IN") && header.contains("EXCEPTIONS"),
        "{header}"
    );
    for key in status.as_object().unwrap().keys() {
        if let Some(node) = key.strip_suffix("_records_in_total") {
            assert!(
                out.lines()
                    .any(|l| l.split_whitespace().next() == Some(node)),
                "no row for {node}: {out}"
            );
        }
    }

    // gettopo: the server's JSON, or one line per edge.
    let topo = quiver(&server, &["gettopo", "rule", "r1", "--json"]).json();
    let sources = strs(&topo["sources"]);
    assert!(!sources.is_empty(), "{topo}");
    let out = quiver(&server, &["gettopo", "rule", "r1"]).ok();
    assert_eq!(lines(&out)[0], format!("sources: {}", sources.join(", ")));
    // Edges in the server's order: from the source on.
    assert!(
        lines(&out)[1].starts_with(&format!("{} -> ", sources[0])),
        "{out}"
    );
    for (from, to) in topo["edges"].as_object().unwrap() {
        let to = strs(to);
        assert!(
            out.contains(&format!("{from} -> {}", to.join(", "))),
            "{out}"
        );
    }

    // explain: the server's plan text.
    let out = quiver(&server, &["explain", "rule", "r1"]).ok();
    assert!(out.contains("demo"), "{out}");
    let explained = quiver(&server, &["explain", "rule", "r1", "--json"]).json();
    assert_eq!(explained["message"].as_str().unwrap(), out.trim_end());

    // drop, then the rule is gone for every verb.
    let out = quiver(&server, &["drop", "rule", "r1"]).ok();
    assert_eq!(out.trim(), "Rule r1 is dropped.");
    for verb in RULE_VERBS {
        fails_with(quiver(&server, &[verb, "rule", "r1"]), 1, "\"r1\"");
    }
}

#[test]
fn a_ruleset_exported_from_one_server_imports_into_another() {
    let dir = temp_dir("cli-ruleset");
    let first = Server::start(&dir.join("first"));
    quiver(&first, &["create", "stream", "demo", DEMO]).ok();
    quiver(
        &first,
        &["create", "table", r#"CREATE TABLE devices (id STRING) WITH (DATASOURCE="devices", TYPE="memory", KEY="id")"#],
    )
    .ok();
    quiver(
        &first,
        &[
            "create",
            "rule",
            "a",
            r#"{"sql": "SELECT id FROM demo", "actions": [{"log": {}}]}"#,
        ],
    )
    .ok();
    quiver(
        &first,
        &[
            "create",
            "rule",
            "b",
            r#"{"sql": "SELECT name FROM demo", "actions": [{"log": {}}], "triggered": false}"#,
        ],
    )
    .ok();

    let file = dir.join("ruleset.json");
    let out = quiver(&first, &["export", "ruleset", file.to_str().unwrap()]).ok();
    assert_eq!(
        out.trim(),
        format!(
            "exported 2 rules, 1 streams, 1 tables to {}",
            file.display()
        )
    );
    let summary = quiver(
        &first,
        &["export", "ruleset", file.to_str().unwrap(), "--json"],
    )
    .json();
    assert_eq!(
        summary["exported"],
        json!({"rules": 2, "streams": 1, "tables": 1})
    );
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(exported["rules"]["a"].is_string(), "{exported}");
    // `-` writes the document to stdout.
    let stdout = quiver(&first, &["export", "ruleset", "-"]).json();
    assert_eq!(stdout, exported);

    let second = Server::start(&dir.join("second"));
    let import = || {
        quiver(
            &second,
            &["import", "ruleset", "-f", file.to_str().unwrap()],
        )
        .ok()
    };
    let out = import();
    assert!(
        out.contains("imported 1 streams, 1 tables and 2 rules"),
        "{out}"
    );
    for args in [
        &["show", "streams", "--json"][..],
        &["show", "tables", "--json"],
        &["show", "rules", "--json"],
        &["describe", "rule", "a", "--json"],
        &["describe", "rule", "b", "--json"],
        &["describe", "stream", "demo", "--json"],
    ] {
        assert_eq!(
            quiver(&first, args).json(),
            quiver(&second, args).json(),
            "{args:?}"
        );
    }
    // Importing again creates nothing (existing names are left alone).
    let out = import();
    assert!(
        out.contains("imported 0 streams, 0 tables and 0 rules"),
        "{out}"
    );
    // Not a ruleset: the server's message, exit 1.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"streams": 5}"#).unwrap();
    fails_with(
        quiver(&second, &["import", "ruleset", "-f", bad.to_str().unwrap()]),
        1,
        "invalid ruleset",
    );
}

#[test]
fn plugins_are_listed_installed_described_and_dropped() {
    let dir = temp_dir("cli-plugins");
    let zips = dir.join("zips");
    std::fs::create_dir_all(&zips).unwrap();
    let server = Server::start(&dir.join("data"));

    let none = quiver(&server, &["show", "plugins", "--json"]).json();
    assert_eq!(none, json!({"sources": [], "sinks": [], "functions": []}));
    let run = quiver(&server, &["show", "plugins"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");
    assert_eq!(run.stderr.trim(), "no plugins");

    package(&zips, "sink_noop", "noop", "1.0.0", json!({}));
    let base = serve_files(&zips);
    let desc = dir.join("noop.json");
    std::fs::write(
        &desc,
        json!({"file": format!("{base}/noop.zip")}).to_string(),
    )
    .unwrap();
    let install = || {
        let args = [
            "create",
            "plugin",
            "sink",
            "noop",
            "-f",
            desc.to_str().unwrap(),
        ];
        quiver(&server, &args)
    };
    let out = install().ok();
    assert!(out.contains("noop"), "{out}");
    // eKuiper's singular type, or the REST path's plural.
    assert_eq!(
        quiver(&server, &["show", "plugins", "sinks", "--json"]).json(),
        json!(["noop"])
    );
    let out = quiver(&server, &["show", "plugins"]).ok();
    let rows = cells(&out);
    assert_eq!(rows, [vec!["TYPE", "NAME"], vec!["sink", "noop"]]);
    let described = quiver(&server, &["describe", "plugin", "sink", "noop", "--json"]).json();
    assert_eq!(described["name"], "noop", "{described}");
    // A name in the JSON that is not the one on the command line.
    fails_with(
        quiver(
            &server,
            &[
                "create",
                "plugin",
                "sink",
                "noop2",
                &json!({"name": "noop", "file": "x"}).to_string(),
            ],
        ),
        2,
        "\"noop2\"",
    );
    // A second install of the same name: the server refuses.
    fails_with(install(), 1, "noop");

    quiver(&server, &["drop", "plugin", "sink", "noop"]).ok();
    assert_eq!(
        quiver(&server, &["show", "plugins", "sink", "--json"]).json(),
        json!([])
    );
    quiver(&server, &["describe", "plugin", "sink", "noop"]).failed(1);
}

#[test]
fn exit_codes_for_usage_errors_and_unreachable_servers() {
    // Usage errors: exit 2, before any request.
    assert!(
        quiver_env(&["frobnicate"], &[])
            .failed(2)
            .contains("frobnicate")
    );
    quiver_env(&["start", "stream", "x"], &[]).failed(2);
    quiver_env(&["show"], &[]).failed(2);
    fails_with(
        quiver_env(&["--ca", "/nonexistent.pem", "show", "streams"], &[]),
        2,
        "--ca is for https://",
    );
    fails_with(
        quiver_env(&["--host", "ftp://x", "show", "streams"], &[]),
        2,
        "--host",
    );
    // Help is not an error.
    let help = quiver_env(&["--help"], &[]).ok();
    assert!(help.contains("Exit codes"), "{help}");

    // Nothing listens there: exit 3, saying which host.
    let host = format!("http://127.0.0.1:{}", free_port());
    fails_with(
        quiver_env(&["--host", &host, "show", "rules"], &[]),
        3,
        &format!("cannot reach {host}"),
    );
    // QUIVER_HOST is the default --host.
    fails_with(
        quiver_env(&["show", "rules"], &[("QUIVER_HOST", &host)]),
        3,
        &host,
    );
}

#[test]
fn completions_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let script = quiver_env(&["completions", shell], &[]).ok();
        for word in RULE_VERBS
            .iter()
            .chain(&["create", "show", "import", "export", "ruleset"])
        {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
    quiver_env(&["completions", "powershell"], &[]).failed(2);
}

#[test]
fn the_token_is_sent_as_a_bearer_token() {
    let dir = temp_dir("cli-token");
    let file = dir.join("token");
    std::fs::write(&file, "cli-static-token\n").unwrap();
    let server = Server::start_args(
        &dir.join("data"),
        &["--auth-token-file".into(), file.display().to_string()],
        None,
    );
    let host = format!("http://{}", server.addr());
    fails_with(
        quiver_env(&["--host", &host, "show", "streams"], &[]),
        1,
        "token",
    );
    quiver_env(
        &[
            "--host",
            &host,
            "--token",
            "cli-static-token",
            "show",
            "streams",
        ],
        &[],
    )
    .ok();
    quiver_env(
        &["--host", &host, "show", "streams"],
        &[("QUIVER_TOKEN", "cli-static-token")],
    )
    .ok();
    quiver_env(
        &["--host", &host, "--token", "wrong", "show", "streams"],
        &[],
    )
    .failed(1);
}

/// Runs `quiver --ca ca ... show streams` until the HTTPS server answers.
fn wait_https(host: &str, ca: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let run = quiver_env(
            &[
                "--host",
                host,
                "--ca",
                ca.to_str().unwrap(),
                "show",
                "streams",
            ],
            &[],
        );
        if run.code == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no HTTPS answer: {run:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_https_server_is_trusted_through_its_ca() {
    let dir = temp_dir("cli-https");
    let pki = Pki::new(&dir);
    let args = [
        "--tls-cert".to_string(),
        pki.cert.display().to_string(),
        "--tls-key".to_string(),
        pki.key.display().to_string(),
    ];
    let server = Server::spawn(&dir.join("data"), &args, &[], None);
    let port = server.addr().rsplit(':').next().unwrap();
    let host = format!("https://localhost:{port}");
    wait_https(&host, &pki.ca);
    let ca = pki.ca.to_str().unwrap();
    quiver_env(
        &[
            "--host", &host, "--ca", ca, "create", "stream", "demo", DEMO,
        ],
        &[],
    )
    .ok();
    assert_eq!(
        quiver_env(&["--host", &host, "--ca", ca, "show", "streams"], &[])
            .ok()
            .trim(),
        "demo"
    );
    // A CA that did not sign the server's certificate: no connection, exit 3.
    let other = pki.other_ca.to_str().unwrap();
    fails_with(
        quiver_env(&["--host", &host, "--ca", other, "show", "streams"], &[]),
        3,
        "cannot reach",
    );
    // Not a CA file: a usage error.
    fails_with(
        quiver_env(
            &[
                "--host",
                &host,
                "--ca",
                pki.key.to_str().unwrap(),
                "show",
                "streams",
            ],
            &[],
        ),
        2,
        "--ca",
    );
}
