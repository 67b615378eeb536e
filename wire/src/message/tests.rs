//! Round trips and corruption for every message type.

use proptest::prelude::*;

use super::auth::*;
use super::committed_offsets::*;
use super::delete_records::*;
use super::error_body::ErrorBody;
use super::fetch::*;
use super::group::*;
use super::group_admin::*;
use super::handshake::*;
use super::key_query::*;
use super::metadata::*;
use super::offsets::*;
use super::produce::*;
use super::producer_id::*;
use super::stats::*;
use super::subscribe::*;
use super::table::*;
use super::topic::*;
use crate::constants::*;
use crate::{
    decode_body, encode_error, encode_push, encode_request, encode_response, split_frame, ApiKey,
    ErrorCode, Message,
};

/// Encodes `msg` as request and response, splits the frame back off the buffer, validates and
/// deserializes the body, and checks everything matches.
fn round_trip<T>(msg: &T)
where
    T: Message + PartialEq + std::fmt::Debug,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    for (frame, flags) in
        [(encode_request(42, msg).unwrap(), 0), (encode_response(42, msg).unwrap(), FLAG_RESPONSE)]
    {
        assert_eq!(frame.len() % BODY_ALIGN, 0);
        let (raw, used) = split_frame(&frame, FRAME_BODY_BYTES_MAX_DEFAULT).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(raw.header.api_key, T::API_KEY.as_u16());
        assert_eq!(raw.header.flags, flags);
        assert_eq!(raw.header.correlation_id, 42);
        assert_eq!(raw.header.version, PROTOCOL_VERSION);
        let back: T = decode_body(raw.body).unwrap();
        assert_eq!(&back, msg);
    }
}

/// Flipping any byte of the body or cutting it short gives an error or some value, never a
/// panic or an out-of-bounds read (bytecheck validates every pointer and length).
fn corrupt<T>(msg: &T, pos: prop::sample::Index, byte: u8, cut: prop::sample::Index)
where
    T: Message,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    let frame = encode_request(1, msg).unwrap();
    let (raw, _) = split_frame(&frame, u32::MAX).unwrap().unwrap();
    let body_len = raw.body.len();
    if body_len == 0 {
        return;
    }
    let mut bad = frame.clone();
    bad[FRAME_HEADER_BYTES + pos.index(body_len)] ^= byte | 1;
    let _ = decode_body::<T>(&bad[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + body_len]);
    let cut = cut.index(body_len);
    let _ = decode_body::<T>(&frame[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + cut]);
}

macro_rules! message_props {
    ($($name:ident: $ty:ty,)*) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            $(
                #[test]
                fn $name(msg in any::<$ty>(), pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
                    round_trip(&msg);
                    corrupt(&msg, pos, byte, cut);
                }
            )*
        }
    };
}

