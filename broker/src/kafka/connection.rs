//! One Kafka client connection: read frames in order, run each request's first stage in
//! arrival order, and write the answers in request order (Kafka clients match responses by
//! position as much as by correlation id).
//!
//! Each request's second stage runs as its own task; the writer awaits those tasks in order.
//! At most `inflight_per_connection_max` are outstanding: the reader waits for the writer
//! when that many are queued. A request body is held against the shard's memory budget
//! (`memory_bytes_per_shard`) before it is allocated, with room for what it may decode to
//! (`codec::RequestRoom`: what the budget has free, up to 16× the frame + 1 MiB; a request
//! that needs more is decoded again once the budget has it), held at what the decode took
//! until its first stage ends. What a fetch's response may take (its
//! `max_bytes`, at most `fetch_response_bytes_max`) is reserved from the connection's
//! (`connection_send_queue_bytes_max`) and the shard's budgets before the fetch runs; every
//! finished response is held there (grown to its size) until it is on the socket, and the
//! reader reads no new request while the connection's budget is full, so a client that does
//! not read holds at most its share. A response that does not reach the
//! socket within `connection_write_stall_ms` closes the connection. An api or version the
//! listener does not speak is answered with UNSUPPORTED_VERSION; a request whose header or
//! body does not decode closes the connection (as Kafka brokers do: Kafka has no error
//! envelope common to every api). Idle connections (`connection_idle_ms`) and a started
//! frame slower than `frame_read_timeout_ms` are closed too. While a fetch runs (it may
//! long-poll for its `max_wait_ms`) the socket is watched (`watched.rs`: up to 1 KiB of
//! requests sent behind it is read ahead and kept for them): a client that leaves ends the
//! wait at once and the connection closes after the answer.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::io::AsyncWriteExt;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::channels::local_channel;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;
use tracing::debug;

use super::codec::{self, FrameError};
use super::error::KafkaError;
use super::{admin, data, group, group_admin, Kafka};
use crate::api::long_poll::{fetch_deadline, fetch_wait_ms, LongPoll};
use crate::auth::authorize::may_read;
use crate::budget::{self, wait_until, Held, MemoryBudget, ResponseRoom};
use crate::connection_info::ConnectionInfo;
use crate::counters::Counters;
use crate::shard::Shard;
use crate::watched::Watched;
use crate::watermark::Watermark;

/// The second stage of a request: the response frame, or `None` for a request Kafka answers
/// with nothing (a produce with acks=0); an empty frame closes the connection there (a
/// failed acks=0 produce).
pub type Answer = Pin<Box<dyn Future<Output = Option<Vec<u8>>>>>;

/// A response on its way to the socket, holding its bytes of the connection's and the
/// shard's budgets until written.
struct Queued {
    frame: Vec<u8>,
    _holds: Vec<Held>,
}

/// Which request is being answered.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// The api.
    pub api: ApiKey,
    /// Its version.
    pub version: i16,
    /// The client's correlation id.
    pub correlation_id: i32,
}

/// What a handler may need of the connection.
pub struct Session {
    /// The shard serving the connection.
    pub shard: Rc<Shard>,
    /// The listener's shared state.
    pub kafka: Arc<Kafka>,
    /// The connection's local address (advertised when the listener's IP is unspecified).
    pub local: SocketAddr,
    /// What this connection holds for its client (`connection_send_queue_bytes_max`).
    pub budget: Rc<MemoryBudget>,
    /// Who the client is (SASL, `kafka/sasl.rs`) and its cached ACL decisions.
    pub auth: Rc<crate::auth::Session>,
    /// Set after a failed authentication: the connection closes once its answer is queued.
    pub closing: std::cell::Cell<bool>,
    /// Where the client is, whether the connection is TLS, its mTLS principal.
    pub info: ConnectionInfo,
    /// Reaches 1 when the client's end closed (seen while a fetch ran): a long-poll answers.
    pub left: Watermark,
    /// Reaches 1 when an answer closes the connection (an acks=0 produce that failed, whose
    /// answer is an empty frame): the reader stops, the writer writes the answers before it
    /// and closes there.
    pub close_now: Watermark,
    /// What the request in its first stage holds of the shard's memory: its frame and what
    /// it decodes to (`codec::RequestRoom`).
    request: std::cell::RefCell<Option<codec::RequestRoom>>,
}

