//! The operator node types a graph rule may use, with their props: the names
//! `nodes::operator` accepts and what `GET /metadata/operators` lists for graph editors, from
//! this one table (a unit test runs every type's example props through the parser).

/// One prop of an operator node.
#[derive(Debug, Clone, Copy)]
pub struct OperatorProp {
    /// Its name in `props`.
    pub name: &'static str,
    /// eKuiper's metadata type: `string`, `list_string`, `list_object`, `int`.
    pub kind: &'static str,
    /// Whether a node may leave it out.
    pub optional: bool,
    /// What it holds.
    pub hint: &'static str,
    /// A value the parser accepts (JSON text), for editors and the table's own test.
    pub example: &'static str,
}

/// One operator node type.
#[derive(Debug, Clone, Copy)]
pub struct OperatorSpec {
    /// Its `nodeType`.
    pub name: &'static str,
    /// What it does, and the SQL it stands for.
    pub description: &'static str,
    /// Its props.
    pub props: &'static [OperatorProp],
}

const fn prop(
    name: &'static str,
    kind: &'static str,
    optional: bool,
    hint: &'static str,
    example: &'static str,
) -> OperatorProp {
    OperatorProp {
        name,
        kind,
        optional,
        hint,
        example,
    }
}

const EXPR_CALL: &[OperatorProp] = &[prop(
    "expr",
    "string",
    false,
    "one function call, optionally named: f(x) [AS name]",
    r#""abs(temperature) AS t""#,
)];

/// Every operator node type Quiver runs.
pub const OPERATORS: &[OperatorSpec] = &[
    OperatorSpec {
        name: "function",
        description: "adds a field computed by a function (a SELECT field)",
        props: EXPR_CALL,
    },
    OperatorSpec {
        name: "aggfunc",
        description: "adds a field computed by an aggregate function over the group or window",
        props: &[prop(
            "expr",
            "string",
            false,
            "one aggregate call, optionally named: count(*) [AS name]",
            r#""count(*) AS n""#,
        )],
    },
    OperatorSpec {
        name: "filter",
        description: "keeps the rows for which the condition holds (WHERE, or HAVING after \
                      grouping)",
        props: &[prop(
            "expr",
            "string",
            false,
            "the condition",
            r#""temperature > 20""#,
        )],
    },
    OperatorSpec {
        name: "pick",
        description: "chooses the output fields (the SELECT list)",
        props: &[prop(
            "fields",
            "list_string",
            false,
            "SELECT fields: a, a * 2 AS b, *, window_end()",
            r#"["device", "temperature * 2 AS t2"]"#,
        )],
    },
    OperatorSpec {
        name: "window",
        description: "groups rows into windows (GROUP BY a window function)",
        props: &[
            prop(
                "type",
                "string",
                false,
                "tumblingwindow, hoppingwindow, slidingwindow, sessionwindow or countwindow",
                r#""sessionwindow""#,
            ),
            prop(
                "unit",
                "string",
                false,
                "dd, hh, mi, ss or ms (required by every window but countwindow, which refuses it)",
                r#""ss""#,
            ),
            prop("size", "int", false, "the window's length", "10"),
            prop(
                "interval",
                "int",
                true,
                "the hop or session timeout (required by hopping and session windows)",
                "5",
            ),
        ],
    },
    OperatorSpec {
        name: "join",
        description: "joins the stream with other streams or tables (FROM ... JOIN)",
        props: &[
            prop(
                "from",
                "string",
                false,
                "the stream joined from",
                r#""demo""#,
            ),
            prop(
                "joins",
                "list_object",
                false,
                "[{\"name\", \"type\": inner/left/right/full/cross, \"on\": condition}]",
                r#"[{"name": "other", "type": "inner", "on": "demo.device = other.device"}]"#,
            ),
        ],
    },
    OperatorSpec {
        name: "groupby",
        description: "groups rows by keys (GROUP BY)",
        props: &[prop(
            "dimensions",
            "list_string",
            false,
            "the grouping expressions",
            r#"["device"]"#,
        )],
    },
    OperatorSpec {
        name: "orderby",
        description: "sorts each emission (ORDER BY)",
        props: &[prop(
            "sorts",
            "list_object",
            false,
            "[{\"field\": expression, \"desc\": true}] (or \"order\": \"asc\"/\"desc\")",
            r#"[{"field": "temperature", "desc": true}]"#,
        )],
    },
];

/// The operator type names, for messages: `function, aggfunc, ...`.
pub(super) fn names() -> String {
    OPERATORS
        .iter()
        .map(|o| o.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value};

    use super::OPERATORS;
    use crate::graph::nodes::operator;

    fn props(
        spec: &super::OperatorSpec,
        keep: impl Fn(&super::OperatorProp) -> bool,
    ) -> Map<String, Value> {
        spec.props
            .iter()
            .filter(|p| keep(p))
            .map(|p| (p.name.to_string(), serde_json::from_str(p.example).unwrap()))
            .collect()
    }

    /// Every listed prop is one the parser takes, the required ones are required, and a prop
    /// outside the table is refused: the table and the parser cannot drift apart. (Optional
    /// props may be required by some values of others, e.g. a session window's `interval`.)
    #[test]
    fn the_table_is_what_the_parser_accepts() {
        for spec in OPERATORS {
            operator("n", spec.name, &props(spec, |_| true))
                .unwrap_or_else(|e| panic!("{}: {e:?}", spec.name));
            for required in spec.props.iter().filter(|p| !p.optional) {
                let without = props(spec, |p| p.name != required.name);
                assert!(
                    operator("n", spec.name, &without).is_err(),
                    "{} without {}",
                    spec.name,
                    required.name
                );
            }
            let mut extra = props(spec, |_| true);
            extra.insert("unlisted".into(), Value::Bool(true));
            assert!(operator("n", spec.name, &extra).is_err(), "{}", spec.name);
        }
        let unknown = format!("{:?}", operator("n", "teleport", &Map::new()).unwrap_err());
        assert!(unknown.contains(&super::names()), "{unknown}");
    }
}
