//! The action's properties, parsed and validated once in `provision` into [`Settings`].
//!
//! The host takes eKuiper's common sink properties (`batchSize`, `lingerInterval`, `fields`,
//! `bufferLength`, `dataTemplate`) before the plugin sees the rest; `fields` reaches the
//! plugin as the batch's columns, already in that order.

use std::time::Duration;

use mysql_async::{Opts, OptsBuilder, PoolConstraints, PoolOpts, SslOpts};
use quiver_plugin_abi::sdk::serde_json::Value;
use quiver_plugin_abi::sdk::{Config, Error};

/// The keys this plugin reads.
const KEYS: &[&str] = &[
    "url",
    "table",
    "poolSize",
    "maxBufferedRows",
    "maxBufferedBatches",
    "retryMaxInterval",
    "writeTimeout",
    "closeTimeout",
];

/// eKuiper's common sink keys that reach the plugin and mean nothing to it (the rows are
/// written as rows, and retries and buffering are the plugin's own). Accepted with a warning.
const IGNORED: &[&str] = &[
    "sendSingle",
    "omitIfEmpty",
    "runAsync",
    "enableCache",
    "resendInterval",
    "memoryCacheThreshold",
    "maxDiskCache",
    "bufferPageSize",
    "cleanCacheAtStop",
    "resendAlterQueue",
    "resendPriority",
    "resendIndicatorField",
    "concurrency",
];

/// Go-driver DSN parameters that are accepted and ignored: they do not change what is written.
/// (`tls` is read, see [`dsn_tls`].)
const GO_PARAMS: &[&str] = &[
    "charset",
    "collation",
    "parseTime",
    "loc",
    "timeout",
    "readTimeout",
    "writeTimeout",
    "allowNativePasswords",
];

/// Validated settings; runtime code sees only these.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to connect (the password stays inside).
    pub opts: Opts,
    /// `host:port/db` for messages, without the credentials.
    pub target: String,
    /// The table, quoted: `` `t` `` or `` `db`.`t` ``.
    pub table: String,
    /// Most connections in the pool (one writes; a spare reconnects).
    pub pool_size: usize,
    /// Most rows kept unwritten (the buffer of batches waiting for the database).
    pub max_buffered_rows: usize,
    /// Most batches kept unwritten.
    pub max_buffered_batches: usize,
    /// The longest wait between retries (they start at 100 ms and double).
    pub retry_max_interval: Duration,
    /// The longest one batch's transaction may take before it counts as failed and is retried.
    pub write_timeout: Duration,
    /// How long `close` waits for buffered batches to be written.
    pub close_timeout: Duration,
}

fn err(message: String) -> Error {
    message.into()
}

/// The closest key, for a "did you mean" hint.
fn closest(key: &str) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    KEYS.iter()
        .copied()
        .min_by_key(|k| edit_distance(&lower, &k.to_ascii_lowercase()))
        .filter(|k| edit_distance(&lower, &k.to_ascii_lowercase()) <= 3)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