impl Session {
    /// Decodes the header of the request in its first stage, within its room.
    fn decode_header(
        &self,
        frame: &mut Bytes,
        api: ApiKey,
        version: i16,
    ) -> Result<kafka_protocol::messages::RequestHeader, KafkaError> {
        self.room(frame.len(), |room| room.decode_header(frame, api, version))
    }

    /// Decodes the body of the request in its first stage, within its room (then held at
    /// what the request took).
    fn decode<T: kafka_protocol::protocol::Decodable>(
        &self,
        body: &mut Bytes,
        version: i16,
    ) -> Result<T, KafkaError> {
        self.room(body.len(), |room| room.decode(body, version))
    }

    /// Runs `f` on the first-stage request's room (one of `frame_bytes`, held by nothing,
    /// if none was put there).
    fn room<R>(&self, frame_bytes: usize, f: impl FnOnce(&mut codec::RequestRoom) -> R) -> R {
        let mut request = self.request.borrow_mut();
        f(request.get_or_insert_with(|| codec::RequestRoom::new(frame_bytes, None)))
    }

    /// Waits until `bytes` fit the connection's and the shard's budgets, then holds them: what
    /// a response may take, reserved before the request runs.
    pub async fn reserve(&self, bytes: usize) -> (Vec<Held>, usize) {
        // Beside what the request itself holds of the shard (its frame and what it decoded
        // to): a response larger than the rest of the budget must not wait for it.
        // Waiting while holding: requests that each hold a little and wait for more could
        // wait for each other for ever when what they hold fills the budget, so the wait
        // ends after `frame_read_timeout_ms` with what fits then (maybe nothing: the fetch
        // then answers its first batch only, whose room it waits for as a new holder,
        // `ResponseRoom::grow`). Taking the whole room anyway let every waiting connection
        // go past the shard's budget by up to half of it.
        let own = self.request.borrow().as_ref().map_or(0, codec::RequestRoom::held_bytes);
        let (connection, shard) = (&self.budget, &self.shard.memory);
        let both = [connection.as_ref(), shard.as_ref()];
        let fits = || connection.has_room(bytes) && shard.has_room_beside(own, bytes);
        let room = wait_until(&both, fits);
        let limit = Duration::from_millis(self.shard.config.frame_read_timeout_ms.max(1));
        crate::timeout::or_after(limit, room, || false).await;
        let granted = if fits() {
            bytes
        } else {
            let free = |b: &MemoryBudget, beside: usize| {
                if b.held_bytes() <= beside {
                    bytes
                } else {
                    b.held_bytes_max().saturating_sub(b.held_bytes())
                }
            };
            bytes.min(free(connection, 0)).min(free(shard, own))
        };
        (budget::hold_all_now(&[connection, shard], granted), granted)
    }

    /// The host and port clients should connect to: the listener's address, or this
    /// connection's local IP when the listener is bound to every address.
    pub fn advertised(&self) -> (String, i32) {
        let ip = if self.kafka.listen.ip().is_unspecified() {
            self.local.ip()
        } else {
            self.kafka.listen.ip()
        };
        (ip.to_string(), i32::from(self.kafka.listen.port()))
    }
}

/// An answer that is already known.
pub fn ready(frame: Option<Vec<u8>>) -> Answer {
    Box::pin(std::future::ready(frame))
}

/// Encodes a response to `ctx`'s request (an encoding failure is logged and answered as
/// UNSUPPORTED_VERSION, never a panic).
pub fn respond<T: Encodable>(ctx: Ctx, body: &T) -> Option<Vec<u8>> {
    match codec::response(ctx.api, ctx.version, ctx.correlation_id, body) {
        Ok(frame) => Some(frame),
        Err(e) => {
            tracing::warn!(error = %e, "kafka response does not encode");
            Some(codec::unsupported(ctx.correlation_id))
        }
    }
}

