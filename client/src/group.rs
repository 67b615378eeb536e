//! Consumer group calls on [`Client`]: each goes to the group's coordinator shard (found
//! from metadata: the owner of partition `crc32c(group) % n` of `__consumer_offsets`; any
//! shard forwards there too).

use std::sync::Arc;

use wire::*;

use crate::client::Client;
use crate::connection::Connection;
use crate::error::ClientError;

/// The broker's committed-offsets topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// One partition's committed offset and lag, as `describe_group_lag` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Committed offset (`None`: nothing committed).
    pub committed: Option<u64>,
    /// The partition's high watermark.
    pub high_watermark: u64,
    /// Records between the committed offset (or the log start) and the high watermark.
    pub lag: u64,
}

impl Client {
    /// The connection to `group`'s coordinator.
    pub async fn coordinator_conn(&self, group: &str) -> Result<Arc<Connection>, ClientError> {
        let n = self.partition_count(OFFSETS_TOPIC).await?;
        self.owner_conn(OFFSETS_TOPIC, crc32c::crc32c(group.as_bytes()) % n.max(1)).await
    }

    /// A request to `group`'s coordinator, retried on retriable transport errors.
    pub async fn group_request<T: Message, R>(&self, group: &str, req: &T) -> Result<R, ClientError>
    where
        R: rkyv::Archive,
        R::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            > + rkyv::Deserialize<R, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        self.with_retries(|| async { self.coordinator_conn(group).await?.request(req).await }).await
    }

    /// Commits offsets for `group` as `member_id` at `generation` (empty and 0: an
    /// administrative commit, allowed only while the group has no members).
    pub async fn commit_offsets(
        &self,
        group: &str,
        member_id: &str,
        generation: u32,
        offsets: &[(String, u32, u64)],
    ) -> Result<(), ClientError> {
        let offsets: Vec<_> =
            offsets.iter().map(|(t, p, o)| (t.clone(), *p, *o, String::new())).collect();
        self.commit_offsets_with_metadata(group, member_id, generation, &offsets).await
    }

    /// [`Client::commit_offsets`] with each offset's metadata (at most 4 KiB; kept with it
    /// and returned by [`Client::fetch_offsets_with_metadata`]).
    pub async fn commit_offsets_with_metadata(
        &self,
        group: &str,
        member_id: &str,
        generation: u32,
        offsets: &[(String, u32, u64, String)],
    ) -> Result<(), ClientError> {
        let mut topics: Vec<CommitTopic> = Vec::new();
        for (topic, partition, offset, metadata) in offsets {
            let entry = CommittedOffset {
                partition: *partition,
                offset: *offset,
                metadata: metadata.clone(),
            };
            match topics.iter_mut().find(|t| t.name == *topic) {
                Some(t) => t.partitions.push(entry),
                None => topics.push(CommitTopic { name: topic.clone(), partitions: vec![entry] }),
            }
        }
        let req = CommitOffsetsRequest {
            group: group.into(),
            member_id: member_id.into(),
            generation,
            topics,
        };
        let r: CommitOffsetsResponse = self.group_request(group, &req).await?;
        self.group_check(r.error, r.message)?;
        for t in r.topics {
            for p in t.partitions {
                crate::client::check_partition(&t.name, p.partition, p.error)?;
            }
        }
        Ok(())
    }

    /// `group`'s committed offsets: (topic, partition) → offset.
    pub async fn fetch_offsets(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<(String, u32, u64)>, ClientError> {
        let all = self.fetch_offsets_with_metadata(group, topics).await?;
        Ok(all.into_iter().map(|(t, p, o, _)| (t, p, o)).collect())
    }

    /// [`Client::fetch_offsets`] with each offset's metadata.
    pub async fn fetch_offsets_with_metadata(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<(String, u32, u64, String)>, ClientError> {
        let req = FetchOffsetsRequest { group: group.into(), topics: topics.to_vec() };
        let r: FetchOffsetsResponse = self.group_request(group, &req).await?;
        self.group_check(r.error, r.message)?;
        Ok(r.topics
            .into_iter()
            .flat_map(|t| {
                let name = t.name;
                t.partitions
                    .into_iter()
                    .map(move |p| (name.clone(), p.partition, p.offset, p.metadata))
            })
            .collect())
    }

    /// Deletes `group`: forgets all its committed offsets, durably. Refused with
    /// `GROUP_NOT_EMPTY` while it has members, `UNKNOWN_GROUP` if it has no offsets.
    /// Returns the (topic, partition) offsets forgotten.
    pub async fn delete_group(&self, group: &str) -> Result<Vec<(String, u32)>, ClientError> {
        self.delete_group_offsets(group, &[]).await
    }

    /// Forgets `group`'s committed offsets of `topics` (topic, partitions; no partitions: all
    /// of the topic's), durably; all of them (the group is deleted) when `topics` is empty.
    /// A topic a member of the group reads is refused (`GROUP_SUBSCRIBED_TO_TOPIC`, the
    /// first refusal is the error). Returns the (topic, partition) offsets forgotten or
    /// asked for.
    pub async fn delete_group_offsets(
        &self,
        group: &str,
        topics: &[(String, Vec<u32>)],
    ) -> Result<Vec<(String, u32)>, ClientError> {
        let req = DeleteGroupOffsetsRequest {
            group: group.into(),
            topics: topics
                .iter()
                .map(|(topic, partitions)| TopicPartitions {
                    topic: topic.clone(),
                    partitions: partitions.clone(),
                })
                .collect(),
        };
        let r: DeleteGroupOffsetsResponse = self.group_request(group, &req).await?;
        self.group_check(r.error, r.message)?;
        let mut out = Vec::new();
        for t in r.topics {
            for p in t.partitions {
                crate::client::check_partition(&t.name, p.partition, p.error)?;
                out.push((t.name.clone(), p.partition));
            }
        }
        Ok(out)
    }

    /// Every group the broker knows (with members or committed offsets).
    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>, ClientError> {
        let conn = self.owner_conn(OFFSETS_TOPIC, 0).await?;
        let r: ListGroupsResponse =
            conn.request(&ListGroupsRequest { prefix: String::new() }).await?;
        Ok(r.groups)
    }

    /// Members, assignments and committed offsets of `group`.
    pub async fn describe_group(&self, group: &str) -> Result<DescribeGroupResponse, ClientError> {
        let r: DescribeGroupResponse =
            self.group_request(group, &DescribeGroupRequest { group: group.into() }).await?;
        self.group_check(r.error, r.message.clone())?;
        Ok(r)
    }

    /// Committed offset, high watermark and lag of every partition of every topic `group`
    /// has offsets for or reads.
    pub async fn group_lag(&self, group: &str) -> Result<Vec<PartitionLag>, ClientError> {
        let d = self.describe_group(group).await?;
        let mut topics: Vec<String> = d.offsets.iter().map(|t| t.name.clone()).collect();
        topics.extend(d.members.iter().flat_map(|m| m.topics.iter().cloned()));
        topics.sort();
        topics.dedup();
        let mut out = Vec::new();
        for topic in topics {
            let Ok(latest) = self.list_offsets(&topic, OffsetSpec::Latest).await else { continue };
            let earliest = self.list_offsets(&topic, OffsetSpec::Earliest).await?;
            for (partition, hw, _) in latest {
                let committed = d
                    .offsets
                    .iter()
                    .find(|t| t.name == topic)
                    .and_then(|t| t.partitions.iter().find(|p| p.partition == partition))
                    .map(|p| p.offset);
                let start = earliest.iter().find(|e| e.0 == partition).map_or(0, |e| e.1);
                let from = committed.unwrap_or(start).max(start);
                out.push(PartitionLag {
                    topic: topic.clone(),
                    partition,
                    committed,
                    high_watermark: hw,
                    lag: hw.saturating_sub(from),
                });
            }
        }
        Ok(out)
    }

    pub(crate) fn group_check(&self, error: u16, message: String) -> Result<(), ClientError> {
        match ErrorCode::from_u16(error) {
            Some(ErrorCode::None) => Ok(()),
            code => Err(ClientError::Group {
                code: code.unwrap_or(ErrorCode::UnknownServerError),
                message,
            }),
        }
    }
}
