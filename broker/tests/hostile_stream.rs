//! Hostile byte streams through the server's frame handling, in process (the same code path
//! as a socket, without the network): garbage, flipped bits, truncation, and valid headers
//! around mutated bodies. Nothing may panic, every answer is a well-formed frame, and the
//! broker still serves correctly afterwards. The libFuzzer target `broker/fuzz` drives the
//! same entry point for hours; this test runs a seeded sample in every `cargo test`
//! (`HOSTILE_ITERATIONS`, `HOSTILE_SEED`).

use broker::in_process::{check_output, frame, frame_chunks, InProcessBroker, TOPIC};
use wire::*;

fn produce_body(topic: &str, partition: u32, records: u32) -> Vec<u8> {
    let mut b = BatchBuilder::new(1 << 20);
    for i in 0..records {
        b.append(i64::from(i), Some(b"k"), Some(format!("v{i}").as_bytes()), &[("h", b"x")])
            .unwrap();
    }
    let req = ProduceRequest {
        ack: AckLevel::Durable,
        timeout_ms: 1000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition {
                partition,
                batches: b.finish().unwrap().to_vec(),
                expect: Default::default(),
            }],
        }],
    };
    body(&req)
}

/// The archived body of `msg` (what follows the frame header).
fn body<T: Message>(msg: &T) -> Vec<u8> {
    let f = encode_request(0, msg).unwrap();
    let h = FrameHeader::decode(f[..constants::FRAME_HEADER_BYTES].try_into().unwrap(), u32::MAX)
        .unwrap();
    f[constants::FRAME_HEADER_BYTES..constants::FRAME_HEADER_BYTES + h.body_len as usize].to_vec()
}

/// Valid requests of every kind the fuzzer starts from: (api key, body).
fn corpus() -> Vec<(u16, Vec<u8>)> {
    let fetch = FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: TOPIC.into(),
            partitions: vec![FetchPartition { partition: 1, offset: 0, max_bytes: 1 << 16 }],
        }],
    };
    vec![
        (
            ApiKey::Handshake as u16,
            body(&HandshakeRequest {
                client_id: "fuzz".into(),
                client_version: "0".into(),
                protocol_version_min: 1,
                protocol_version_max: 1,
            }),
        ),
        (ApiKey::Metadata as u16, body(&MetadataRequest { topics: vec![TOPIC.into()] })),
        (ApiKey::Produce as u16, produce_body(TOPIC, 1, 5)),
        (ApiKey::Fetch as u16, body(&fetch)),
        (
            ApiKey::ListOffsets as u16,
            body(&ListOffsetsRequest {
                topics: vec![ListOffsetsTopic {
                    name: TOPIC.into(),
                    partitions: vec![ListOffsetsPartition {
                        partition: 2,
                        spec: OffsetSpec::Latest,
                    }],
                }],
            }),
        ),
        (ApiKey::DescribeTopic as u16, body(&DescribeTopicRequest { name: TOPIC.into() })),
        (ApiKey::ListTopics as u16, body(&ListTopicsRequest { name_prefix: String::new() })),
        (
            ApiKey::CreateTopic as u16,
            body(&CreateTopicRequest {
                name: "made-by-fuzz".into(),
                config: TopicConfig { partition_count: 2, ..TopicConfig::default() },
            }),
        ),
        (
            ApiKey::Subscribe as u16,
            body(&SubscribeRequest {
                subscription_id: 7,
                topic: TOPIC.into(),
                partition: 1,
                start: StartPosition::Earliest,
                credit_bytes: 1 << 16,
                filter: String::new(),
            }),
        ),
        (
            ApiKey::GrantCredit as u16,
            body(&GrantCreditRequest { subscription_id: 7, credit_bytes: 1 << 16 }),
        ),
        (ApiKey::Unsubscribe as u16, body(&UnsubscribeRequest { subscription_id: 7 })),
        (
            ApiKey::Stats as u16,
            body(&StatsRequest {
                shards: vec![],
                group_lag: true,
                latency: false,
                reset_latency: false,
            }),
        ),
        (
            ApiKey::JoinGroup as u16,
            body(&JoinGroupRequest {
                group: "g".into(),
                session_timeout_ms: 1_000,
                topics: vec![TOPIC.into()],
                ..Default::default()
            }),
        ),
        (
            ApiKey::CommitOffsets as u16,
            body(&CommitOffsetsRequest {
                group: "g".into(),
                topics: vec![CommitTopic {
                    name: TOPIC.into(),
                    partitions: vec![CommittedOffset {
                        partition: 1,
                        offset: 3,
                        metadata: "m".into(),
                    }],
                }],
                ..Default::default()
            }),
        ),
        (ApiKey::InitProducerId as u16, body(&InitProducerIdRequest::default())),
    ]
}