impl Settings {
    /// Parses and checks the action's properties; the error says which key is wrong and why.
    pub fn parse(config: &Config) -> Result<Settings, Error> {
        for key in config.keys() {
            if KEYS.contains(&key.as_str()) {
                continue;
            }
            if IGNORED.contains(&key.as_str()) {
                eprintln!("quiver mysql sink: property \"{key}\" has no effect on this sink");
                continue;
            }
            let hint = closest(key)
                .map(|k| format!("; did you mean \"{k}\"?"))
                .unwrap_or_else(|| format!("; the properties are: {}", KEYS.join(", ")));
            return Err(err(format!("unknown property \"{key}\"{hint}")));
        }
        let string = |key: &str| -> Result<Option<&str>, Error> {
            match config.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(err(format!("property \"{key}\" must be a string"))),
            }
        };
        let number = |key: &str, default: u64, min: u64, max: u64| -> Result<u64, Error> {
            let n = match config.get(key) {
                None | Some(Value::Null) => return Ok(default),
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(s)) => s.parse().ok(),
                Some(_) => None,
            };
            n.filter(|n| (min..=max).contains(n)).ok_or_else(|| {
                err(format!(
                    "property \"{key}\" must be a whole number from {min} to {max}"
                ))
            })
        };
        let url = string("url")?.ok_or_else(|| {
            err("needs a \"url\" property, e.g. \"mysql://user:pass@127.0.0.1:3306/db\" or \"user:pass@tcp(127.0.0.1:3306)/db\"".into())
        })?;
        let table = string("table")?
            .ok_or_else(|| err("needs a \"table\" property: the table to insert into".into()))?;
        let pool_size = number("poolSize", 2, 1, 64)? as usize;
        let (builder, target) = parse_url(url)?;
        let has_db = builder_db(&builder).is_some();
        let table = quote_table(table)?;
        if !has_db && !table.contains('.') {
            return Err(err(format!(
                "\"url\" names no database; add \"/dbname\" to it or write \"table\" as \"db.{}\"",
                table.trim_matches('`')
            )));
        }
        let pool = PoolOpts::default().with_constraints(
            PoolConstraints::new(1, pool_size).expect("1 <= pool_size, checked above"),
        );
        let opts = Opts::from(
            builder
                .pool_opts(pool)
                .tcp_keepalive(Some(Duration::from_secs(10)))
                // mysql_async would switch a loopback TCP connection to the server's unix
                // socket; connect where the url says, as the Go driver does.
                .prefer_socket(false),
        );
        Ok(Settings {
            opts,
            target,
            table,
            pool_size,
            max_buffered_rows: number("maxBufferedRows", 100_000, 1, 100_000_000)? as usize,
            max_buffered_batches: number("maxBufferedBatches", 1_000, 1, 1_000_000)? as usize,
            retry_max_interval: Duration::from_millis(number(
                "retryMaxInterval",
                2_000,
                100,
                600_000,
            )?),
            write_timeout: Duration::from_millis(number("writeTimeout", 30_000, 100, 3_600_000)?),
            close_timeout: Duration::from_millis(number("closeTimeout", 10_000, 0, 3_600_000)?),
        })
    }
}

fn builder_db(b: &OptsBuilder) -> Option<String> {
    Opts::from(b.clone()).db_name().map(str::to_string)
}

/// Reads `url` in either form: `mysql://user:pass@host:3306/db?...` or the Go driver's DSN
/// `user:pass@tcp(host:3306)/db?...` that eKuiper's SQL sink takes. Returns the connection
/// options and `host:port/db` for messages.
pub fn parse_url(url: &str) -> Result<(OptsBuilder, String), Error> {
    let builder = if url.starts_with("mysql://") {
        let opts = Opts::from_url(url)
            .map_err(|e| err(format!("\"url\" is not a valid MySQL URL: {e}")))?;
        OptsBuilder::from_opts(opts)
    } else if url.contains("://") {
        return Err(err(
            "\"url\" must start with \"mysql://\" or be a Go-driver DSN like \"user:pass@tcp(host:3306)/db\""
                .into(),
        ));
    } else {
        parse_dsn(url)?
    };
    let opts = Opts::from(builder.clone());
    let target = match opts.socket() {
        Some(s) => format!("unix:{s}/{}", opts.db_name().unwrap_or("")),
        None => format!(
            "{}:{}/{}",
            opts.ip_or_hostname(),
            opts.tcp_port(),
            opts.db_name().unwrap_or("")
        ),
    };
    Ok((builder, target))
}

