//! Rule option `enableSaveStateBeforeStop` (eKuiper's name): a rule stopped on purpose takes a
//! checkpoint first, so that its next start resumes where it stopped instead of at the last
//! periodic checkpoint, and repeats (qos 1) or holds back (qos 2) nothing it already did.

use std::sync::Arc;
use std::time::Duration;

use quiver_connectors::WakeFn;

use super::Engine;
use crate::checkpoint::Checkpointing;

/// The longest a stop waits for its checkpoint; past it the rule stops anyway and resumes
/// from the last checkpoint that did commit, and the log says so.
const SAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a run needs to checkpoint before it stops.
#[derive(Clone)]
pub(super) struct SaveBeforeStop {
    pub(super) checkpointing: Arc<Checkpointing>,
    /// Wakes a worker's source, so an idle one moves to the checkpoint.
    pub(super) wake: WakeFn,
    pub(super) workers: usize,
}

impl SaveBeforeStop {
    /// Takes a checkpoint (after the one pending, if any) and waits until it is durable.
    async fn save(&self, rule: &str) {
        let deadline = tokio::time::Instant::now() + SAVE_TIMEOUT;
        let c = &self.checkpointing;
        let epoch = loop {
            if let Some(epoch) = c.start() {
                break epoch;
            }
            if c.pending().is_none() {
                // Nothing moved since the last checkpoint (an idle event-time rule).
                tracing::info!(
                    rule,
                    "nothing changed since checkpoint {}; the rule resumes from it",
                    c.stats().epoch
                );
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    rule,
                    "no checkpoint could start before the stop; the rule resumes from checkpoint {}",
                    c.stats().epoch
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        (0..self.workers).for_each(|w| (self.wake)(w));
        let mut committed = c.committed();
        match tokio::time::timeout_at(deadline, committed.wait_for(|&e| e >= epoch)).await {
            Ok(Ok(_)) => tracing::info!(rule, "state saved at checkpoint {epoch} before the stop"),
            _ => tracing::warn!(
                rule,
                "checkpoint {epoch} was not durable within {SAVE_TIMEOUT:?} of the stop; the rule resumes from checkpoint {}",
                c.stats().epoch
            ),
        }
    }
}

/// Starts the input's last checkpoint (see [`Checkpointing::start_final`]) once no other is
/// pending: called when a checkpointed rule's source has handed over all of its input (a file
/// read to its end), before its queues close.
pub(super) async fn start_final(c: &Checkpointing, rule: &str) {
    let deadline = tokio::time::Instant::now() + SAVE_TIMEOUT;
    loop {
        if let Some(epoch) = c.start_final() {
            tracing::info!(rule, "the input ended: its last checkpoint is {epoch}");
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                rule,
                "the input ended while checkpoint {:?} was pending for {SAVE_TIMEOUT:?}; a restart replays what came after the last one",
                c.pending().map(|(e, _)| e)
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl Engine {
    /// Under `enableSaveStateBeforeStop`: checkpoints rule `id`'s run and waits (at most 5 s)
    /// until the checkpoint is durable; call it before stopping or restarting the rule. Does
    /// nothing for other rules.
    pub async fn save_before_stop(&self, id: &str) {
        let save = {
            let rules = self.inner.rules.lock().expect("rules lock");
            rules
                .get(id)
                .and_then(|e| e.run.as_ref())
                .and_then(|r| r.save_before_stop.clone())
        };
        if let Some(s) = save {
            s.save(id).await;
        }
    }

    /// [`Engine::save_before_stop`] for every running rule, side by side.
    pub async fn save_all_before_stop(&self) {
        let saves: Vec<(String, SaveBeforeStop)> = {
            let rules = self.inner.rules.lock().expect("rules lock");
            rules
                .iter()
                .filter_map(|(id, e)| {
                    let s = e.run.as_ref()?.save_before_stop.clone()?;
                    Some((id.clone(), s))
                })
                .collect()
        };
        let mut waits = tokio::task::JoinSet::new();
        for (id, s) in saves {
            waits.spawn(async move { s.save(&id).await });
        }
        while waits.join_next().await.is_some() {}
    }
}
