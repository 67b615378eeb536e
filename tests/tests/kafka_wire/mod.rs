//! Raw Kafka protocol framing shared by the Kafka listener's tests.

// Each test binary that includes this module uses part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use integration_tests::Broker;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

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

/// A connection to the Kafka listener that sends one request and reads its answer.
pub struct Conn(pub TcpStream, pub i32);

impl Conn {
    pub fn new(b: &Broker) -> Self {
        let s = TcpStream::connect(kafka_addr(b)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Conn(s, 0)
    }

    pub fn call<Q: Encodable, A: Decodable>(&mut self, api: ApiKey, version: i16, req: &Q) -> A {
        self.1 += 1;
        self.0.write_all(&frame(api, version, self.1, req)).unwrap();
        let mut body = response_body(&mut self.0, self.1);
        if api.response_header_version(version) >= 1 {
            // A flexible version's header: tagged fields after the correlation id.
            let mut tags = BytesMut::from(&[0u8; 4][..]);
            tags.extend_from_slice(&body);
            let mut whole = tags.freeze();
            ResponseHeader::decode(&mut whole, 1).unwrap();
            body = whole;
        }
        A::decode(&mut body, version).unwrap()
    }
}

/// Reads one response frame's body after its header (v0 response header: correlation id).
pub fn response_body(s: &mut TcpStream, correlation_id: i32) -> bytes::Bytes {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).expect("a response");
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).unwrap();
    assert_eq!(i32::from_be_bytes(body[..4].try_into().unwrap()), correlation_id);
    bytes::Bytes::from(body).slice(4..)
}