/// The Go driver's DSN: `[user[:password]@][net[(addr)]]/dbname[?param=value&...]`.
fn parse_dsn(dsn: &str) -> Result<OptsBuilder, Error> {
    let bad = |why: &str| {
        err(format!(
            "\"url\" is not a valid DSN ({why}); write \"user:pass@tcp(host:3306)/db\" or \"mysql://user:pass@host:3306/db\""
        ))
    };
    let slash = dsn.rfind('/').ok_or_else(|| bad("no \"/dbname\""))?;
    let (head, tail) = (&dsn[..slash], &dsn[slash + 1..]);
    // The database and parameters; a password may contain '/', so the last '/' that is
    // followed only by the database decides (as the Go driver does).
    let (db, params) = match tail.split_once('?') {
        Some((d, p)) => (d, Some(p)),
        None => (tail, None),
    };
    let mut ssl = None;
    for param in params.into_iter().flat_map(|p| p.split('&')) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        if key == "tls" {
            ssl = dsn_tls(value)?;
        } else if !key.is_empty() && !GO_PARAMS.contains(&key) {
            return Err(err(format!(
                "DSN parameter \"{key}\" is not supported; supported: tls, and (ignored) {}",
                GO_PARAMS.join(", ")
            )));
        }
    }
    let (creds, net) = match head.rfind('@') {
        Some(at) => (Some(&head[..at]), &head[at + 1..]),
        None => (None, head),
    };
    let mut b = OptsBuilder::default().ssl_opts(ssl);
    if let Some(creds) = creds {
        let (user, pass) = match creds.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (creds, None),
        };
        b = b.user(Some(user)).pass(pass);
    }
    if !db.is_empty() {
        b = b.db_name(Some(db));
    }
    let (proto, addr) = match net.split_once('(') {
        Some((p, rest)) => (
            p,
            rest.strip_suffix(')')
                .ok_or_else(|| bad("unclosed \"(\""))?,
        ),
        None => (net, ""),
    };
    match proto {
        "" | "tcp" => {
            let addr = if addr.is_empty() {
                "127.0.0.1:3306"
            } else {
                addr
            };
            let (host, port) = match addr.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                    h.trim_start_matches('[').trim_end_matches(']'),
                    p.parse::<u16>()
                        .map_err(|_| bad("the port is not a number"))?,
                ),
                _ => (addr, 3306),
            };
            Ok(b.ip_or_hostname(host).tcp_port(port))
        }
        "unix" => Ok(b.socket(Some(addr))),
        other => Err(bad(&format!("network \"{other}\" is not tcp or unix"))),
    }
}

/// The Go driver's `tls` DSN parameter: `true` verifies the server's certificate and name
/// (against the Mozilla roots built into the plugin), `skip-verify` encrypts without checking
/// them, `false` connects in the clear. `preferred` (TLS only if the server offers it) and the
/// names of TLS configs a Go program registers have no equivalent here and are refused.
fn dsn_tls(value: &str) -> Result<Option<SslOpts>, Error> {
    match value {
        "true" => Ok(Some(SslOpts::default())),
        "skip-verify" => Ok(Some(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        )),
        "false" => Ok(None),
        "preferred" => Err(err(
            "DSN parameter tls=preferred is not supported (it falls back to an unencrypted \
             connection); use tls=true, tls=skip-verify or tls=false"
                .into(),
        )),
        other => Err(err(format!(
            "DSN parameter tls=\"{other}\" is not supported (registered TLS configs are a Go \
             feature); use tls=true, tls=skip-verify or tls=false, or a mysql:// url with \
             require_ssl=true and verify_ca/verify_identity"
        ))),
    }
}

/// Checks one identifier and quotes it with backticks. Names travel in the SQL text, so only
/// names that need no escaping are allowed: no backtick, no control character, 1 to 64
/// characters, not ending in a space (MySQL's own rules, minus the backtick).
pub fn quote_ident(name: &str) -> Result<String, Error> {
    let chars = name.chars().count();
    if chars == 0 || chars > 64 {
        return Err(err(format!(
            "identifier \"{name}\" must have 1 to 64 characters"
        )));
    }
    if name.chars().any(|c| c == '`' || c.is_control()) || name.ends_with(' ') {
        return Err(err(format!(
            "identifier \"{}\" contains a backtick, a control character or a trailing space",
            name.escape_debug()
        )));
    }
    Ok(format!("`{name}`"))
}

/// `table` or `db.table`, quoted.
pub fn quote_table(table: &str) -> Result<String, Error> {
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 {
        return Err(err(format!(
            "\"table\" must be \"name\" or \"db.name\", not \"{table}\""
        )));
    }
    Ok(parts
        .into_iter()
        .map(quote_ident)
        .collect::<Result<Vec<_>, _>>()?
        .join("."))
}

