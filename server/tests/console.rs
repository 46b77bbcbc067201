//! The web console in a real browser: Debian's headless chromium, driven through chromedriver
//! (WebDriver) by fantoccini, against a real quiverd. The test does what a person does:
//! creates a stream and a rule in the editor, sees a validation error for bad SQL, pushes rows
//! and watches the rule's counts move on the overview, installs a plugin by uploading its zip,
//! and stops the rule; creates and deletes a named connection and a protobuf schema on their
//! pages, seeing the server's refusals as they are. Each page's screenshot is written to `target/console-screenshots/`.
//!
//! chromium and chromedriver come from Debian (`scripts/test.sh` installs them); the test
//! fails, never skips, without them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use common::plugin_zip::package;
use common::{Server, free_port, repo_root, temp_dir};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long a page may take to show what the test waits for.
const WAIT: Duration = Duration::from_secs(20);

/// A chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "{CHROMEDRIVER} and {CHROMIUM} are needed: apt-get install chromium chromium-driver \
             (scripts/test.sh does)"
        );
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, url }
    }

    /// A headless browser session.
    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the screenshots go (test artifacts).
fn screenshots() -> PathBuf {
    let dir = repo_root().join("target").join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(screenshots().join(format!("{name}.png")), png).expect("write screenshot");
}