/// Serves one Kafka connection until the client leaves, sends what cannot be decoded, idles
/// out, or the shard stops (`stop` reaches 1).
pub async fn serve<S>(
    shard: Rc<Shard>,
    kafka: Arc<Kafka>,
    stream: S,
    local: SocketAddr,
    info: ConnectionInfo,
    stop: Watermark,
    auth: Rc<crate::auth::Session>,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    Counters::add(&shard.counters.connections, 1);
    Counters::add(&shard.counters.connections_total, 1);
    let (reader, mut writer) = crate::stream_halves::split(stream);
    let mut reader = Watched::new(reader);
    let inflight_max = shard.config.inflight_per_connection_max.max(1);
    let (tx, rx) =
        local_channel::new_bounded::<glommio::task::JoinHandle<Option<Queued>>>(inflight_max);
    let budget = MemoryBudget::new(shard.config.connection_send_queue_bytes_max);
    let write_stall = Duration::from_millis(shard.config.connection_write_stall_ms.max(1));
    let close_now = Watermark::new(0);
    let writer_task = glommio::spawn_local(async move {
        while let Some(answer) = rx.recv().await {
            let Some(Some(queued)) = answer.await else { continue };
            if queued.frame.is_empty() {
                break; // an answer that closes the connection (after those before it)
            }
            let written = futures_lite::future::or(
                // Flushed: under TLS a write that found the socket full leaves encrypted bytes
                // in the session until the next write or flush.
                async {
                    writer.write_all(&queued.frame).await.is_ok() && writer.flush().await.is_ok()
                },
                async {
                    glommio::timer::sleep(write_stall).await;
                    false
                },
            )
            .await;
            drop(queued); // its budget goes once the frame is on the socket
            if !written {
                break;
            }
        }
        let _ = writer.close().await;
    })
    .detach();
    let session = Session {
        shard: shard.clone(),
        kafka,
        local,
        budget: budget.clone(),
        auth,
        closing: std::cell::Cell::new(false),
        info,
        left: Watermark::new(0),
        close_now: close_now.clone(),
        request: std::cell::RefCell::new(None),
    };
    let body_bytes_max = shard.config.frame_body_bytes_max as usize;
    let frame_timeout = Duration::from_millis(shard.config.frame_read_timeout_ms.max(1));
    let idle = Duration::from_millis(shard.config.connection_idle_ms);
    let end: Result<(), FrameError> = loop {
        let next = codec::read_frame(&mut reader, body_bytes_max, frame_timeout, &shard.memory);
        let ends = async {
            let stopping = async {
                futures_lite::future::or(stop.wait_for(1), close_now.wait_for(1)).await;
                Err(FrameError::Closed)
            };
            let idle_out = async {
                if idle.is_zero() {
                    std::future::pending::<()>().await;
                }
                glommio::timer::sleep(idle).await;
                Err(FrameError::Timeout(idle))
            };
            futures_lite::future::or(stopping, idle_out).await
        };
        // A client that does not read its responses is not read from either. (The shard's
        // budget is waited for by what holds from it: request bodies and fetch reservations;
        // requests that reserve nothing, such as produce, never wait for other connections.)
        wait_until(&[&budget], || !budget.is_full()).await;
        let (frame, room) = match futures_lite::future::or(next, ends).await {
            Ok(frame) => frame,
            Err(e) => break Err(e),
        };
        // Held until the first stage ends: the frame, and what it decodes to.
        let mut room = room;
        room.prepare();
        *session.request.borrow_mut() = Some(room);
        Counters::add(&shard.counters.requests, 1);
        let is_fetch = codec::peek_header(&frame).0 == ApiKey::Fetch as i16;
        // A fetch runs to its end before the next request is read. Answers leave in request
        // order, and a fetch that grows its room (a first batch beyond its limits,
        // `api/fetch.rs`) could otherwise wait for room held by answers queued behind it,
        // which wait for it to be written. (A Kafka broker serves a connection's requests one
        // at a time anyway; a consumer has one fetch in flight per broker.)
        let work = async {
            let mut started = dispatch(&session, frame.clone()).await;
            let short = session.request.borrow().as_ref().is_some_and(|r| r.short());
            if started.is_err() && short {
                // It decodes to more than the budget had free: again once it has the room.
                // Not waited for past `frame_read_timeout_ms` (requests holding their frames
                // while they wait could wait for each other): the connection then closes,
                // as for a request that does not decode.
                let mut room = session.request.borrow_mut().take().expect("put there above");
                let limit = Duration::from_millis(shard.config.frame_read_timeout_ms.max(1));
                let waited = crate::timeout::or_after(
                    limit,
                    async {
                        room.wait_for_room().await;
                        true
                    },
                    || false,
                )
                .await;
                *session.request.borrow_mut() = Some(room);
                if waited {
                    started = dispatch(&session, frame).await;
                }
            }
            let (answer, reserved) = started?;
            let answer: Answer = match reserved {
                Some(_) => Box::pin(std::future::ready(answer.await)),
                None => answer,
            };
            Ok::<_, KafkaError>((answer, reserved))
        };
        // A fetch may long-poll for its whole `max_wait_ms` (here, or on the partitions'
        // owners): meanwhile the socket is watched (`watched.rs`), so a client that leaves
        // ends the wait at once (`Session::left`, the native request's `end_wait`) instead of
        // holding the connection to its deadline; bytes of requests sent behind it are kept
        // for them. The connection closes once the fetch's answer is queued (whole requests
        // read ahead by then go unanswered: a client that half-closes after pipelining loses
        // them). Waiting for room for the fetch's response (`Session::reserve`) is not ended
        // so; it waits for memory. (A stopping shard ends a long-poll itself:
        // `api/long_poll.rs` checks every second.)
        let mut gone = false;
        let started = if is_fetch {
            let mut dispatching = std::pin::pin!(work);
            let ends = async {
                reader.watch().await;
                None
            };
            match futures_lite::future::or(async { Some(dispatching.as_mut().await) }, ends).await {
                Some(started) => started,
                None => {
                    gone = true;
                    session.left.advance(1);
                    dispatching.await
                }
            }
        } else {
            work.await
        };
        let (answer, reserved) = match started {
            Ok(started) => started,
            Err(e) => {
                debug!(error = %e, "kafka request does not decode; closing the connection");
                session.request.borrow_mut().take();
                break Ok(());
            }
        };
        session.request.borrow_mut().take();
        let (budget, memory) = (budget.clone(), shard.memory.clone());
        let handle = glommio::spawn_local(async move {
            let frame = answer.await?;
            // What was reserved (and grown while it ran), fit to the response's size.
            let mut holds = reserved
                .map(|room| room.take())
                .unwrap_or_else(|| budget::hold_all_now(&[&budget, &memory], 0));
            for held in &mut holds {
                held.fit(frame.len());
            }
            Some(Queued { frame, _holds: holds })
        })
        .detach();
        if tx.send(handle).await.is_err() || session.closing.get() || gone {
            break Ok(());
        }
    };
    if let Err(e) = end {
        debug!(error = %e, "kafka connection closed");
    }
    // Whatever still waits on this client's behalf need not (as a native connection's reader
    // does at its end).
    session.left.advance(1);
    drop(tx);
    budget.close();
    // The writer drains the answers already started, then closes.
    let _ = futures_lite::future::or(async { writer_task.await.is_some() }, async {
        glommio::timer::sleep(Duration::from_secs(5)).await;
        false
    })
    .await;
    Counters::sub(&shard.counters.connections, 1);
}

