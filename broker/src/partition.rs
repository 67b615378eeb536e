//! One partition this shard owns, as the shard sees it: topic, incarnation, index and log.
//!
//! Contract: a partition is opened (its log recovered) when a metadata snapshot assigns it
//! to this shard, and retired (log closed, data moved to the trash) when its topic is gone;
//! both run on the owning shard. Handlers hold an `Rc<Partition>` only for the length of a
//! request or a subscription: a retired partition's log refuses appends and wakes readers.

use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use crate::descriptors::StorageFiles;
use crate::layout::partition_dir;
use crate::metadata::Topic;
use crate::storage::{DmaDisk, LogConfig, PartitionCache, PartitionLog, StorageError};

/// One partition owned by this shard.
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Topic incarnation.
    pub topic_id: u64,
    /// Partition number.
    pub index: u32,
    /// Its log.
    pub log: PartitionLog<DmaDisk>,
}

impl Partition {
    /// Opens (recovering) partition `index` of `topic` under `data_dir`, reserving its
    /// descriptor in `files`.
    pub async fn open(
        data_dir: &Path,
        topic: &Topic,
        index: u32,
        config: LogConfig,
        cache: PartitionCache,
        files: Arc<StorageFiles>,
    ) -> Result<Self, StorageError> {
        let dir = partition_dir(data_dir, &topic.name, index);
        let log = PartitionLog::open(DmaDisk, dir, config, cache, files).await?;
        Ok(Partition { topic: topic.name.clone(), topic_id: topic.id, index, log })
    }

    /// Its topic was deleted: closes the log and moves its data to the trash under
    /// `data_dir` (freed in the background). Failures are logged.
    pub async fn retire(&self, data_dir: &Path) {
        if let Err(e) = self.log.close().await {
            warn!(topic = %self.topic, partition = self.index, error = %e, "closing deleted partition");
        }
        let dir = self.log.dir().to_owned();
        if let Err(e) = crate::trash::move_to_trash(data_dir, &dir) {
            warn!(dir = %dir.display(), error = %e, "cannot move deleted partition's data to the trash");
        }
        info!(topic = %self.topic, partition = self.index, "partition deleted");
    }

    /// Closes the log (flush, sync, trim) unless `timeout` passes first; failures and an
    /// abandoned close are logged (what was acked durable is synced either way).
    pub async fn close_within(&self, timeout: std::time::Duration) {
        let closed = futures_lite::future::or(async { Some(self.log.close().await) }, async {
            glommio::timer::sleep(timeout).await;
            None
        })
        .await;
        match closed {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                warn!(topic = %self.topic, partition = self.index, error = %e, "close failed")
            }
            None => {
                warn!(topic = %self.topic, partition = self.index, "close did not finish before the shutdown deadline; abandoned")
            }
        }
    }
}
