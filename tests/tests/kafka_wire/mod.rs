//! Raw Kafka protocol framing shared by the Kafka listener's tests.

use bytes::BytesMut;
use integration_tests::Broker;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Encodable;

/// One request frame: the length, the header for `version`, the body.
pub fn frame<T: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &T) -> Vec<u8> {
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    let mut buf = BytesMut::new();
    header.encode(&mut buf, api.request_header_version(version)).unwrap();
    body.encode(&mut buf, version).unwrap();
    let mut out = (buf.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

/// The Kafka listener's address, from the broker's ready file.
pub fn kafka_addr(b: &Broker) -> String {
    let ready = std::fs::read_to_string(b.data_dir.with_extension("ready")).expect("ready file");
    let v: serde_json::Value = serde_json::from_str(&ready).expect("ready json");
    v["kafka"].as_str().expect("kafka listener").to_owned()
}
