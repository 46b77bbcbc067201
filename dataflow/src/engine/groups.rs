//! The engine side of rule groups (`crate::group`): a rule run joins its shared stream's
//! group, which starts on the first member and stops when the last one leaves.

use std::sync::{Arc, Mutex};

use quiver_compiler::StreamDef;
use quiver_connectors::SourceOutput;
use tokio::sync::mpsc;

use super::Engine;
use super::shared::Subscriber;
use crate::error::EngineError;
use crate::runtime::Command;

impl Engine {
    /// Adds a rule run to the rule group of shared stream `stream`, starting the group (a
    /// dataflow on every worker, subscribed to the stream's shared source) for the first one.
    #[allow(clippy::type_complexity)]
    pub(super) fn join_group(
        &self,
        stream: &StreamDef,
        member: crate::render::group::Member,
        queue: usize,
    ) -> Result<
        (
            Arc<crate::render::group::RuleGroup>,
            Option<Arc<quiver_connectors::mqtt::ConnectionState>>,
        ),
        EngineError,
    > {
        let mut groups = self.inner.groups.lock().expect("groups lock");
        if let Some(g) = groups.get(&stream.name)
            && g.is_live()
        {
            let shared = self.inner.shared.lock().expect("shared lock");
            // A group whose shared source ended (a file read to its end and handed out) is done
            // too; while the fan-out still hands out the last events, the group is still live.
            // Checked under the lock the fan-out ends under.
            if let Some(s) = shared.get(&stream.name) {
                let subs = s.subscribers.lock().expect("subscribers lock");
                if !s.ended.load(std::sync::atomic::Ordering::Acquire)
                    && subs.iter().any(|x| x.key == g.key)
                {
                    g.add(member);
                    return Ok((g.clone(), s.connection.clone()));
                }
            }
        }
        // An ended group's dataflow finishes by itself once its input ended; its rules still
        // hold it and drop it when they leave (`leave_group`). Dropping it here would cut off
        // rules still draining their last rows.
        groups.remove(&stream.name);
        static GROUPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = self.inner.workers.count();
        let key = format!(
            "group:{}#{}",
            stream.name,
            GROUPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (ingest_tx, ingest_rx): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel(queue)).unzip();
        let activators: Arc<Mutex<Vec<Option<timely::scheduling::SyncActivator>>>> =
            Arc::new(Mutex::new(vec![None; n]));
        let group = Arc::new(crate::render::group::RuleGroup::new(
            key.clone(),
            ingest_rx,
            activators.clone(),
            self.stream_decoder(stream, true)?,
        ));
        group.add(member);
        self.inner
            .workers
            .broadcast(|| Command::BuildGroup(group.clone()));
        let wake: quiver_connectors::WakeFn = Arc::new(move |i| {
            if let Some(a) = activators.lock().expect("activator lock")[i].as_ref() {
                let _ = a.activate();
            }
        });
        let wake_all = wake.clone();
        let subscriber = Subscriber {
            key: key.clone(),
            out: SourceOutput::new(ingest_tx, wake),
            wake_all: Arc::new(move || (0..n).for_each(|i| wake_all(i))),
            // A group's stateless rules keep up together; should the group fall behind the
            // stream's other rules, the drop is logged by the fan-out.
            dropped: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        let spec = self.source_spec(stream);
        match self.join_shared(&stream.name, &spec, subscriber, queue) {
            Ok(connection) => {
                groups.insert(stream.name.clone(), group.clone());
                Ok((group, connection))
            }
            Err(e) => {
                self.inner.workers.broadcast(|| Command::Drop(key.clone()));
                Err(e)
            }
        }
    }

    /// Removes a rule run from its group; the last one out stops the group and leaves the
    /// shared source.
    pub(super) fn leave_group(
        &self,
        stream: &str,
        group: &Arc<crate::render::group::RuleGroup>,
        key: &str,
    ) {
        if group.remove(key) > 0 {
            return;
        }
        let mut groups = self.inner.groups.lock().expect("groups lock");
        if groups.get(stream).is_some_and(|g| Arc::ptr_eq(g, group)) {
            groups.remove(stream);
            self.leave_shared(stream, &group.key);
        }
        self.inner
            .workers
            .broadcast(|| Command::Drop(group.key.clone()));
    }
}