message_props! {
    handshake_request: HandshakeRequest,
    handshake_response: HandshakeResponse,
    metadata_request: MetadataRequest,
    metadata_response: MetadataResponse,
    create_topic_request: CreateTopicRequest,
    create_topic_response: CreateTopicResponse,
    delete_topic_request: DeleteTopicRequest,
    delete_topic_response: DeleteTopicResponse,
    list_topics_request: ListTopicsRequest,
    list_topics_response: ListTopicsResponse,
    describe_topic_request: DescribeTopicRequest,
    describe_topic_response: DescribeTopicResponse,
    produce_request: ProduceRequest,
    produce_response: ProduceResponse,
    fetch_request: FetchRequest,
    fetch_response: FetchResponse,
    subscribe_request: SubscribeRequest,
    subscribe_response: SubscribeResponse,
    grant_credit_request: GrantCreditRequest,
    grant_credit_response: GrantCreditResponse,
    unsubscribe_request: UnsubscribeRequest,
    unsubscribe_response: UnsubscribeResponse,
    subscription_data: SubscriptionData,
    list_offsets_request: ListOffsetsRequest,
    list_offsets_response: ListOffsetsResponse,
    stats_request: StatsRequest,
    stats_response: StatsResponse,
    join_group_request: JoinGroupRequest,
    join_group_response: GroupMemberState,
    heartbeat_request: HeartbeatRequest,
    heartbeat_response: HeartbeatResponse,
    leave_group_request: LeaveGroupRequest,
    leave_group_response: LeaveGroupResponse,
    commit_offsets_request: CommitOffsetsRequest,
    commit_offsets_response: CommitOffsetsResponse,
    fetch_offsets_request: FetchOffsetsRequest,
    fetch_offsets_response: FetchOffsetsResponse,
    list_groups_request: ListGroupsRequest,
    list_groups_response: ListGroupsResponse,
    describe_group_request: DescribeGroupRequest,
    describe_group_response: DescribeGroupResponse,
    init_producer_id_request: InitProducerIdRequest,
    init_producer_id_response: InitProducerIdResponse,
    table_read_request: TableReadRequest,
    table_read_response: TableReadResponse,
    key_query_request: KeyQueryRequest,
    key_query_response: KeyQueryResponse,
    create_table_request: CreateTableRequest,
    create_table_response: CreateTableResponse,
    delete_table_request: DeleteTableRequest,
    delete_table_response: DeleteTableResponse,
    sasl_handshake_request: SaslHandshakeRequest,
    sasl_handshake_response: SaslHandshakeResponse,
    sasl_authenticate_request: SaslAuthenticateRequest,
    sasl_authenticate_response: SaslAuthenticateResponse,
    upsert_user_request: UpsertUserRequest,
    upsert_user_response: UpsertUserResponse,
    delete_user_request: DeleteUserRequest,
    delete_user_response: DeleteUserResponse,
    list_users_request: ListUsersRequest,
    list_users_response: ListUsersResponse,
    create_acl_request: CreateAclRequest,
    create_acl_response: CreateAclResponse,
    delete_acl_request: DeleteAclRequest,
    delete_acl_response: DeleteAclResponse,
    list_acls_request: ListAclsRequest,
    list_acls_response: ListAclsResponse,
    create_token_request: CreateTokenRequest,
    create_token_response: CreateTokenResponse,
    delete_token_request: DeleteTokenRequest,
    delete_token_response: DeleteTokenResponse,
    list_tokens_request: ListTokensRequest,
    list_tokens_response: ListTokensResponse,
    delete_group_offsets_request: DeleteGroupOffsetsRequest,
    delete_group_offsets_response: DeleteGroupOffsetsResponse,
    delete_records_request: DeleteRecordsRequest,
    delete_records_response: DeleteRecordsResponse,
    change_acls_request: ChangeAclsRequest,
    change_acls_response: ChangeAclsResponse,
    change_credentials_request: ChangeCredentialsRequest,
    change_credentials_response: ChangeCredentialsResponse,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn error_body(code in any::<u16>(), message in ".*") {
        let body = ErrorBody { code, message };
        let frame = crate::encode_frame(7, FLAG_RESPONSE | FLAG_ERROR, 9, &body).unwrap();
        let (raw, _) = split_frame(&frame, u32::MAX).unwrap().unwrap();
        prop_assert!(raw.header.has_flag(FLAG_ERROR));
        prop_assert_eq!(decode_body::<ErrorBody>(raw.body).unwrap(), body);
    }

    /// Arbitrary bytes as a frame stream never panic the splitter or the body validators.
    #[test]
    fn garbage_stream_never_panics(garbage in proptest::collection::vec(any::<u8>(), 0..512)) {
        let buf = crate::to_aligned(&garbage);
        if let Ok(Some((raw, _))) = split_frame(&buf, 1 << 20) {
            let _ = decode_body::<ProduceRequest>(raw.body);
        }
        let _ = decode_body::<ProduceRequest>(&buf);
        let _ = decode_body::<FetchResponse>(&buf);
        let _ = decode_body::<MetadataResponse>(&buf);
    }
}

/// Batch bytes inside produce, fetch and push bodies land 16-byte aligned, so the receiver
/// validates them in place.
#[test]
fn batches_inside_bodies_are_aligned_and_valid_in_place() {
    let mut b = crate::BatchBuilder::new(1 << 20);
    b.append(1, Some(b"k"), Some(b"v"), &[("h", b"x")]).unwrap();
    let batch = b.finish().unwrap().to_vec();
    let req = ProduceRequest {
        ack: AckLevel::Durable,
        timeout_ms: 1000,
        topics: vec![ProduceTopic {
            name: "t".repeat(3),
            partitions: (0..3)
                .map(|p| ProducePartition {
                    partition: p,
                    batches: batch.clone(),
                    expect: Default::default(),
                })
                .collect(),
        }],
    };
    let frame = encode_request(1, &req).unwrap();
    let (raw, _) = split_frame(&frame, u32::MAX).unwrap().unwrap();
    let archived = crate::access_body::<ProduceRequest>(raw.body).unwrap();
    assert_eq!(archived.ack.to_native(), AckLevel::Durable);
    for p in archived.topics[0].partitions.iter() {
        let view = crate::BatchView::validate(p.batches.as_slice()).unwrap();
        assert_eq!(view.records().next().unwrap().value(), Some(&b"v"[..]));
    }
    let push = SubscriptionData {
        subscription_id: 3,
        error: 0,
        high_watermark: 1,
        batches: batch.clone(),
        next_offset: 2,
    };
    let frame = encode_push(&push).unwrap();
    let (raw, _) = split_frame(&frame, u32::MAX).unwrap().unwrap();
    assert!(raw.header.has_flag(FLAG_PUSH));
    let archived = crate::access_body::<SubscriptionData>(raw.body).unwrap();
    crate::BatchView::validate(archived.batches.as_slice()).unwrap();
}

