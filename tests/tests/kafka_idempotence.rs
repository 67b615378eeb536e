//! Idempotent producers through the Kafka listener (issue 22), with raw Kafka requests so the
//! test controls producer id, epoch and sequence: a batch sent twice is stored once and
//! answered with its first offsets; a batch that skips sequence numbers is refused with
//! OUT_OF_ORDER_SEQUENCE_NUMBER; acks=0 gets no response and the next request is answered.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use integration_tests::{create_topic, fetch_all, Broker};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::{
    produce_request, ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

struct Kafka {
    s: TcpStream,
    correlation: i32,
}

impl Kafka {
    fn connect(addr: &str) -> Kafka {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Kafka { s, correlation: 0 }
    }

    fn send<T: Encodable>(&mut self, api: ApiKey, version: i16, body: &T) -> i32 {
        self.correlation += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = api as i16;
        header.request_api_version = version;
        header.correlation_id = self.correlation;
        header.client_id = Some(StrBytes::from_static_str("idempotence-test"));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, api.request_header_version(version)).unwrap();
        body.encode(&mut buf, version).unwrap();
        let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&buf);
        self.s.write_all(&frame).unwrap();
        self.correlation
    }

    fn receive<T: Decodable>(&mut self, api: ApiKey, version: i16, correlation: i32) -> T {
        let mut size = [0u8; 4];
        self.s.read_exact(&mut size).expect("response");
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.s.read_exact(&mut body).unwrap();
        let mut body = Bytes::from(body);
        let header =
            ResponseHeader::decode(&mut body, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, correlation);
        T::decode(&mut body, version).unwrap()
    }
}

fn batch(pid: i64, epoch: i16, base_sequence: i32, n: i32) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: base_sequence + i,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("k{}", base_sequence + i))),
            value: Some(Bytes::from(format!("v{}", base_sequence + i))),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )
    .unwrap();
    buf.freeze()
}

fn produce(topic: &str, records: Bytes, acks: i16) -> ProduceRequest {
    let mut p = produce_request::PartitionProduceData::default();
    p.index = 0;
    p.records = Some(records);
    let mut t = produce_request::TopicProduceData::default();
    t.name = TopicName(StrBytes::from_string(topic.to_owned()));
    t.partition_data.push(p);
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = 10_000;
    req.topic_data.push(t);
    req
}

fn partition(resp: &ProduceResponse) -> (i16, i64) {
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[test]
fn kafka_idempotent_batches_are_stored_once_and_gaps_are_refused() {
    let b = Broker::start_with_env(2, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let ready = std::fs::read_to_string(b.data_dir.with_extension("ready")).unwrap();
    let addr = serde_json::from_str::<serde_json::Value>(&ready).unwrap()["kafka"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut native = b.connect();
    create_topic(&mut native, "idem", 1);
    let mut k = Kafka::connect(&addr);

    let c = k.send(ApiKey::InitProducerId, 1, &InitProducerIdRequest::default());
    let pid: InitProducerIdResponse = k.receive(ApiKey::InitProducerId, 1, c);
    assert_eq!(pid.error_code, 0);
    let (id, epoch) = (pid.producer_id.0, pid.producer_epoch);
    assert!(id >= 0);

    let version = 7;
    let first = batch(id, epoch, 0, 3);
    let c = k.send(ApiKey::Produce, version, &produce("idem", first.clone(), -1));
    assert_eq!(partition(&k.receive(ApiKey::Produce, version, c)), (0, 0));
    // The same batch again (a retry whose answer was lost): not stored twice.
    let c = k.send(ApiKey::Produce, version, &produce("idem", first, -1));
    let (code, base) = partition(&k.receive(ApiKey::Produce, version, c));
    assert!(code == 0 || code == 46, "duplicate answered with {code}");
    if code == 0 {
        assert_eq!(base, 0, "a duplicate is answered with its first offsets");
    }
    // A gap in the sequence: refused, retriable.
    let c = k.send(ApiKey::Produce, version, &produce("idem", batch(id, epoch, 5, 1), -1));
    assert_eq!(partition(&k.receive(ApiKey::Produce, version, c)).0, 45, "OUT_OF_ORDER_SEQUENCE");
    // acks=0: no response; the next request on the connection is still answered, in order.
    k.send(ApiKey::Produce, version, &produce("idem", batch(id, epoch, 3, 2), 0));
    let c = k.send(ApiKey::Produce, version, &produce("idem", batch(id, epoch, 5, 1), -1));
    assert_eq!(partition(&k.receive(ApiKey::Produce, version, c)), (0, 5));

    let batches = fetch_all(&mut native, "idem", 0, 6);
    let bytes = wire::to_aligned(&batches.concat());
    let values: Vec<Vec<u8>> = wire::Batches::new(&bytes)
        .flat_map(|b| b.unwrap().records().map(|r| r.value().unwrap().to_vec()).collect::<Vec<_>>())
        .collect();
    let expected: Vec<Vec<u8>> = (0..6).map(|i| format!("v{i}").into_bytes()).collect();
    assert_eq!(values, expected, "each record once, in order");
}
