//! eKuiper's sink cache: results a sink failed to write wait in a bounded queue, in memory and
//! then on disk, and are sent again once the sink's far end is back (`enableCache`).
//!
//! The queue is one FIFO in three parts, oldest first: `head` (the emissions being resent,
//! read back from a disk page or taken from memory), the pages on disk, and `tail` (the newest
//! emissions, in memory). Memory holds at most `memoryCacheThreshold` emissions in `tail` and
//! one page in `head`; when `tail` grows past its threshold its oldest `bufferPageSize`
//! emissions go to disk as one page. Disk holds at most `maxDiskCache` emissions; beyond, the
//! oldest page is dropped and counted. A page leaves the disk only once every emission in it
//! was written, so a crash sends some again rather than losing them (at least once). At a
//! clean stop the memory part is written to disk too (unless `cleanCacheAtStop`), and the
//! next run of the rule sends it first.

mod settings;
mod store;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;

pub use settings::{CACHE_KEYS, CacheSettings, ResendPriority};
use store::DiskStore;
pub use store::retain;

/// Where one sink's cache lives and how it behaves.
#[derive(Debug, Clone)]
pub struct CacheSpec {
    /// The data directory holding `cache.db`.
    pub dir: PathBuf,
    /// The rule's id.
    pub rule: String,
    /// The sink's node name (`sink_rest_0`).
    pub sink: String,
    /// The cache properties.
    pub settings: CacheSettings,
    /// Set when the rule is deleted: the cache is dropped at the end of the run, not kept.
    pub discard: Arc<AtomicBool>,
    /// Held by the run that uses this cache: the next run of the rule (a restart, an update)
    /// opens it only once the last one has written what it kept.
    pub owner: Arc<tokio::sync::Mutex<()>>,
}

/// Emissions the cache could not keep, and why; the sink counts and logs them.
#[derive(Debug)]
pub struct Loss {
    /// Emissions dropped.
    pub emissions: usize,
    /// Why.
    pub reason: String,
}

/// One sink's cache.
pub struct SinkCache {
    settings: CacheSettings,
    discard: Arc<AtomicBool>,
    /// Released when this run is done with the cache (see [`CacheSpec::owner`]).
    _owner: tokio::sync::OwnedMutexGuard<()>,
    store: Arc<Mutex<DiskStore>>,
    head: VecDeque<RecordBatch>,
    /// The disk page `head` was read from; it stays on disk until `head` is empty.
    head_page: Option<i64>,
    /// Pages on disk not yet read back, oldest first: `(page, emissions)`.
    disk: VecDeque<(i64, usize)>,
    disk_items: usize,
    tail: VecDeque<RecordBatch>,
    next_page: i64,
}

/// Runs a store call on a blocking thread.
async fn blocking<T: Send + 'static>(
    store: &Arc<Mutex<DiskStore>>,
    f: impl FnOnce(&DiskStore) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store.lock().expect("sink cache store lock")))
        .await
        .map_err(|e| format!("sink cache: {e}"))?
}

impl SinkCache {
    /// Opens the cache of one sink, with the pages an earlier run of the rule left on disk.
    pub async fn open(spec: CacheSpec) -> Result<SinkCache, String> {
        let CacheSpec {
            dir,
            rule,
            sink,
            settings,
            discard,
            owner,
        } = spec;
        let owner = owner.lock_owned().await;
        let (store, pages) = tokio::task::spawn_blocking(move || {
            let store = DiskStore::open(&dir, &rule, &sink)?;
            let pages = store.pages()?;
            Ok::<_, String>((store, pages))
        })
        .await
        .map_err(|e| format!("sink cache: {e}"))??;
        let next_page = pages.last().map_or(0, |p| p.0 + 1);
        Ok(SinkCache {
            disk_items: pages.iter().map(|p| p.1).sum(),
            disk: pages.into(),
            settings,
            discard,
            _owner: owner,
            store: Arc::new(Mutex::new(store)),
            head: VecDeque::new(),
            head_page: None,
            tail: VecDeque::new(),
            next_page,
        })
    }