#[cfg(test)]
mod tests {
    use quiver_plugin_abi::sdk::serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<Settings, String> {
        Settings::parse(v.as_object().expect("object")).map_err(|e| e.to_string())
    }

    #[test]
    fn both_url_forms_read_the_same() {
        let a = parse(json!({"url": "mysql://root:pw@127.0.0.1:3307/test", "table": "t"}))
            .expect("url");
        let b =
            parse(json!({"url": "root:pw@tcp(127.0.0.1:3307)/test?parseTime=true", "table": "t"}))
                .expect("dsn");
        for s in [&a, &b] {
            assert_eq!(s.opts.ip_or_hostname(), "127.0.0.1");
            assert_eq!(s.opts.tcp_port(), 3307);
            assert_eq!(s.opts.user(), Some("root"));
            assert_eq!(s.opts.pass(), Some("pw"));
            assert_eq!(s.opts.db_name(), Some("test"));
            assert_eq!(s.target, "127.0.0.1:3307/test");
            assert_eq!(s.table, "`t`");
        }
        let c = parse(json!({"url": "u:p@w@/db", "table": "x.y"})).expect("defaults");
        assert_eq!(c.opts.pass(), Some("p@w"));
        assert_eq!(c.opts.tcp_port(), 3306);
        assert_eq!(c.table, "`x`.`y`");
        assert!(c.opts.ssl_opts().is_none());
    }

    #[test]
    fn tls_in_either_url_form() {
        let ssl = |url: &str| {
            parse(json!({"url": url, "table": "t"}))
                .expect(url)
                .opts
                .ssl_opts()
                .cloned()
        };
        let verify = ssl("u@tcp(h)/db?tls=true").expect("tls=true");
        assert!(!verify.accept_invalid_certs() && !verify.skip_domain_validation());
        let skip = ssl("u@tcp(h)/db?charset=utf8&tls=skip-verify").expect("skip-verify");
        assert!(skip.accept_invalid_certs() && skip.skip_domain_validation());
        assert!(ssl("u@tcp(h)/db?tls=false").is_none());
        let url = ssl("mysql://u@h/db?require_ssl=true&verify_ca=false").expect("require_ssl");
        assert!(url.accept_invalid_certs());
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let cases = [
            (json!({"table": "t"}), "needs a \"url\" property"),
            (json!({"url": "mysql://h/db"}), "needs a \"table\" property"),
            (
                json!({"url": "mysql://h/db", "table": "t", "tabel": 1}),
                "unknown property \"tabel\"; did you mean \"table\"?",
            ),
            (
                json!({"url": "mysql://h/db", "table": "t`; DROP TABLE x"}),
                "contains a backtick",
            ),
            (
                json!({"url": "mysql://h", "table": "t"}),
                "names no database",
            ),
            (
                json!({"url": "postgres://h/db", "table": "t"}),
                "must start with \"mysql://\"",
            ),
            (
                json!({"url": "u@tcp(h:x)/db", "table": "t"}),
                "the port is not a number",
            ),
            (
                json!({"url": "u@tcp(h)/db?foo=1", "table": "t"}),
                "DSN parameter \"foo\" is not supported",
            ),
            (
                json!({"url": "u@tcp(h)/db?tls=preferred", "table": "t"}),
                "tls=preferred is not supported",
            ),
            (
                json!({"url": "u@tcp(h)/db?tls=custom", "table": "t"}),
                "tls=\"custom\" is not supported",
            ),
            (
                json!({"url": "mysql://h/db", "table": "t", "poolSize": 0}),
                "\"poolSize\" must be a whole number from 1 to 64",
            ),
        ];
        for (config, want) in cases {
            let got = parse(config.clone()).expect_err("refused");
            assert!(got.contains(want), "{config}: {got:?} should say {want:?}");
            assert!(
                !got.starts_with("mysql: "),
                "the host names the sink: {got}"
            );
        }
        assert!(
            parse(json!({"url": "mysql://h/db", "table": "t", "sendSingle": true})).is_ok(),
            "eKuiper's common keys are accepted"
        );
    }
}
