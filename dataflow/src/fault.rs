//! Fault containment: a panic in one of a rule's operators fails that rule, never the worker
//! thread (and every other rule on it). The first panic's message becomes the rule's status
//! message; from then on the rule's operators drop their input and state, and the rule's own
//! source is stopped, so the run ends as "stopped by error".

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One rule run's fault slot, shared by its operators on every worker.
#[derive(Debug, Default)]
pub struct Fault {
    /// The run's error slot (its status message).
    slot: Arc<Mutex<Option<String>>>,
    failed: AtomicBool,
    /// Wakes whoever stops the rule's source once it failed.
    notify: tokio::sync::Notify,
}

impl Fault {
    /// A fault reporting into the run's error slot.
    pub fn new(slot: Arc<Mutex<Option<String>>>) -> Self {
        Fault {
            slot,
            failed: AtomicBool::new(false),
            notify: tokio::sync::Notify::new(),
        }
    }

    /// True once an operator of the rule panicked: its operators then drop their input.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Runs `f` (operator `what`'s work); a panic fails the rule with its message and gives
    /// `None`.
    pub fn contain<T>(&self, what: &str, f: impl FnOnce() -> T) -> Option<T> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(v) => Some(v),
            Err(panic) => {
                self.fail(&format!("{what} panicked: {}", panic_message(&panic)));
                None
            }
        }
    }

    /// Fails the rule with `reason` (the first reason wins).
    pub fn fail(&self, reason: &str) {
        tracing::error!("rule failed: {reason}");
        {
            let mut slot = self.slot.lock().expect("error lock");
            if slot.is_none() {
                *slot = Some(reason.to_string());
            }
        }
        self.failed.store(true, Ordering::Release);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Resolves once the rule failed.
    pub async fn failed_wait(&self) {
        while !self.failed() {
            self.notify.notified().await;
        }
    }
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_fails_the_rule_with_its_message_and_the_first_reason_wins() {
        let slot = Arc::new(Mutex::new(None));
        let fault = Fault::new(slot.clone());
        assert_eq!(fault.contain("window", || 7), Some(7));
        assert!(!fault.failed());
        let out: Option<()> = fault.contain("window", || panic!("index out of bounds"));
        assert!(out.is_none());
        assert!(fault.failed());
        let _ = fault.contain("project", || -> () { panic!("second") });
        assert_eq!(
            slot.lock().unwrap().as_deref(),
            Some("window panicked: index out of bounds")
        );
    }
}
