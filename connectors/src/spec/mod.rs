//! Every built-in connector's properties as data: name, type, default, whether required, a
//! line of help, and how the connector treats it. The connectors validate against these
//! tables (their lists of known keys come from here, so a property missing from a table is
//! refused or warned about like any unknown one) and the REST metadata routes render them,
//! so what the dashboard shows and what a connector accepts cannot drift apart.
//!
//! Tables are grouped: properties shared by several connectors (TLS, payload formats, the HTTP
//! request) are one group each, listed by every connector that reads them; a property's role
//! (source, sink or both) is the set of connectors whose spec lists its group.
//!
//! Entry points: [`sources`], [`sinks`], [`lookups`], [`source`], [`sink`], [`lookup`].

mod lookups;
pub(crate) mod shared;
mod sinks;
pub(crate) mod sources;

/// A property's value type, as the dashboard's form shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text.
    String,
    /// A whole number (a JSON number or its text).
    Int,
    /// `true` or `false`.
    Bool,
    /// Milliseconds or a duration text such as `"10s"`.
    Duration,
    /// A list of texts.
    ListString,
    /// A JSON object (headers, nested settings).
    Object,
    /// A list of JSON objects or values.
    List,
    /// Text that is a secret: masked when shown back.
    Password,
}

impl Kind {
    /// eKuiper's metadata `type` name.
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::String | Kind::Password | Kind::Duration => "string",
            Kind::Int => "int",
            Kind::Bool => "bool",
            Kind::ListString => "list_string",
            Kind::Object => "object",
            Kind::List => "list_object",
        }
    }

    /// eKuiper's metadata `control`: the form widget.
    pub fn control(self) -> &'static str {
        match self {
            Kind::Bool => "radio",
            Kind::ListString => "list",
            Kind::Object | Kind::List => "textarea",
            Kind::Password => "password",
            Kind::String | Kind::Int | Kind::Duration => "text",
        }
    }
}

/// Who deals with a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// The connector reads it.
    Read,
    /// The rule runtime reads it (decoding, batching); the connector passes it by.
    Runtime,
    /// eKuiper knows it but this build does not: accepted with a warning.
    Ignored,
}

/// One property of a connector.
#[derive(Debug, Clone, Copy)]
pub struct PropertySpec {
    /// The name as eKuiper writes it (matched case-insensitively).
    pub name: &'static str,
    /// The value's type.
    pub kind: Kind,
    /// The default as JSON text (`"1000000"`, `"\"latest\""`); None: no default.
    pub default: Option<&'static str>,
    /// True when the connector refuses a configuration without it.
    pub required: bool,
    /// One line of help.
    pub help: &'static str,
    /// Who reads it.
    pub support: Support,
}

impl PropertySpec {
    /// An optional property the connector reads.
    pub const fn new(
        name: &'static str,
        kind: Kind,
        default: Option<&'static str>,
        help: &'static str,
    ) -> Self {
        PropertySpec {
            name,
            kind,
            default,
            required: false,
            help,
            support: Support::Read,
        }
    }

    /// The same property, required.
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// The same property, read by the rule runtime rather than the connector.
    pub const fn runtime(mut self) -> Self {
        self.support = Support::Runtime;
        self
    }

    /// The same property, known to eKuiper but ignored (with a warning) by this build.
    pub const fn ignored(mut self) -> Self {
        self.support = Support::Ignored;
        self
    }

    /// The default as a JSON value (the tables' texts are checked by a unit test).
    pub fn default_value(&self) -> Option<serde_json::Value> {
        self.default
            .map(|d| serde_json::from_str(d).expect("a table default is JSON"))
    }
}

/// Whether a connector reads streams or writes rule results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A stream's `TYPE`.
    Source,
    /// A rule action.
    Sink,
}

/// One connector type in one role, with its properties.
#[derive(Debug)]
pub struct ConnectorSpec {
    /// The type name as streams and actions write it (`mqtt`, `redisSub`, `redisPub`).
    pub name: &'static str,
    /// Source or sink.
    pub role: Role,
    /// One line saying what it does.
    pub about: &'static str,
    /// Groups of properties; a name appears in at most one of them.
    pub groups: &'static [&'static [PropertySpec]],
}

impl ConnectorSpec {
    /// Every property, in table order.
    pub fn properties(&self) -> impl Iterator<Item = &'static PropertySpec> + '_ {
        self.groups.iter().flat_map(|g| g.iter())
    }

    /// The names of the properties with `support`.
    pub fn keys(&self, support: Support) -> Vec<&'static str> {
        self.properties()
            .filter(|p| p.support == support)
            .map(|p| p.name)
            .collect()
    }

    /// The names a configuration may hold without a warning or refusal: what the connector
    /// reads and what the rule runtime reads.
    pub fn accepted(&self) -> Vec<&'static str> {
        self.properties()
            .filter(|p| p.support != Support::Ignored)
            .map(|p| p.name)
            .collect()
    }

    /// The property named `name` (case-insensitively).
    pub fn property(&self, name: &str) -> Option<&'static PropertySpec> {
        self.properties()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

/// Every built-in source type.
pub fn sources() -> &'static [ConnectorSpec] {
    sources::ALL
}

/// Every built-in sink type.
pub fn sinks() -> &'static [ConnectorSpec] {
    sinks::ALL
}

/// Every lookup table type with an external store (`KIND="lookup"`); `httppull` and `sql`
/// share their profiles with the sources of that type.
pub fn lookups() -> &'static [ConnectorSpec] {
    lookups::ALL
}

/// The lookup table type `name` (case-insensitively).
pub fn lookup(name: &str) -> Option<&'static ConnectorSpec> {
    lookups().iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// The table of lookup type `name`, which exists: a unit test checks every name used.
pub(crate) fn lookup_spec(name: &str) -> &'static ConnectorSpec {
    lookup(name).unwrap_or_else(|| panic!("no property table for lookup {name}"))
}

/// The built-in source type `name` (case-insensitively: the parser folds `TYPE`).
pub fn source(name: &str) -> Option<&'static ConnectorSpec> {
    sources().iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// The built-in sink type `name` (exactly: actions are matched as written).
pub fn sink(name: &str) -> Option<&'static ConnectorSpec> {
    sinks().iter().find(|s| s.name == name)
}

/// The table of built-in source `name`, which exists: a unit test checks every name used.
pub(crate) fn source_spec(name: &str) -> &'static ConnectorSpec {
    source(name).unwrap_or_else(|| panic!("no property table for source {name}"))
}

/// The table of built-in sink `name`, which exists: a unit test checks every name used.
pub(crate) fn sink_spec(name: &str) -> &'static ConnectorSpec {
    sink(name).unwrap_or_else(|| panic!("no property table for sink {name}"))
}

#[cfg(test)]
mod tests;
