//! The one operator trait, the fused chain of operators, and the panic guard around it.
//!
//! Contract (eKuiper's): a row that fails (a bad cast, a division by zero) is dropped and
//! counted in its node's `exceptions_total` with the reason in `last_exception`; the rule keeps
//! running. Only setup and I/O failures change a rule's status.

use arrow::record_batch::RecordBatch;

use crate::metrics::NodeMetrics;
use crate::state::OpState;

/// A step of a rule's pipeline over batches.
pub trait BatchOperator {
    /// Processes one batch; `None` when no row remains.
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch>;

    /// The state kept from one batch to the next (what a checkpoint writes); `None` for a
    /// stateless operator.
    fn save(&self) -> Result<Option<OpState>, String> {
        Ok(None)
    }

    /// Replaces the state with one [`BatchOperator::save`] wrote for the same operator.
    fn load(&mut self, _state: &OpState) -> Result<(), String> {
        Err("this operator keeps no state to load".into())
    }

    /// Applies rows of the rule's table source `source` to the operator's own copy of that
    /// table (`tables::own`); false when it keeps none.
    fn update_table(&mut self, _source: u32, _rows: &RecordBatch) -> bool {
        false
    }
}

/// Runs several operators in sequence (a fused stateless chain: one timely operator).
#[derive(Default)]
pub struct Chain {
    ops: Vec<Box<dyn BatchOperator>>,
}

impl Chain {
    /// Appends an operator.
    pub fn push(&mut self, op: Box<dyn BatchOperator>) {
        self.ops.push(op);
    }

    /// True when the chain does nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl BatchOperator for Chain {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let mut cur = batch;
        for op in &mut self.ops {
            cur = op.process_batch(cur)?;
        }
        Some(cur)
    }

    /// Every operator keeping a copy of that table takes the rows (a table joined twice).
    fn update_table(&mut self, source: u32, rows: &RecordBatch) -> bool {
        let mut taken = false;
        for op in &mut self.ops {
            taken |= op.update_table(source, rows);
        }
        taken
    }

    /// Each stateful operator's state under its index; `None` when no operator has state.
    fn save(&self) -> Result<Option<OpState>, String> {
        let mut state = OpState::default();
        for (i, op) in self.ops.iter().enumerate() {
            if let Some(s) = op.save()? {
                state.push_number(format!("saved.{i}"), 1);
                state.nest(&i.to_string(), s);
            }
        }
        if state.numbers.is_empty() {
            return Ok(None);
        }
        state.push_number("ops", self.ops.len() as i64);
        Ok(Some(state))
    }

    fn load(&mut self, state: &OpState) -> Result<(), String> {
        let ops = state.need_number("ops")?;
        if ops != self.ops.len() as i64 {
            return Err(format!(
                "chain state: saved for {ops} operators, the chain has {}",
                self.ops.len()
            ));
        }
        for (i, op) in self.ops.iter_mut().enumerate() {
            if state.number(&format!("saved.{i}")).is_some() {
                op.load(&state.inner(&i.to_string()))?;
            }
        }
        Ok(())
    }
}

/// Runs the fused operators on a batch. A bug in an operator must fail its rule, not the
/// worker (and every rule on it): a panic fails the rule through `fault` (its rows are counted
/// as exceptions), and a failed rule's batches are dropped.
pub(crate) fn run_chain(
    chain: &mut Chain,
    batch: RecordBatch,
    metrics: &NodeMetrics,
    fault: &crate::fault::Fault,
) -> Option<RecordBatch> {
    if fault.failed() {
        return None;
    }
    let rows = batch.num_rows();
    match fault.contain("an operator", || chain.process_batch(batch)) {
        Some(out) => out,
        None => {
            metrics.exceptions(rows, "internal error: an operator panicked");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::testing::{metrics, rows};

    /// An operator with a bug: it panics on every batch.
    struct Buggy;

    impl BatchOperator for Buggy {
        fn process_batch(&mut self, _batch: RecordBatch) -> Option<RecordBatch> {
            panic!("index out of bounds: the len is 0 but the index is 3")
        }
    }

    #[test]
    fn a_panicking_operator_fails_its_rule_and_later_batches_are_dropped() {
        let slot = Arc::new(Mutex::new(None));
        let fault = crate::fault::Fault::new(slot.clone());
        let m = metrics();
        let mut chain = Chain::default();
        chain.push(Box::new(Buggy));
        assert!(run_chain(&mut chain, rows(&[("a", 1, 10)]), &m, &fault).is_none());
        assert!(fault.failed());
        assert_eq!(
            slot.lock().unwrap().as_deref(),
            Some("an operator panicked: index out of bounds: the len is 0 but the index is 3")
        );
        assert_eq!(m.exceptions_total(), 1);
        // The rule is failed: nothing runs any more, nothing more is counted.
        assert!(run_chain(&mut chain, rows(&[("b", 2, 20)]), &m, &fault).is_none());
        assert_eq!(m.exceptions_total(), 1);
    }

    fn counting_chain() -> Chain {
        let mut chain = Chain::default();
        chain.push(Box::new(crate::operators::limit::LimitOp::new(10)));
        chain.push(Box::new(crate::operators::analytic::AnalyticOp::new(
            crate::testing::analytic_calls("SELECT acc_count(v) OVER (PARTITION BY k) AS n FROM s"),
            metrics(),
        )));
        chain
    }

    #[test]
    fn a_chain_saves_its_stateful_operators_under_their_index() {
        let mut a = counting_chain();
        a.process_batch(rows(&[("a", 1, 1), ("b", 2, 2), ("a", 3, 3)]));
        let state = a.save().unwrap().expect("the analytic operator has state");
        assert_eq!(state.number("saved.1"), Some(1));
        assert_eq!(state.number("saved.0"), None, "a limit has no state");
        let state = OpState::decode(&state.encode().unwrap()).unwrap();
        let mut c = counting_chain();
        c.load(&state).unwrap();
        let next = rows(&[("a", 4, 4), ("b", 5, 5)]);
        assert_eq!(c.process_batch(next.clone()), a.process_batch(next));

        let mut stateless = Chain::default();
        stateless.push(Box::new(crate::operators::limit::LimitOp::new(1)));
        assert!(stateless.save().unwrap().is_none());
        assert!(stateless.load(&state).is_err(), "saved for another chain");
    }
}