/// What a request's first stage started: its answer, and the room reserved for it (which the
/// native fetch grows for a first batch beyond its `max_bytes`, `api/fetch.rs`).
type Started = (Answer, Option<Rc<ResponseRoom>>);

/// Decodes one request and runs its first stage.
async fn dispatch(s: &Session, frame: Bytes) -> Result<Started, KafkaError> {
    let (key, version, _) = codec::peek_header(&frame);
    if key == ApiKey::Fetch as i16 && admin::speaks(ApiKey::Fetch, version) {
        return fetch(s, frame, version).await;
    }
    Ok((run(s, frame).await?, None))
}

/// Refuses (as a request that does not decode: the connection closes) a request naming a
/// topic longer than any topic's name can be, or more partition entries than the broker may
/// have partitions (`partitions_max`): the handlers key what they answer by topic name and
/// partition, so a 64 MiB request of one long name and millions of partition entries made
/// them copy the name millions of times.
fn bounded<'a>(
    s: &Session,
    topics: impl Iterator<Item = (&'a str, usize)>,
) -> Result<(), KafkaError> {
    let mut entries = 0usize;
    for (name, partitions) in topics {
        if name.len() > crate::metadata::TOPIC_NAME_BYTES_MAX {
            let bytes = name.len();
            return Err(KafkaError::Decode(format!("a topic name of {bytes} bytes")));
        }
        entries = entries.saturating_add(partitions.max(1));
    }
    let max = s.shard.config.partitions_max as usize;
    if entries > max {
        return Err(KafkaError::Decode(format!("{entries} partition entries; at most {max}")));
    }
    Ok(())
}

