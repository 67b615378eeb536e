//! Feeds arbitrary bytes to the frame splitter and to every request body validator, the way
//! a server sees a hostile socket: nothing may panic, read out of bounds or allocate by an
//! untrusted length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::*;

fuzz_target!(|data: &[u8]| {
    // Copy into a 16-byte-aligned buffer, as the broker's connection reader does.
    let buf = to_aligned(data);
    let mut rest: &[u8] = &buf;
    while let Ok(Some((frame, used))) = split_frame(rest, 1 << 20) {
        let body = frame.body;
        let _ = match ApiKey::from_u16(frame.header.api_key) {
            Some(ApiKey::Handshake) => access_body::<HandshakeRequest>(body).map(drop),
            Some(ApiKey::Metadata) => access_body::<MetadataRequest>(body).map(drop),
            Some(ApiKey::CreateTopic) => access_body::<CreateTopicRequest>(body).map(drop),
            Some(ApiKey::DeleteTopic) => access_body::<DeleteTopicRequest>(body).map(drop),
            Some(ApiKey::ListTopics) => access_body::<ListTopicsRequest>(body).map(drop),
            Some(ApiKey::DescribeTopic) => access_body::<DescribeTopicRequest>(body).map(drop),
            Some(ApiKey::Produce) => access_body::<ProduceRequest>(body).map(|req| {
                for t in req.topics.iter() {
                    for p in t.partitions.iter() {
                        for b in Batches::new(p.batches.as_slice()) {
                            if let Ok(view) = b {
                                for r in view.records() {
                                    let _ = (r.key(), r.value(), r.headers().count());
                                }
                            }
                        }
                    }
                }
            }),
            Some(ApiKey::Fetch) => access_body::<FetchRequest>(body).map(drop),
            Some(ApiKey::Subscribe) => access_body::<SubscribeRequest>(body).map(drop),
            Some(ApiKey::GrantCredit) => access_body::<GrantCreditRequest>(body).map(drop),
            Some(ApiKey::Unsubscribe) => access_body::<UnsubscribeRequest>(body).map(drop),
            Some(ApiKey::SubscriptionData) => access_body::<SubscriptionData>(body).map(drop),
            Some(ApiKey::ListOffsets) => access_body::<ListOffsetsRequest>(body).map(drop),
            Some(ApiKey::Stats) => access_body::<StatsRequest>(body).map(drop),
            Some(ApiKey::JoinGroup) => access_body::<JoinGroupRequest>(body).map(drop),
            Some(ApiKey::Heartbeat) => access_body::<HeartbeatRequest>(body).map(drop),
            Some(ApiKey::LeaveGroup) => access_body::<LeaveGroupRequest>(body).map(drop),
            Some(ApiKey::CommitOffsets) => access_body::<CommitOffsetsRequest>(body).map(drop),
            Some(ApiKey::FetchOffsets) => access_body::<FetchOffsetsRequest>(body).map(drop),
            Some(ApiKey::ListGroups) => access_body::<ListGroupsRequest>(body).map(drop),
            Some(ApiKey::DescribeGroup) => access_body::<DescribeGroupRequest>(body).map(drop),
            Some(ApiKey::InitProducerId) => access_body::<InitProducerIdRequest>(body).map(drop),
            Some(ApiKey::TableRead) => access_body::<TableReadRequest>(body).map(drop),
            Some(ApiKey::KeyQuery) => access_body::<KeyQueryRequest>(body).map(drop),
            Some(ApiKey::CreateTable) => access_body::<CreateTableRequest>(body).map(drop),
            Some(ApiKey::DeleteTable) => access_body::<DeleteTableRequest>(body).map(drop),
            Some(ApiKey::SaslHandshake) => access_body::<SaslHandshakeRequest>(body).map(drop),
            Some(ApiKey::SaslAuthenticate) => {
                access_body::<SaslAuthenticateRequest>(body).map(drop)
            }
            Some(ApiKey::UpsertUser) => access_body::<UpsertUserRequest>(body).map(drop),
            Some(ApiKey::DeleteUser) => access_body::<DeleteUserRequest>(body).map(drop),
            Some(ApiKey::ListUsers) => access_body::<ListUsersRequest>(body).map(drop),
            Some(ApiKey::CreateAcl) => access_body::<CreateAclRequest>(body).map(drop),
            Some(ApiKey::DeleteAcl) => access_body::<DeleteAclRequest>(body).map(drop),
            Some(ApiKey::ListAcls) => access_body::<ListAclsRequest>(body).map(drop),
            Some(ApiKey::CreateToken) => access_body::<CreateTokenRequest>(body).map(drop),
            Some(ApiKey::DeleteToken) => access_body::<DeleteTokenRequest>(body).map(drop),
            Some(ApiKey::ListTokens) => access_body::<ListTokensRequest>(body).map(drop),
            Some(ApiKey::DeleteGroupOffsets) => {
                access_body::<DeleteGroupOffsetsRequest>(body).map(drop)
            }
            Some(ApiKey::CreatePartitions) => {
                access_body::<CreatePartitionsRequest>(body).map(drop)
            }
            Some(ApiKey::AlterTopicConfig) => {
                access_body::<AlterTopicConfigRequest>(body).map(drop)
            }
            Some(ApiKey::DeleteRecords) => access_body::<DeleteRecordsRequest>(body).map(drop),
            Some(ApiKey::ChangeAcls) => access_body::<ChangeAclsRequest>(body).map(drop),
            Some(ApiKey::ChangeCredentials) => {
                access_body::<ChangeCredentialsRequest>(body).map(drop)
            }
            None => Ok(()),
        };
        rest = &rest[used..];
    }
    // The body validators also see raw garbage, not only what a valid header frames.
    let _ = access_body::<ProduceRequest>(&buf);
    let _ = access_body::<FetchResponse>(&buf);
    // SCRAM and PLAIN messages come from unauthenticated peers.
    let _ = wire::scram::ClientFirst::parse(&buf);
    let _ = wire::scram::parse_plain(&buf);
});
