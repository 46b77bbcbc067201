//! Differential test: random filter/project rules over seeded random rows, run through the
//! engine on 1 and 2 workers, compared with a small row-at-a-time reference evaluator written
//! from eKuiper's semantics (nulls, BIGINT/FLOAT mixing, integer division, division by zero).

mod common;

use std::time::Duration;

use quiver_connectors::codec::encode::batch_to_rows;
use quiver_connectors::memory::MemoryPayload;
use quiver_dataflow::{Action, Engine, RuleSpec};
use serde_json::{Map, Value, json};

/// SplitMix64: small, seeded, reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A value of the reference evaluator: missing (null), BIGINT, FLOAT or BOOLEAN.
#[derive(Debug, Clone, Copy, PartialEq)]
enum V {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// A random expression; `Err` in evaluation means the row fails (an exception).
#[derive(Debug, Clone)]
enum E {
    Col(&'static str),
    Int(i64),
    Arith(&'static str, Box<E>, Box<E>),
    Cmp(&'static str, Box<E>, Box<E>),
    And(Box<E>, Box<E>),
    Or(Box<E>, Box<E>),
    Not(Box<E>),
}

const COLS: [&str; 3] = ["a", "b", "x"];

fn gen_num(r: &mut Rng, depth: u32) -> E {
    match if depth == 0 { r.below(2) } else { r.below(4) } {
        0 => E::Col(COLS[r.below(3) as usize]),
        1 => E::Int(r.below(7) as i64 - 2),
        _ => {
            let op = ["+", "-", "*", "/", "%"][r.below(5) as usize];
            E::Arith(
                op,
                Box::new(gen_num(r, depth - 1)),
                Box::new(gen_num(r, depth - 1)),
            )
        }
    }
}

fn gen_bool(r: &mut Rng, depth: u32) -> E {
    match if depth == 0 { 0 } else { r.below(4) } {
        0 | 1 => {
            let op = ["=", "!=", "<", "<=", ">", ">="][r.below(6) as usize];
            E::Cmp(op, Box::new(gen_num(r, 1)), Box::new(gen_num(r, 1)))
        }
        2 => {
            let (a, b) = (gen_bool(r, depth - 1), gen_bool(r, depth - 1));
            if r.below(2) == 0 {
                E::And(Box::new(a), Box::new(b))
            } else {
                E::Or(Box::new(a), Box::new(b))
            }
        }
        _ => E::Not(Box::new(gen_bool(r, depth - 1))),
    }
}

fn sql(e: &E) -> String {
    match e {
        E::Col(c) => c.to_string(),
        E::Int(i) => format!("({i})"),
        E::Arith(op, a, b) | E::Cmp(op, a, b) => format!("({} {op} {})", sql(a), sql(b)),
        E::And(a, b) => format!("({} AND {})", sql(a), sql(b)),
        E::Or(a, b) => format!("({} OR {})", sql(a), sql(b)),
        E::Not(a) => format!("(NOT {})", sql(a)),
    }
}

fn num(v: V) -> Option<f64> {
    match v {
        V::Int(i) => Some(i as f64),
        V::Float(f) => Some(f),
        _ => None,
    }
}

/// Row-at-a-time eKuiper semantics.
fn eval(e: &E, row: &Map<String, Value>) -> Result<V, ()> {
    Ok(match e {
        E::Col(c) => match row.get(*c) {
            None | Some(Value::Null) => V::Null,
            // `a` and `b` are BIGINT columns, `x` is FLOAT.
            Some(v) if *c == "x" => V::Float(v.as_f64().unwrap()),
            Some(v) => V::Int(v.as_i64().unwrap()),
        },
        E::Int(i) => V::Int(*i),
        E::Arith(op, a, b) => {
            let (l, r) = (eval(a, row)?, eval(b, row)?);
            match (l, r) {
                (V::Null, _) | (_, V::Null) => V::Null,
                (V::Int(x), V::Int(y)) => match *op {
                    "+" => V::Int(x.wrapping_add(y)),
                    "-" => V::Int(x.wrapping_sub(y)),
                    "*" => V::Int(x.wrapping_mul(y)),
                    "/" if y == 0 => return Err(()),
                    "/" => V::Int(x.wrapping_div(y)),
                    _ if y == 0 => return Err(()),
                    _ => V::Int(x.wrapping_rem(y)),
                },
                (l, r) => {
                    let (x, y) = (num(l).unwrap(), num(r).unwrap());
                    match *op {
                        "+" => V::Float(x + y),
                        "-" => V::Float(x - y),
                        "*" => V::Float(x * y),
                        _ if y == 0.0 => return Err(()),
                        "/" => V::Float(x / y),
                        _ => V::Float(x % y),
                    }
                }
            }
        }
        E::Cmp(op, a, b) => {
            let (l, r) = (eval(a, row)?, eval(b, row)?);
            if l == V::Null || r == V::Null {
                let both = l == V::Null && r == V::Null;
                return Ok(V::Bool(match *op {
                    "=" | "<=" | ">=" => both,
                    "!=" => !both,
                    _ => false,
                }));
            }
            let ord = match (l, r) {
                (V::Int(x), V::Int(y)) => x.partial_cmp(&y),
                (l, r) => num(l).unwrap().partial_cmp(&num(r).unwrap()),
            };
            let Some(ord) = ord else {
                return Ok(V::Bool(*op == "!="));
            };
            V::Bool(match *op {
                "=" => ord.is_eq(),
                "!=" => !ord.is_eq(),
                "<" => ord.is_lt(),
                "<=" => ord.is_le(),
                ">" => ord.is_gt(),
                _ => ord.is_ge(),
            })
        }
        // Kleene logic; the right side's errors matter only where the left does not decide.
        E::And(a, b) => match eval(a, row)? {
            V::Bool(false) => V::Bool(false),
            l => match (l, eval(b, row)?) {
                (_, V::Bool(false)) => V::Bool(false),
                (V::Bool(true), V::Bool(true)) => V::Bool(true),
                _ => V::Null,
            },
        },
        E::Or(a, b) => match eval(a, row)? {
            V::Bool(true) => V::Bool(true),
            l => match (l, eval(b, row)?) {
                (_, V::Bool(true)) => V::Bool(true),
                (V::Bool(false), V::Bool(false)) => V::Bool(false),
                _ => V::Null,
            },
        },
        E::Not(a) => match eval(a, row)? {
            V::Bool(b) => V::Bool(!b),
            _ => V::Null,
        },
    })
}

fn to_json(v: V) -> Option<Value> {
    match v {
        V::Null => None,
        V::Int(i) => Some(json!(i)),
        V::Float(f) if f.is_finite() => Some(json!(f)),
        V::Float(_) => None,
        V::Bool(b) => Some(json!(b)),
    }
}

fn canonical(row: &Map<String, Value>) -> String {
    let norm: Map<String, Value> = row
        .iter()
        .map(|(k, v)| {
            let v = match v.as_f64() {
                Some(f) if !v.is_boolean() => json!(format!("{:.6e}", f + 0.0)),
                _ => v.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    Value::Object(norm).to_string()
}

fn gen_rows(r: &mut Rng, n: usize) -> Vec<Map<String, Value>> {
    (0..n)
        .map(|_| {
            let mut m = Map::new();
            for c in COLS {
                if r.below(6) == 0 {
                    continue; // missing field
                }
                let v = r.below(9) as i64 - 4;
                m.insert(
                    c.to_string(),
                    if c == "x" {
                        json!(v as f64 + 0.5)
                    } else {
                        json!(v)
                    },
                );
            }
            m
        })
        .collect()
}

async fn run_engine(
    engine: &Engine,
    rule: &str,
    rows: &[Map<String, Value>],
) -> (Vec<String>, u64) {
    let bus = engine.connectors().memory().clone();
    let mut out = bus.subscribe("rand/out");
    engine
        .create_rule(RuleSpec {
            id: "r".into(),
            name: "r".into(),
            sql: rule.to_string(),
            actions: vec![Action {
                sink_type: "memory".into(),
                props: json!({"topic": "rand/out"}),
            }],
            options: Default::default(),
        })
        .unwrap_or_else(|e| panic!("{rule}: {e}"));
    for row in rows {
        bus.publish_json(
            "rand/in",
            Value::Object(row.clone()).to_string().into_bytes(),
        )
        .await;
    }
    bus.close("rand/in");
    assert!(
        engine
            .wait_finished("r", Duration::from_secs(30))
            .await
            .unwrap()
    );
    let mut got = Vec::new();
    while let Ok(m) = out.try_recv() {
        if let MemoryPayload::Batch(b) = m.payload {
            got.extend(batch_to_rows(&b, false).iter().map(canonical));
        }
    }
    got.sort();
    let exceptions = engine
        .rule_status("r")
        .unwrap()
        .metrics
        .iter()
        .filter(|(k, _)| k.ends_with("_exceptions_total"))
        .filter_map(|(_, v)| v.as_u64())
        .sum();
    engine.delete_rule("r").unwrap();
    (got, exceptions)
}

#[test]
fn filter_and_project_match_the_reference() {
    let rt = common::runtime();
    for workers in [1, 2] {
        let engine = common::engine(&rt, workers);
        engine
            .create_stream(
                r#"CREATE STREAM rnd (a BIGINT, b BIGINT, x FLOAT) WITH (DATASOURCE="rand/in", TYPE="memory")"#,
            )
            .unwrap();
        let mut rng = Rng(0x5eed ^ workers as u64);
        for round in 0..100 {
            let pred = gen_bool(&mut rng, 2);
            let p1 = gen_num(&mut rng, 2);
            let p2 = gen_num(&mut rng, 1);
            let rule = format!(
                "SELECT {} AS p1, {} AS p2 FROM rnd WHERE {}",
                sql(&p1),
                sql(&p2),
                sql(&pred)
            );
            let rows = gen_rows(&mut rng, 200);
            let mut expected = Vec::new();
            let mut expected_exceptions = 0u64;
            for row in &rows {
                let keep = match eval(&pred, row) {
                    Ok(V::Bool(true)) => true,
                    Ok(_) => false,
                    Err(()) => {
                        expected_exceptions += 1;
                        false
                    }
                };
                if !keep {
                    continue;
                }
                match (eval(&p1, row), eval(&p2, row)) {
                    (Ok(a), Ok(b)) => {
                        let mut m = Map::new();
                        if let Some(v) = to_json(a) {
                            m.insert("p1".into(), v);
                        }
                        if let Some(v) = to_json(b) {
                            m.insert("p2".into(), v);
                        }
                        expected.push(canonical(&m));
                    }
                    _ => expected_exceptions += 1,
                }
            }
            expected.sort();
            let (got, exceptions) = rt.block_on(run_engine(&engine, &rule, &rows));
            assert_eq!(
                got, expected,
                "round {round}, {workers} worker(s), rule: {rule}"
            );
            assert_eq!(
                exceptions, expected_exceptions,
                "exceptions, round {round}, {workers} worker(s), rule: {rule}"
            );
            // The memory topic was closed by the previous round; nothing else to reset.
        }
        engine.shutdown();
    }
}
