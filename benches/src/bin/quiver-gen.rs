//! `quiver-gen`: writes the benchmark input, the seeded demo readings as JSON lines.
//!
//! ```text
//! quiver-gen --events N --out FILE [--seed S]
//! ```
//!
//! One object per line, `{"device":"dev-N","temperature":..,"humidity":..,"ts":..}`: 1,000
//! devices, 1 ms apart (see `quiver_benches::Generator`). The same seed gives the same file,
//! so every engine in a comparison reads identical bytes. `--out -` writes to stdout.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, bail};
use quiver_benches::{DEFAULT_SEED, Generator};

const USAGE: &str = "usage: quiver-gen --events N --out FILE [--seed S]   (FILE - is stdout)";

/// Lines written between flushes of the output buffer.
const BUFFER: usize = 1 << 20;

struct Options {
    events: u64,
    out: String,
    seed: u64,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Options> {
    let mut events = None;
    let mut out = None;
    let mut seed = DEFAULT_SEED;
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--events" => {
                let v = value()?;
                events = Some(
                    v.replace('_', "")
                        .parse::<u64>()
                        .with_context(|| format!("--events \"{v}\": expected a count"))?,
                );
            }
            "--out" => out = Some(value()?),
            "--seed" => {
                let v = value()?;
                seed = v
                    .parse()
                    .with_context(|| format!("--seed \"{v}\": expected a number"))?;
            }
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown flag \"{other}\"\n{USAGE}"),
        }
    }
    Ok(Options {
        events: events.with_context(|| format!("--events is required\n{USAGE}"))?,
        out: out.with_context(|| format!("--out is required\n{USAGE}"))?,
        seed,
    })
}

fn write(o: &Options, sink: &mut dyn std::io::Write) -> anyhow::Result<u64> {
    let mut generator = Generator::new(o.seed);
    let mut buf = Vec::with_capacity(BUFFER + 256);
    let mut bytes = 0u64;
    for _ in 0..o.events {
        generator.next_reading().write_json(&mut buf);
        buf.push(b'\n');
        if buf.len() >= BUFFER {
            sink.write_all(&buf)?;
            bytes += buf.len() as u64;
            buf.clear();
        }
    }
    sink.write_all(&buf)?;
    bytes += buf.len() as u64;
    sink.flush()?;
    Ok(bytes)
}

fn run(o: &Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let bytes = if o.out == "-" {
        write(o, &mut std::io::stdout().lock())?
    } else {
        let mut file = std::fs::File::create(&o.out)
            .with_context(|| format!("cannot create \"{}\"", o.out))?;
        write(o, &mut file).with_context(|| format!("writing \"{}\"", o.out))?
    };
    eprintln!(
        "wrote {} events ({:.1} MB) to {} in {:.2} s (seed {})",
        o.events,
        bytes as f64 / 1e6,
        o.out,
        started.elapsed().as_secs_f64(),
        o.seed
    );
    Ok(())
}

fn main() -> ExitCode {
    let result = parse_args(std::env::args().skip(1)).and_then(|o| run(&o));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quiver-gen: {e:#}");
            ExitCode::from(2)
        }
    }
}