/// Refuses a user request naming more than twice `auth.users_max` users (or credentials)
/// before anything is built from it (its names are answered per user, as Kafka).
fn bounded_users(s: &Session, entries: usize) -> Result<(), KafkaError> {
    let max = s.shard.security.config().users_max.saturating_mul(2);
    if entries > max {
        return Err(KafkaError::Decode(format!("{entries} user entries; at most {max}")));
    }
    Ok(())
}

/// A fetch: what its response may take (its `max_bytes`, at most `fetch_response_bytes_max`)
/// is reserved from the connection's and the shard's budgets before it runs.
async fn fetch(s: &Session, mut frame: Bytes, version: i16) -> Result<Started, KafkaError> {
    let (_, _, correlation_id) = codec::peek_header(&frame);
    // An unauthenticated client reserves nothing.
    if let Some(refused) = super::sasl::gate(s, ApiKey::Fetch, correlation_id) {
        return refused.map(|a| (a, None));
    }
    s.decode_header(&mut frame, ApiKey::Fetch, version)?;
    let mut req: kafka_protocol::messages::FetchRequest = s.decode(&mut frame, version)?;
    bounded(s, req.topics.iter().map(|t| (t.topic.as_str(), t.partitions.len())))?;
    // At most half the shard's budget (a Kafka consumer asks for 50 MiB by default): the
    // response keeps to what its room holds.
    let bytes = (req.max_bytes.max(0) as usize)
        .min(s.shard.config.fetch_response_bytes_max as usize)
        .min(s.shard.memory.held_bytes_max() / 2);
    req.max_bytes = i32::try_from(bytes).unwrap_or(i32::MAX);
    // A fetch that would only wait for data waits first, holding nothing (`api/long_poll.rs`),
    // here in the reader: answers go out in request order, so a reservation taken later
    // could wait for room that the answers queued behind it hold. (A Kafka broker serves a
    // connection's requests one at a time anyway.) The fetch then keeps its deadline.
    let received = std::time::Instant::now();
    if let Some(poll) = long_poll(s, &req, received) {
        poll.wait(&s.shard, Some(&s.left)).await;
        let deadline = fetch_deadline(received, kafka_wait_ms(&req));
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        // A client that left gets its answer now (nobody reads it).
        req.max_wait_ms = if s.left.get() > 0 { 0 } else { left.as_millis() as i32 };
    }
    let room = Rc::new(ResponseRoom::default());
    let (held, granted) = s.reserve(bytes).await;
    room.put(held);
    // What fitted (0: the first batch only, KIP-74).
    req.max_bytes = i32::try_from(granted).unwrap_or(i32::MAX);
    let ctx = Ctx { api: ApiKey::Fetch, version, correlation_id };
    Ok((data::fetch(s, ctx, req, room.clone()).await, Some(room)))
}

/// The wait of a Kafka fetch received at `received` that would only wait for data.
fn long_poll(
    s: &Session,
    req: &kafka_protocol::messages::FetchRequest,
    received: std::time::Instant,
) -> Option<LongPoll> {
    let partitions = || req.topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (t, p)));
    if !partitions().all(|(_, p)| p.partition >= 0 && p.fetch_offset >= 0) {
        return None;
    }
    let asked =
        partitions().map(|(t, p)| (t.topic.as_str(), p.partition as u32, p.fetch_offset as u64));
    let may_read = |topic: &str| may_read(&s.shard.security, &s.auth, topic);
    LongPoll::of(&s.shard, received, kafka_wait_ms(req), asked, may_read)
}