/// A produce request carrying a maximum-size batch fits the default frame maximum and round
/// trips; a frame over the configured maximum is refused from its header alone.
#[test]
fn maximum_sizes() {
    let mut b = crate::BatchBuilder::new(BATCH_BYTES_MAX as usize);
    b.append(1, None, Some(&vec![1u8; BATCH_BYTES_MAX as usize - 4096]), &[]).unwrap();
    let batch = b.finish().unwrap().to_vec();
    let req = ProduceRequest {
        ack: AckLevel::Written,
        timeout_ms: 1,
        topics: vec![ProduceTopic {
            name: "big".into(),
            partitions: vec![ProducePartition {
                partition: 0,
                batches: batch,
                expect: Default::default(),
            }],
        }],
    };
    round_trip(&req);
    let frame = encode_request(5, &req).unwrap();
    let err = split_frame(&frame, BATCH_BYTES_MAX / 2).map(|_| ()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::FrameTooLarge);
}

/// An unknown api key or protocol version still yields a well-formed header, so the server
/// can answer with an error response rather than drop the connection.
#[test]
fn unknown_api_key_and_version_reach_the_dispatcher() {
    let mut frame = crate::encode_frame(
        999,
        0,
        77,
        &StatsRequest { shards: vec![], group_lag: false, latency: false, reset_latency: false },
    )
    .unwrap();
    let (raw, _) = split_frame(&frame, 1 << 20).unwrap().unwrap();
    assert_eq!(ApiKey::from_u16(raw.header.api_key), None);
    let reply = encode_error(
        raw.header.api_key,
        raw.header.correlation_id,
        ErrorCode::UnknownApiKey,
        "api key 999",
    );
    let (raw, _) = split_frame(&reply, 1 << 20).unwrap().unwrap();
    assert_eq!(raw.header.api_key, 999);
    assert_eq!(raw.header.correlation_id, 77);
    let body: ErrorBody = decode_body(raw.body).unwrap();
    assert_eq!(ErrorCode::from_u16(body.code), Some(ErrorCode::UnknownApiKey));

    // Version 9 of Stats: the header decodes; ApiKey::supports says no.
    let mut header = crate::FrameHeader::decode(frame[..32].try_into().unwrap(), 1 << 20).unwrap();
    header.version = 9;
    header.api_key = ApiKey::Stats.as_u16();
    frame[..32].copy_from_slice(&header.encode());
    let (raw, _) = split_frame(&frame, 1 << 20).unwrap().unwrap();
    assert!(!ApiKey::Stats.supports(raw.header.version));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A push made from batches in pieces is byte for byte the push of them joined, however
    /// they are cut (the broker pushes straight from the log's views).
    #[test]
    fn a_push_in_pieces_encodes_as_the_joined_push(
        msg in any::<SubscriptionData>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
        keep in prop::collection::vec(any::<bool>(), 1..6),
    ) {
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(msg.batches.len() + 1)).collect();
        at.extend([0, msg.batches.len()]);
        at.sort_unstable();
        let pieces: Vec<&[u8]> = at.windows(2).map(|w| &msg.batches[w[0]..w[1]]).collect();
        let in_pieces = SubscriptionDataPieces {
            subscription_id: msg.subscription_id,
            error: msg.error,
            high_watermark: msg.high_watermark,
            batches: &pieces,
            next_offset: msg.next_offset,
        };
        let joined = encode_push(&msg).unwrap();
        prop_assert_eq!(&in_pieces.encode_push().unwrap()[..], &joined[..]);
        // Referenced instead of copied (those `keep` picks; the others copied): the parts
        // joined are the same frame, every non-empty picked piece is referenced, and the
        // owned bytes are only what is not referenced.
        let referenced: Vec<&[u8]> =
            pieces.iter().zip(keep.iter().cycle()).filter(|(_, k)| **k).map(|(p, _)| *p).collect();
        let parts = in_pieces.encode_push_parts(&referenced).unwrap();
        prop_assert_eq!(parts.len, joined.len());
        prop_assert_eq!(&parts.join(&referenced)[..], &joined[..]);
        let found: Vec<usize> = parts
            .parts
            .iter()
            .filter_map(|p| match p {
                crate::FramePart::Piece(i) => Some(*i),
                crate::FramePart::Owned(_) => None,
            })
            .collect();
        let non_empty: Vec<usize> =
            (0..referenced.len()).filter(|&i| !referenced[i].is_empty()).collect();
        prop_assert_eq!(found, non_empty);
        let referenced_bytes: usize = referenced.iter().map(|p| p.len()).sum();
        prop_assert_eq!(parts.owned.len() + referenced_bytes, joined.len());
    }
}