/// The text of the first element matching `css`, or "" while there is none.
async fn text(browser: &Client, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until the text of `css` satisfies `ok`; fails with the last text seen.
async fn wait_text(browser: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = text(browser, css).await;
        if ok(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{css} never showed what was expected; last: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Types `value` into the field `css` as a person would see it: value set, `input` fired.
async fn fill(browser: &Client, css: &str, value: &str) {
    browser
        .wait()
        .for_element(Locator::Css(css))
        .await
        .expect("the field");
    browser
        .execute(
            "const f = document.querySelector(arguments[0]); f.focus(); f.value = arguments[1]; \
             f.dispatchEvent(new Event('input', {bubbles: true}));",
            vec![json!(css), json!(value)],
        )
        .await
        .expect("fill");
}

/// Types `sql` into the editor and waits until the server has found it valid.
async fn type_valid_sql(browser: &Client, sql: &str) {
    fill(browser, "#sql", sql).await;
    wait_text(browser, "#validation", |t| t == "valid").await;
}

async fn click(browser: &Client, css: &str) {
    browser
        .wait()
        .for_element(Locator::Css(css))
        .await
        .expect("the button")
        .click()
        .await
        .expect("click");
}

/// A rule's metric from the REST API.
fn metric(server: &Server, rule: &str, key: &str) -> Value {
    let (_, status) = server.json("GET", &format!("/rules/{rule}/status"), None);
    status[key].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_creates_watches_installs_and_stops_in_the_console() {
    let dir = temp_dir("console");
    let zips = dir.join("zips");
    std::fs::create_dir_all(&zips).expect("zips dir");
    let zip = package(&zips, "sink_memo", "memo", "1.0.0", json!({}));
    let server = Server::start(&dir.join("data"));
    let driver = Driver::start();
    let browser = driver.browser().await;
    let base = format!("http://{}/console/", server.addr());

    // GET / stays eKuiper's JSON; the console is under /console/.
    let (_, info) = server.json("GET", "/", None);
    assert!(info["version"].is_string(), "{info}");

    // A stream from the editor.
    browser
        .goto(&format!("{base}#/editor?kind=stream"))
        .await
        .expect("editor");
    fill(
        &browser,
        "#sql",
        r#"CREATE STREAM demo (temperature FLOAT, humidity BIGINT) WITH (TYPE="httppush", DATASOURCE="/demo", FORMAT="json")"#,
    )
    .await;
    click(&browser, "#create").await;
    wait_text(&browser, "#outcome", |t| t.contains("demo")).await;
    assert_eq!(server.json("GET", "/streams", None).1, json!(["demo"]));

    // A rule: bad SQL shows the server's error at its line and column, as the person types.
    browser
        .goto(&format!("{base}#/editor?kind=rule"))
        .await
        .expect("editor");
    fill(&browser, "#rule-id", "hot").await;
    fill(&browser, "#sql", "SELECT temperature,\nFROM demo").await;
    let error = wait_text(&browser, "#validation", |t| t.contains("line")).await;
    assert!(error.contains("line 2"), "{error}");
    let marked = browser
        .find_all(Locator::Css(".sql .tok-err"))
        .await
        .expect("marks");
    assert!(
        !marked.is_empty(),
        "the error position is marked in the SQL"
    );
    screenshot(&browser, "editor").await;
    type_valid_sql(
        &browser,
        "SELECT temperature, humidity\nFROM demo\nWHERE temperature > 20",
    )
    .await;
    // "Try it" on pasted rows: a rule test whose results stream into the page.
    click(&browser, "#try-rows-button").await;
    let tried = wait_text(&browser, "#try-results", |t| t.contains("25")).await;
    assert!(!tried.contains("\"temperature\":10"), "{tried}");
    click(&browser, "#create").await;

    // The rule page: the dataflow graph laid out, the status live.
    wait_text(&browser, "#rule-status", |t| t == "running").await;
    let boxes = browser
        .find_all(Locator::Css("#graph svg g[data-node]"))
        .await
        .expect("graph nodes");
    assert!(
        boxes.len() >= 2,
        "a source and a sink at least: {}",
        boxes.len()
    );

    // Rows pushed: the overview's counts move.
    browser.goto(&base).await.expect("overview");
    wait_text(&browser, "tr[data-rule='hot'] .in-total", |t| t == "0").await;
    // Rows over a few seconds, so the sparklines have a shape.
    for (i, t) in [25.0, 10.0, 30.5, 21.0, 22.0, 40.0].into_iter().enumerate() {
        let rows: Vec<Value> = (0..=i)
            .map(|_| json!({"temperature": t, "humidity": 40}))
            .collect();
        let (status, body) = server.push("/demo", &Value::from(rows).to_string());
        assert_eq!(status, 200, "{body}");
        if i == 0 {
            wait_text(&browser, "tr[data-rule='hot'] .in-total", |t| t == "1").await;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // 21 rows in; all but the 2 at 10.0 are above 20.
    wait_text(&browser, "tr[data-rule='hot'] .in-total", |t| t == "21").await;
    wait_text(&browser, "tr[data-rule='hot'] .out-total", |t| t == "19").await;
    assert_eq!(
        metric(&server, "hot", "sink_log_0_0_records_out_total"),
        json!(19)
    );
    screenshot(&browser, "overview").await;

    // The rule page again, with counts on its graph.
    browser
        .goto(&format!("{base}#/rule/hot"))
        .await
        .expect("rule");
    wait_text(&browser, "#graph g[data-node^='sink_'] text.count", |t| {
        t.contains("out 19")
    })
    .await;
    screenshot(&browser, "rule").await;

    // A plugin installed by uploading its zip.
    browser
        .goto(&format!("{base}#/plugins"))
        .await
        .expect("plugins");
    fill(&browser, "#plugin-type", "sinks").await;
    fill(&browser, "#plugin-name", "memo").await;
    browser
        .find(Locator::Css("#plugin-file"))
        .await
        .expect("file input")
        .send_keys(zip.to_str().expect("UTF-8 path"))
        .await
        .expect("choose the zip");
    click(&browser, "#install-upload").await;
    wait_text(&browser, "#plugin-outcome", |t| {
        t.contains("plugin memo is created (version 1.0.0)")
    })
    .await;
    wait_text(&browser, "tr[data-plugin='memo'] .version", |t| {
        t == "1.0.0"
    })
    .await;
    assert_eq!(
        server.json("GET", "/plugins/sinks", None).1,
        json!(["memo"])
    );
    // The server's refusal is shown as it is.
    click(&browser, "#install-upload").await;
    wait_text(&browser, "#plugin-outcome", |t| {
        t.contains("already installed")
    })
    .await;
    screenshot(&browser, "plugins").await;

    // Edit the rule from its page: the editor loads it, validates the change, saves it.
    browser
        .goto(&format!("{base}#/rule/hot"))
        .await
        .expect("rule");
    click(&browser, "a[href='#/editor?rule=hot']").await;
    wait_text(&browser, "#validation", |t| t == "valid").await;
    type_valid_sql(
        &browser,
        "SELECT temperature, humidity\nFROM demo\nWHERE temperature > 30",
    )
    .await;
    click(&browser, "#create").await;
    wait_text(&browser, "#rule-sql", |t| t.contains("> 30")).await;
    let (_, rule) = server.json("GET", "/rules/hot", None);
    assert!(
        rule["sql"].as_str().unwrap_or("").ends_with("> 30"),
        "{rule}"
    );

    // Stop the rule from its page.
    wait_text(&browser, "#rule-status", |t| t == "running").await;
    click(&browser, "#stop").await;
    wait_text(&browser, "#rule-status", |t| t == "stopped").await;
    assert_eq!(metric(&server, "hot", "status"), json!("stopped"));

    // Phone width: the overview still shows the rule, its status and its counts (new ones:
    // the edit replaced the rule).
    browser.set_window_size(390, 844).await.expect("resize");
    browser.goto(&base).await.expect("overview");
    wait_text(&browser, "tr[data-rule='hot'] .badge", |t| t == "stopped").await;
    wait_text(&browser, "tr[data-rule='hot'] .in-total", |t| t == "0").await;
    screenshot(&browser, "overview-phone").await;

    browser.close().await.expect("close the browser");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_authentication_the_console_asks_for_the_token() {
    let dir = temp_dir("console-auth");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cret-console-token\n").expect("token file");
    let mut server = Server::spawn(
        &dir.join("data"),
        &[
            "--auth-token-file".to_string(),
            token_file.display().to_string(),
        ],
        &[],
        None,
    );
    server.wait_ready();
    // The API itself still refuses requests without the token.
    assert_eq!(server.request("GET", "/rules", &[], None).0, 401);
    assert_eq!(
        server.request("GET", "/console/events", &[], None).0,
        401,
        "the event stream needs the token"
    );
    let driver = Driver::start();
    let browser = driver.browser().await;
    browser
        .goto(&format!("http://{}/console/", server.addr()))
        .await
        .expect("console");
    fill(&browser, "#login-token", "s3cret-console-token").await;
    click(&browser, "#login-form button").await;
    // Signed in: the live overview arrives.
    wait_text(&browser, "#rules tbody", |t| t.contains("No rules yet")).await;
    wait_text(&browser, ".cards", |t| t.contains("Workers")).await;
    browser.close().await.expect("close the browser");
    server.stop();
}

/// Opens `GET path` and reads until the first server-sent event has arrived (or the response
/// is complete); returns the connection, kept open, and what was read.
fn open_events(addr: &str, path: &str) -> (std::net::TcpStream, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("read");
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        let head_end = text.find("\r\n\r\n");
        let sse = text.contains("text/event-stream");
        if n == 0
            || (sse && text.contains("event: metrics") && text.ends_with("\n\n\r\n"))
            || (!sse && head_end.is_some_and(|h| text.len() > h + 4 && text.ends_with('}')))
        {
            return (s, text.into_owned());
        }
    }
}

#[test]
fn event_streams_carry_a_page_of_rules_and_are_bounded() {
    let dir = temp_dir("console-streams");
    let server = Server::start(&dir.join("data"));
    server.create_stream(
        r#"CREATE STREAM demo (v BIGINT) WITH (TYPE="httppush", DATASOURCE="/demo", FORMAT="json")"#,
    );
    for id in ["r1", "r2", "r3", "solo"] {
        let rule = json!({"id": id, "sql": "SELECT * FROM demo", "actions": [{"nop": {}}]});
        assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    }
    // A page: the rules matching the filter, in id order, from the offset; one in detail.
    let (first, text) = open_events(
        server.addr(),
        "/console/events?filter=r&offset=1&limit=1&rule=solo",
    );
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#""rulesTotal":3"#), "{text}");
    assert!(text.contains(r#""rules":[{"id":"r2""#), "{text}");
    assert!(
        text.contains(r#""source_demo_0_records_in_total":0"#),
        "{text}"
    );
    // At most 16 streams at once; the next is refused naming the limit.
    let mut open = vec![first];
    for _ in 1..16 {
        let (s, text) = open_events(server.addr(), "/console/events?limit=0");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        open.push(s);
    }
    let (_, refused) = open_events(server.addr(), "/console/events?limit=0");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.contains("too many console event streams: the limit is 16"),
        "{refused}"
    );
    // A closed tab frees its place (the server notices at its next message).
    drop(open.pop());
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, text) = open_events(server.addr(), "/console/events?limit=0");
        if text.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "no place came free: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Bounds are refused by name.
    let (status, body) = server.call("GET", "/console/events?limit=501", None);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("limit 501 is above the limit of 500"),
        "{body}"
    );
    drop(open);
    server.stop();
}

/// Accepts the page's confirm() prompts, as a person clicking "OK" would.
async fn accept_confirms(browser: &Client) {
    browser
        .execute("window.confirm = () => true;", vec![])
        .await
        .expect("confirm");
}

/// Something a stream uses, deleted from its page: refused while the stream exists, with the
/// server's reason shown; deleted once the stream is dropped.
struct InUse<'a> {
    stream: &'a str,
    sql: &'a str,
    button: &'a str,
    outcome: &'a str,
    refusal: &'a str,
    deleted: &'a str,
    screenshot: &'a str,
}

async fn delete_in_use(browser: &Client, server: &Server, case: &InUse<'_>) {
    server.create_stream(case.sql);
    accept_confirms(browser).await;
    click(browser, case.button).await;
    let bad = format!("{} .bad", case.outcome);
    wait_text(browser, &bad, |t| t.contains(case.refusal)).await;
    screenshot(browser, case.screenshot).await;
    let (status, body) = server.call("DELETE", &format!("/streams/{}", case.stream), None);
    assert_eq!(status, 200, "{body}");
    click(browser, case.button).await;
    wait_text(browser, case.outcome, |t| t.contains(case.deleted)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_manages_connections_and_schemas_in_the_console() {
    let dir = temp_dir("console-registry");
    let server = Server::start(&dir.join("data"));
    let driver = Driver::start();
    let browser = driver.browser().await;
    let base = format!("http://{}/console/", server.addr());

    // A connection to the machine's Mosquitto, created from its page, shown connected.
    browser
        .goto(&format!("{base}#/connections"))
        .await
        .expect("connections");
    wait_text(&browser, "#connections tbody", |t| {
        t.contains("No connections yet")
    })
    .await;
    fill(&browser, "#connection-id", "edge").await;
    fill(&browser, "#connection-server", "tcp://127.0.0.1:1883").await;
    fill(&browser, "#connection-username", "console").await;
    fill(&browser, "#connection-password", "s3cret").await;
    click(&browser, "#connection-create").await;
    wait_text(&browser, "#connection-outcome", |t| {
        t.contains("connection \"edge\" is created")
    })
    .await;
    wait_text(&browser, "tr[data-connection='edge'] .status", |t| {
        t == "connected"
    })
    .await;
    let row = text(&browser, "tr[data-connection='edge']").await;
    assert!(row.contains("tcp://127.0.0.1:1883"), "{row}");
    // The password is sent, never shown back.
    let (_, edge) = server.json("GET", "/connections/edge", None);
    assert_eq!(edge["props"]["password"], json!("******"), "{edge}");

    // A refused create shows the server's message as it is.
    let bad = json!({"id": "bad", "typ": "mqtt", "props": {"server": "nope://127.0.0.1:1"}});
    let (status, refusal) = server.json("POST", "/connections", Some(bad));
    assert_eq!(status, 400, "{refusal}");
    let refusal = refusal["message"].as_str().expect("a message").to_string();
    fill(&browser, "#connection-id", "bad").await;
    fill(&browser, "#connection-server", "nope://127.0.0.1:1").await;
    click(&browser, "#connection-create").await;
    wait_text(&browser, "#connection-outcome .bad", |t| t == refusal).await;

    // Used by a stream: the delete is refused with the server's reason; then it goes.
    assert_eq!(
        server
            .call(
                "PUT",
                "/metadata/sources/mqtt/confKeys/viaEdge",
                Some(json!({"connectionSelector": "edge"}))
            )
            .0,
        200
    );
    delete_in_use(
        &browser,
        &server,
        &InUse {
            stream: "onedge",
            sql: r#"CREATE STREAM onedge () WITH (DATASOURCE="console/in", TYPE="mqtt", CONF_KEY="viaEdge")"#,
            button: "tr[data-connection='edge'] button.danger",
            outcome: "#connection-outcome",
            refusal: "connection \"edge\" is in use by stream \"onedge\"",
            deleted: "connection \"edge\" is deleted",
            screenshot: "connections",
        },
    )
    .await;
    wait_text(&browser, "#connections tbody", |t| {
        t.contains("No connections yet")
    })
    .await;

    // The statuses are asked for again while the page is shown, and no more once it is left.
    browser
        .execute(
            "window.connectionCalls = 0; const f = window.fetch; window.fetch = (p, i) => { \
             if (String(p).startsWith('/connections')) window.connectionCalls++; return f(p, i); };",
            vec![],
        )
        .await
        .expect("count requests");
    let calls = "return window.connectionCalls;";
    let deadline = Instant::now() + WAIT;
    while browser.execute(calls, vec![]).await.expect("count") == json!(0) {
        assert!(
            Instant::now() < deadline,
            "the statuses were never refreshed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A protobuf schema pasted on the Schemas page: bad text shows the parser's error.
    browser
        .goto(&format!("{base}#/schemas"))
        .await
        .expect("schemas");
    wait_text(&browser, "#schemas-protobuf", |t| t.contains("None")).await;
    browser
        .execute("window.connectionCalls = 0;", vec![])
        .await
        .expect("reset the count");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        browser.execute(calls, vec![]).await.expect("count"),
        json!(0),
        "no status requests once the page is left"
    );
    let bad_proto = "syntax = \"proto3\";\nmessage Reading { string device = ; }";
    let (status, parse_error) = server.json(
        "POST",
        "/schemas/protobuf",
        Some(json!({"name": "readings", "content": bad_proto})),
    );
    assert_eq!(status, 400, "{parse_error}");
    let parse_error = parse_error["message"]
        .as_str()
        .expect("a message")
        .to_string();
    fill(&browser, "#schema-name", "readings").await;
    fill(&browser, "#schema-content", bad_proto).await;
    click(&browser, "#schema-create").await;
    wait_text(&browser, "#schema-outcome .bad", |t| t == parse_error).await;
    assert_eq!(server.json("GET", "/schemas/protobuf", None).1, json!([]));
    let proto =
        "syntax = \"proto3\";\nmessage Reading { string device = 1; double temperature = 2; }";
    fill(&browser, "#schema-content", proto).await;
    click(&browser, "#schema-create").await;
    wait_text(&browser, "#schema-outcome", |t| {
        t.contains("schema protobuf.readings is created")
    })
    .await;
    click(&browser, "tr[data-schema='readings'] button.view").await;
    wait_text(&browser, "#schema-text", |t| {
        t.contains("double temperature = 2")
    })
    .await;
    // In use by a stream: the 409 is shown; then it is deleted.
    delete_in_use(
        &browser,
        &server,
        &InUse {
            stream: "pb",
            sql: r#"CREATE STREAM pb () WITH (DATASOURCE="console/pb", FORMAT="protobuf", SCHEMAID="readings.Reading")"#,
            button: "tr[data-schema='readings'] button.danger",
            outcome: "#schema-outcome",
            refusal: "schema protobuf.readings is in use by stream \"pb\"",
            deleted: "schema protobuf.readings is deleted",
            screenshot: "schemas",
        },
    )
    .await;
    wait_text(&browser, "#schemas-protobuf", |t| t.contains("None")).await;
    assert_eq!(
        text(&browser, "#schema-view").await,
        "",
        "the deleted text is gone"
    );
    assert_eq!(server.json("GET", "/schemas/protobuf", None).1, json!([]));

    browser.close().await.expect("close the browser");
    server.stop();
}