/// How long a Kafka fetch may wait (`min_bytes` 0 or less: not at all).
fn kafka_wait_ms(req: &kafka_protocol::messages::FetchRequest) -> u32 {
    fetch_wait_ms(req.max_wait_ms.max(0) as u32, req.min_bytes.max(0) as u32)
}

/// Decodes one request (any but Fetch) and runs its first stage.
async fn run(s: &Session, mut frame: Bytes) -> Result<Answer, KafkaError> {
    let (key, version, correlation_id) = codec::peek_header(&frame);
    let Ok(api) = ApiKey::try_from(key) else {
        debug!(api_key = key, "unknown kafka api");
        return Ok(ready(Some(codec::unsupported(correlation_id))));
    };
    if !admin::speaks(api, version) {
        debug!(?api, version, "unsupported kafka api or version");
        if api == ApiKey::ApiVersions {
            // Answered at v0 with the error and the versions this listener speaks (KIP-511).
            let ctx = Ctx { api, version: 0, correlation_id };
            return Ok(ready(admin::api_versions(
                ctx,
                kafka_protocol::ResponseError::UnsupportedVersion.code(),
            )));
        }
        return Ok(ready(Some(codec::unsupported(correlation_id))));
    }
    let header = s.decode_header(&mut frame, api, version)?;
    let ctx = Ctx { api, version, correlation_id };
    if let Some(refused) = super::sasl::gate(s, api, correlation_id) {
        return refused;
    }
    let body = &mut frame;
    Ok(match api {
        ApiKey::ApiVersions => ready(admin::api_versions(ctx, 0)),
        ApiKey::SaslHandshake => ready(super::sasl::handshake(s, ctx, s.decode(body, version)?)),
        ApiKey::SaslAuthenticate => {
            ready(super::sasl::authenticate(s, ctx, s.decode(body, version)?))
        }
        ApiKey::Metadata => ready(admin::metadata(s, ctx, s.decode(body, version)?)),
        ApiKey::DescribeCluster => ready(admin::describe_cluster(s, ctx, s.decode(body, version)?)),
        ApiKey::DescribeClientQuotas => {
            ready(super::client_quotas::describe(s, ctx, s.decode(body, version)?))
        }
        ApiKey::FindCoordinator => ready(admin::find_coordinator(s, ctx, s.decode(body, version)?)),
        ApiKey::CreateTopics => admin::create_topics(s, ctx, s.decode(body, version)?).await,
        ApiKey::DeleteTopics => admin::delete_topics(s, ctx, s.decode(body, version)?).await,
        ApiKey::CreatePartitions => {
            let req: kafka_protocol::messages::CreatePartitionsRequest = s.decode(body, version)?;
            bounded(s, req.topics.iter().map(|t| (t.name.as_str(), 1)))?;
            admin::create_partitions(s, ctx, req).await
        }
        ApiKey::DescribeConfigs => ready(admin::describe_configs(s, ctx, s.decode(body, version)?)),
        ApiKey::IncrementalAlterConfigs => {
            let req: kafka_protocol::messages::IncrementalAlterConfigsRequest =
                s.decode(body, version)?;
            super::configs::incremental_alter_configs(s, ctx, req).await
        }
        ApiKey::AlterConfigs => {
            let req: kafka_protocol::messages::AlterConfigsRequest = s.decode(body, version)?;
            super::configs::alter_configs(s, ctx, req).await
        }
        ApiKey::Produce => {
            let req: kafka_protocol::messages::ProduceRequest = s.decode(body, version)?;
            bounded(s, req.topic_data.iter().map(|t| (t.name.as_str(), t.partition_data.len())))?;
            data::produce(s, ctx, req).await
        }
        ApiKey::ListOffsets => {
            let req: kafka_protocol::messages::ListOffsetsRequest = s.decode(body, version)?;
            bounded(s, req.topics.iter().map(|t| (t.name.as_str(), t.partitions.len())))?;
            data::list_offsets(s, ctx, req).await
        }
        ApiKey::DeleteRecords => {
            let req: kafka_protocol::messages::DeleteRecordsRequest = s.decode(body, version)?;
            bounded(s, req.topics.iter().map(|t| (t.name.as_str(), t.partitions.len())))?;
            super::delete_records::delete_records(s, ctx, req).await
        }
        ApiKey::DescribeAcls => super::acls::describe_acls(s, ctx, s.decode(body, version)?).await,
        ApiKey::CreateAcls => super::acls::create_acls(s, ctx, s.decode(body, version)?).await,
        ApiKey::DeleteAcls => super::acls::delete_acls(s, ctx, s.decode(body, version)?).await,
        ApiKey::DescribeLogDirs => {
            super::log_dirs::describe_log_dirs(s, ctx, s.decode(body, version)?).await
        }
        ApiKey::DescribeUserScramCredentials => {
            let req: kafka_protocol::messages::DescribeUserScramCredentialsRequest =
                s.decode(body, version)?;
            bounded_users(s, req.users.as_ref().map_or(0, Vec::len))?;
            super::scram_credentials::describe(s, ctx, req)
        }
        ApiKey::AlterUserScramCredentials => {
            let req: kafka_protocol::messages::AlterUserScramCredentialsRequest =
                s.decode(body, version)?;
            bounded_users(s, req.deletions.len().saturating_add(req.upsertions.len()))?;
            super::scram_credentials::alter(s, ctx, req).await
        }
        ApiKey::InitProducerId => data::init_producer_id(s, ctx, s.decode(body, version)?).await,
        ApiKey::JoinGroup => {
            let req: kafka_protocol::messages::JoinGroupRequest = s.decode(body, version)?;
            super::sasl::group_denied(s, ctx, &req.group_id).unwrap_or_else(|| {
                group::join(s, ctx, req, header.client_id.as_deref().unwrap_or(""))
            })
        }
        ApiKey::SyncGroup => {
            let req: kafka_protocol::messages::SyncGroupRequest = s.decode(body, version)?;
            super::sasl::group_denied(s, ctx, &req.group_id)
                .unwrap_or_else(|| group::sync(s, ctx, req))
        }
        ApiKey::Heartbeat => {
            let req: kafka_protocol::messages::HeartbeatRequest = s.decode(body, version)?;
            super::sasl::group_denied(s, ctx, &req.group_id)
                .unwrap_or_else(|| ready(group::heartbeat(s, ctx, req)))
        }
        ApiKey::LeaveGroup => {
            let req: kafka_protocol::messages::LeaveGroupRequest = s.decode(body, version)?;
            super::sasl::group_denied(s, ctx, &req.group_id)
                .unwrap_or_else(|| ready(group::leave(s, ctx, req)))
        }
        ApiKey::DescribeGroups => {
            group_admin::describe_groups(s, ctx, s.decode(body, version)?).await
        }
        ApiKey::ListGroups => group_admin::list_groups(s, ctx, s.decode(body, version)?).await,
        ApiKey::DeleteGroups => group_admin::delete_groups(s, ctx, s.decode(body, version)?).await,
        ApiKey::OffsetDelete => group_admin::offset_delete(s, ctx, s.decode(body, version)?).await,
        ApiKey::OffsetCommit => {
            let req: kafka_protocol::messages::OffsetCommitRequest = s.decode(body, version)?;
            bounded(s, req.topics.iter().map(|t| (t.name.as_str(), t.partitions.len())))?;
            super::group_offsets::offset_commit(s, ctx, req).await
        }
        ApiKey::OffsetFetch => {
            let req: kafka_protocol::messages::OffsetFetchRequest = s.decode(body, version)?;
            let topics = req.topics.iter().flatten();
            bounded(s, topics.map(|t| (t.name.as_str(), t.partition_indexes.len())))?;
            super::group_offsets::offset_fetch(s, ctx, req).await
        }
        _ => ready(Some(codec::unsupported(correlation_id))),
    })
}