/// Decodes the single response frame in `out`.
fn response<T>(out: &[u8]) -> T
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    assert_eq!(check_output(out).unwrap(), 1, "one response");
    let f = to_aligned(out);
    let h = FrameHeader::decode(f[..constants::FRAME_HEADER_BYTES].try_into().unwrap(), u32::MAX)
        .unwrap();
    assert!(!h.has_flag(constants::FLAG_ERROR), "error response");
    decode_body(
        &f[constants::FRAME_HEADER_BYTES..constants::FRAME_HEADER_BYTES + h.body_len as usize],
    )
    .unwrap()
}

fn serve_checked(broker: &InProcessBroker, input: &[u8], what: &str) -> usize {
    let out = broker.serve(input);
    match check_output(&out) {
        Ok(n) => n,
        Err(e) => panic!("{what}: malformed output: {e}\ninput: {input:02x?}"),
    }
}

#[test]
fn hostile_streams_never_panic_and_are_answered_with_well_formed_frames() {
    let iterations: u32 =
        std::env::var("HOSTILE_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(5_000);
    let seed: u64 = std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("hostile stream seed {seed} (replay: HOSTILE_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcessBroker::start(dir.path().join("data")).unwrap();
    let corpus = corpus();

    // Every valid request is answered, in one pipelined stream.
    let all: Vec<u8> =
        corpus.iter().enumerate().flat_map(|(i, (api, b))| frame(*api, i as u64 + 1, b)).collect();
    let answered = serve_checked(&broker, &all, "valid corpus");
    // Subscribe also yields pushes; everything else exactly one response each.
    assert!(answered >= corpus.len(), "{answered} answers to {} requests", corpus.len());

    let mut rng = fastrand::Rng::with_seed(seed);
    for i in 0..iterations {
        let (api, valid) = &corpus[rng.usize(..corpus.len())];
        let input = match rng.u8(..5) {
            // Garbage.
            0 => (0..rng.usize(..512)).map(|_| rng.u8(..)).collect(),
            // A valid frame with flipped bits anywhere (header included).
            1 => {
                let mut f = frame(*api, 1, valid);
                for _ in 0..rng.usize(1..8) {
                    let at = rng.usize(..f.len());
                    f[at] ^= 1 << rng.u8(..8);
                }
                f
            }
            // A valid header around a mutated body (reaches validation and handlers).
            2 => {
                let mut b = valid.clone();
                for _ in 0..rng.usize(1..16) {
                    if b.is_empty() {
                        break;
                    }
                    let at = rng.usize(..b.len());
                    match rng.u8(..3) {
                        0 => b[at] ^= 1 << rng.u8(..8),
                        1 => b[at] = rng.u8(..),
                        _ => b.truncate(at),
                    }
                }
                frame(*api, 1, &b)
            }
            // A valid stream cut anywhere.
            3 => {
                let mut f = all.clone();
                f.truncate(rng.usize(..f.len()));
                f
            }
            // Structure-aware random chunks, as the fuzz target's framed mode.
            _ => frame_chunks(&(0..rng.usize(..1024)).map(|_| rng.u8(..)).collect::<Vec<_>>()),
        };
        serve_checked(&broker, &input, &format!("iteration {i}"));
    }

    // Topic creation is bounded by partitions_max (64 here): no descriptor exhaustion.
    let create = CreateTopicRequest {
        name: "too-many".into(),
        config: TopicConfig { partition_count: 65, ..TopicConfig::default() },
    };
    let created: CreateTopicResponse =
        response(&broker.serve(&frame(ApiKey::CreateTopic as u16, 1, &body(&create))));
    assert_eq!(
        ErrorCode::from_u16(created.error),
        Some(ErrorCode::ResourceLimit),
        "{}",
        created.message
    );
    assert!(created.message.contains("partitions_max"), "{}", created.message);

    // Still serving: a produce is stored and fetched back (partition 3 of the fuzz topic;
    // hostile streams may have written there too, so read from the returned offset).
    let produced: ProduceResponse =
        response(&broker.serve(&frame(ApiKey::Produce as u16, 2, &produce_body(TOPIC, 3, 3))));
    let r = &produced.topics[0].partitions[0];
    assert_eq!(r.error, 0, "{:?}", ErrorCode::from_u16(r.error));
    let fetch = FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: TOPIC.into(),
            partitions: vec![FetchPartition {
                partition: 3,
                offset: r.base_offset as u64,
                max_bytes: 1 << 20,
            }],
        }],
    };
    let resp: FetchResponse =
        response(&broker.serve(&frame(ApiKey::Fetch as u16, 3, &body(&fetch))));
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error, 0);
    let batches = to_aligned(&p.batches);
    let first = Batches::new(&batches).next().expect("the batch").unwrap();
    assert_eq!(first.header().base_offset(), r.base_offset as u64);
    assert_eq!(
        first.records().count(),
        3,
        "the produced records come back after the hostile streams"
    );
}
