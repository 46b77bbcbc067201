//! The subcommands, one file each. Adding one is a line in [`commands!`] below (its variant)
//! and its file: a clap `Args` type implementing [`Run`].

mod completions;
mod create;
mod describe;
mod drop;
mod explain;
mod export;
mod getstatus;
mod gettopo;
mod import;
mod lifecycle;
mod query;
mod show;
mod test;

use crate::args::Global;
use crate::client::{Client, Reply, segment};
use crate::error::CliError;
use crate::output::Output;

/// What a subcommand runs with.
pub struct Ctx<'a> {
    /// The global options.
    pub global: &'a Global,
    /// Where it prints.
    pub out: &'a Output,
}

impl Ctx<'_> {
    /// A client of `--host` (made on demand: `completions` needs none).
    pub fn client(&self) -> Result<Client, CliError> {
        Client::new(self.global)
    }

    /// `GET path`; under `--json` the answer is printed unchanged and `None` returned, else
    /// the answer is returned for the command to lay out.
    pub async fn fetch(&self, path: &str) -> Result<Option<Reply>, CliError> {
        let reply = self.client()?.get(path).await?;
        if self.out.json {
            self.out.raw_json(&reply.body);
            return Ok(None);
        }
        Ok(Some(reply))
    }
}

/// A subcommand.
pub(crate) trait Run {
    /// Runs it; a failure becomes the message on stderr and the exit code.
    async fn run(self, ctx: &Ctx<'_>) -> Result<(), CliError>;
}

/// Declares [`Command`] (clap names each subcommand after its variant, in lower case) and its
/// dispatch to [`Run::run`].
macro_rules! commands {
    ($( $(#[$doc:meta])* $variant:ident($ty:ty), )*) => {
        /// The subcommands.
        #[derive(Debug, clap::Subcommand)]
        #[command(rename_all = "lower")]
        pub enum Command {
            $( $(#[$doc])* $variant($ty), )*
        }

        impl Command {
            /// Runs the subcommand.
            pub async fn run(self, global: &Global, out: &Output) -> Result<(), CliError> {
                let ctx = Ctx { global, out };
                match self {
                    $( Command::$variant(c) => c.run(&ctx).await, )*
                }
            }
        }
    };
}

commands! {
    /// Create a stream, table, rule or plugin
    Create(create::Create),
    /// Show the definition of a stream, table, rule or plugin
    Describe(describe::Describe),
    /// List streams, tables, rules or plugins
    Show(show::Show),
    /// Delete a stream, table, rule or plugin
    Drop(drop::Drop),
    /// Start a rule
    Start(lifecycle::Start),
    /// Stop a rule
    Stop(lifecycle::Stop),
    /// Restart a rule
    Restart(lifecycle::Restart),
    /// Show a rule's status and metrics
    Getstatus(getstatus::GetStatus),
    /// Show a rule's topology: its sources and edges
    Gettopo(gettopo::GetTopo),
    /// Show a rule's compiled plan
    Explain(explain::Explain),
    /// Import a ruleset or data from a file
    Import(import::Import),
    /// Export the ruleset or data to a file
    Export(export::Export),
    /// Run a rule test on mock rows and print its results as they arrive
    Test(test::Test),
    /// An interactive SQL prompt: each SELECT runs on the live streams until Enter
    Query(query::Query),
    /// Print a shell completion script
    Completions(completions::Completions),
}

/// A plugin's type, as eKuiper's CLI names it (`source`, `sink`, `function`; the REST path's
/// plural is accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PluginKind {
    /// A source plugin.
    #[value(alias = "sources")]
    Source,
    /// A sink plugin.
    #[value(alias = "sinks")]
    Sink,
    /// A function plugin.
    #[value(alias = "functions")]
    Function,
}

impl PluginKind {
    /// Every type, in the order lists show them.
    pub const ALL: [PluginKind; 3] = [PluginKind::Source, PluginKind::Sink, PluginKind::Function];

    /// The REST path segment: `sources`, `sinks`, `functions`.
    pub fn segment(self) -> &'static str {
        match self {
            PluginKind::Source => "sources",
            PluginKind::Sink => "sinks",
            PluginKind::Function => "functions",
        }
    }

    /// The singular name.
    pub fn name(self) -> &'static str {
        match self {
            PluginKind::Source => "source",
            PluginKind::Sink => "sink",
            PluginKind::Function => "function",
        }
    }
}

/// One named object: what `describe` and `drop` act on.
#[derive(Debug, clap::Subcommand)]
pub enum Target {
    /// A stream
    Stream {
        /// The stream's name
        name: String,
    },
    /// A table
    Table {
        /// The table's name
        name: String,
    },
    /// A rule
    Rule {
        /// The rule's id
        id: String,
    },
    /// A plugin
    Plugin {
        /// source, sink or function
        #[arg(value_enum)]
        kind: PluginKind,
        /// The plugin's name
        name: String,
    },
}

impl Target {
    /// Its REST path.
    pub fn path(&self) -> String {
        match self {
            Target::Stream { name } => format!("/streams/{}", segment(name)),
            Target::Table { name } => format!("/tables/{}", segment(name)),
            Target::Rule { id } => format!("/rules/{}", segment(id)),
            Target::Plugin { kind, name } => {
                format!("/plugins/{}/{}", kind.segment(), segment(name))
            }
        }
    }
}

/// `rule ID`: what the rule verbs (start, stop, getstatus, ...) act on, in eKuiper's form.
#[derive(Debug, clap::Subcommand)]
pub enum RuleTarget {
    /// A rule
    Rule {
        /// The rule's id
        id: String,
    },
}

impl RuleTarget {
    /// `/rules/{id}` followed by `suffix` (e.g. `/start`).
    pub fn path(&self, suffix: &str) -> String {
        let RuleTarget::Rule { id } = self;
        format!("/rules/{}{suffix}", segment(id))
    }
}