    /// The settings it was opened with.
    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// Emissions waiting, in memory and on disk.
    pub fn len(&self) -> usize {
        self.head.len() + self.disk_items + self.tail.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the newest emission; spills a page to disk when memory is full. The error is what
    /// had to be dropped to stay within `maxDiskCache` (or a page the disk refused).
    pub async fn push(&mut self, batch: RecordBatch) -> Result<(), Loss> {
        self.tail.push_back(batch);
        if self.tail.len() <= self.settings.memory_threshold {
            return Ok(());
        }
        let n = self.settings.page_size.min(self.tail.len());
        let page: Vec<RecordBatch> = self.tail.drain(..n).collect();
        let id = self.next_page;
        self.next_page += 1;
        let written = blocking(&self.store, move |s| s.put(id, &page)).await;
        if let Err(reason) = written {
            return Err(Loss {
                emissions: n,
                reason: format!("{reason}; dropped {n} cached emissions"),
            });
        }
        self.disk.push_back((id, n));
        self.disk_items += n;
        let mut dropped = 0;
        while self.disk_items > self.settings.max_disk {
            let Some((old, items)) = self.disk.pop_front() else {
                break;
            };
            self.disk_items -= items;
            dropped += items;
            let _ = blocking(&self.store, move |s| s.remove(old)).await;
        }
        if dropped > 0 {
            return Err(Loss {
                emissions: dropped,
                reason: format!(
                    "sink cache full (maxDiskCache {}): dropped the oldest {dropped} emissions",
                    self.settings.max_disk
                ),
            });
        }
        Ok(())
    }

    /// The oldest emission, reading the next disk page when memory holds none of the oldest.
    /// A page that cannot be read is dropped: the error counts it, and the next call moves on.
    pub async fn front(&mut self) -> Result<Option<RecordBatch>, Loss> {
        if self.head.is_empty()
            && let Some((id, items)) = self.disk.pop_front()
        {
            self.disk_items -= items;
            match blocking(&self.store, move |s| s.get(id)).await {
                Ok(batches) => {
                    self.head = batches.into();
                    self.head_page = Some(id);
                }
                Err(reason) => {
                    tracing::error!("{reason}; its {items} emissions are dropped");
                    let _ = blocking(&self.store, move |s| s.remove(id)).await;
                    return Err(Loss {
                        emissions: items,
                        reason,
                    });
                }
            }
        }
        Ok(self.head.front().or_else(|| self.tail.front()).cloned())
    }

    /// Removes the oldest emission once it was written (or given up on).
    pub async fn pop(&mut self) {
        if self.head.pop_front().is_none() {
            self.tail.pop_front();
            return;
        }
        if self.head.is_empty()
            && let Some(id) = self.head_page.take()
            && let Err(reason) = blocking(&self.store, move |s| s.remove(id)).await
        {
            // The page stays and is sent again by the next run: at least once.
            tracing::warn!("{reason}");
        }
    }

    /// At the end of a run: writes what waits in memory to disk for the next run, or drops
    /// everything when `cleanCacheAtStop` asks for it. Returns how many emissions were kept.
    pub async fn stop(mut self) -> Result<usize, String> {
        if self.settings.clean_at_stop || self.discard.load(Ordering::Acquire) {
            blocking(&self.store, |s| s.clear()).await?;
            return Ok(0);
        }
        let kept = self.len();
        // `head` goes before every page on disk: rewrite its page with what is left of it, or
        // give it a page number below all of them.
        if !self.head.is_empty() {
            let id = match self.head_page {
                Some(id) => id,
                None => self.disk.front().map_or(self.next_page, |d| d.0) - 1,
            };
            let head: Vec<RecordBatch> = self.head.drain(..).collect();
            blocking(&self.store, move |s| s.put(id, &head)).await?;
        }
        let page_size = self.settings.page_size;
        while !self.tail.is_empty() {
            let n = page_size.min(self.tail.len());
            let page: Vec<RecordBatch> = self.tail.drain(..n).collect();
            let id = self.next_page;
            self.next_page += 1;
            blocking(&self.store, move |s| s.put(id, &page)).await?;
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    fn item(v: i64) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![v]))],
        )
        .unwrap()
    }

    fn value(b: &RecordBatch) -> i64 {
        b.column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0)
    }

    fn spec(name: &str, memory: usize, disk: usize, page: usize) -> CacheSpec {
        let dir = std::env::temp_dir().join(format!("quiver-sc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        CacheSpec {
            dir,
            rule: "r".into(),
            sink: "sink_rest_0".into(),
            settings: CacheSettings {
                memory_threshold: memory,
                max_disk: disk,
                page_size: page,
                resend_interval: std::time::Duration::ZERO,
                clean_at_stop: false,
                alter_queue: false,
                priority: ResendPriority::Equal,
                indicator_field: None,
                destination: None,
            },
            discard: Arc::default(),
            owner: Arc::default(),
        }
    }

    async fn drain(cache: &mut SinkCache) -> Vec<i64> {
        let mut out = Vec::new();
        while let Some(b) = cache.front().await.unwrap() {
            out.push(value(&b));
            cache.pop().await;
        }
        out
    }

    #[tokio::test]
    async fn emissions_come_back_in_order_across_memory_and_disk() {
        let mut c = SinkCache::open(spec("order", 2, 100, 2)).await.unwrap();
        for v in 0..9 {
            c.push(item(v)).await.unwrap();
        }
        assert_eq!(c.len(), 9);
        // Resending part of it while more arrives keeps the order.
        assert_eq!(value(&c.front().await.unwrap().unwrap()), 0);
        c.pop().await;
        c.push(item(9)).await.unwrap();
        assert_eq!(drain(&mut c).await, (1..10).collect::<Vec<_>>());
        assert!(c.is_empty());
    }

    #[tokio::test]
    async fn a_full_disk_drops_the_oldest_page_and_says_so() {
        let mut c = SinkCache::open(spec("full", 1, 2, 1)).await.unwrap();
        c.push(item(0)).await.unwrap();
        c.push(item(1)).await.unwrap();
        c.push(item(2)).await.unwrap();
        let loss = c.push(item(3)).await.unwrap_err();
        assert_eq!(loss.emissions, 1);
        assert!(loss.reason.contains("maxDiskCache 2"), "{}", loss.reason);
        assert_eq!(drain(&mut c).await, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn what_waits_at_a_stop_is_sent_first_by_the_next_run() {
        let s = spec("stop", 2, 100, 2);
        let mut c = SinkCache::open(s.clone()).await.unwrap();
        for v in 0..7 {
            c.push(item(v)).await.unwrap();
        }
        // Half of the first disk page is sent before the stop: it is not sent again.
        assert_eq!(value(&c.front().await.unwrap().unwrap()), 0);
        c.pop().await;
        assert_eq!(c.stop().await.unwrap(), 6);
        let mut c = SinkCache::open(s.clone()).await.unwrap();
        assert_eq!(c.len(), 6);
        c.push(item(7)).await.unwrap();
        assert_eq!(drain(&mut c).await, (1..8).collect::<Vec<_>>());
        assert_eq!(c.stop().await.unwrap(), 0);
        assert!(SinkCache::open(s.clone()).await.unwrap().is_empty());
        // cleanCacheAtStop drops it all.
        let mut clean = s.clone();
        clean.settings.clean_at_stop = true;
        let mut c = SinkCache::open(clean.clone()).await.unwrap();
        for v in 0..5 {
            c.push(item(v)).await.unwrap();
        }
        c.stop().await.unwrap();
        assert!(SinkCache::open(clean).await.unwrap().is_empty());
    }
}
