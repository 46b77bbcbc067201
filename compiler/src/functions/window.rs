//! Documentation of the window functions of GROUP BY and the functions that read a window's
//! results (`window_start`, `window_end`, `window_trigger`, `row_number`); [`crate::window`]
//! describes windows in the plan.

use super::FunctionDoc;

/// (name, documentation) of every window function: the binder answers these calls itself, outside the
/// registry, and they appear in the same catalogue.
pub(super) const BINDER_DOCS: &[(&str, FunctionDoc)] = &[
    (
        "tumblingwindow",
        FunctionDoc::new(
            "window",
            "TUMBLINGWINDOW(unit, size)",
            "GROUP BY window: back-to-back windows aligned to natural time (unit DD, HH, MI, SS, MS).",
            "GROUP BY TUMBLINGWINDOW(ss, 10)",
        ),
    ),
    (
        "hoppingwindow",
        FunctionDoc::new(
            "window",
            "HOPPINGWINDOW(unit, size, hop)",
            "GROUP BY window: windows of size starting every hop.",
            "GROUP BY HOPPINGWINDOW(ss, 10, 5)",
        ),
    ),
    (
        "slidingwindow",
        FunctionDoc::new(
            "window",
            "SLIDINGWINDOW(unit, size[, delay]) [OVER (WHEN c)]",
            "GROUP BY window: one window per (triggering) row over the size before it (plus delay after).",
            "GROUP BY SLIDINGWINDOW(ss, 10) OVER (WHEN t > 30)",
        ),
    ),
    (
        "sessionwindow",
        FunctionDoc::new(
            "window",
            "SESSIONWINDOW(unit, maxDuration, timeout)",
            "GROUP BY window: rows until a gap longer than timeout, cut at maxDuration ticks.",
            "GROUP BY SESSIONWINDOW(mi, 60, 5)",
        ),
    ),
    (
        "countwindow",
        FunctionDoc::new(
            "window",
            "COUNTWINDOW(n[, step])",
            "GROUP BY window: the last n rows, every step rows.",
            "GROUP BY COUNTWINDOW(5)",
        ),
    ),
    (
        "statewindow",
        FunctionDoc::new(
            "window",
            "STATEWINDOW(begin, emit) / STATEWINDOW(c) [OVER (PARTITION BY k)]",
            "GROUP BY window: from a row meeting begin to one meeting emit.",
            "GROUP BY STATEWINDOW(s = 1, s = 0)",
        ),
    ),
    (
        "window_start",
        FunctionDoc::new(
            "window",
            "window_start()",
            "Start of the window, epoch milliseconds.",
            "window_start() → 1700000000000",
        ),
    ),
    (
        "window_end",
        FunctionDoc::new(
            "window",
            "window_end()",
            "End of the window, epoch milliseconds.",
            "window_end() → 1700000010000",
        ),
    ),
    (
        "window_trigger",
        FunctionDoc::new(
            "window",
            "window_trigger()",
            "The time the window was emitted at (its end).",
            "window_trigger() → 1700000010000",
        ),
    ),
    (
        "row_number",
        FunctionDoc::new(
            "window",
            "row_number() [OVER ([PARTITION BY k, ...] [ORDER BY e [ASC|DESC], ...])]",
            "Position of the row within its emission (or its partition of it, in ORDER BY order), from 1; 1 without a window.",
            "row_number() OVER (PARTITION BY device ORDER BY t DESC) → 1",
        ),
    ),
];
