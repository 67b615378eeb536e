//! What the authorization check (`auth/authorize.rs`) costs a produce request, next to what
//! the produce path already does with the same request at ingress (validate the body and the
//! batch). Criterion, in process, no I/O.
//!
//! Cases, for a request with one 16 KiB batch (100 records of 160 bytes) on one topic:
//! - `off`: authentication off (the default with no users);
//! - `superuser`: required, a superuser (no ACL lookup);
//! - `acl_cached`: required, a user allowed by a prefix rule among 200 rules, the decision
//!   cached on the connection (every request after the first);
//! - `acl_uncached`: the same with a new session each time (the first request of a
//!   connection, or the first after an ACL change): the rules are scanned;
//! - `ingress_validation`: for scale, `access_body` + `BatchView::validate` of the request,
//!   which every produce pays anyway.
//!
//! Run: `cargo bench -p broker --bench authorize`.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;

use broker::auth::acl::{Acl, Operation, ResourceKind};
use broker::auth::store::{Security, StoredCredential, User};
use broker::auth::{AuthConfig, AuthMode, Session};
use broker::request::Request;
use criterion::{criterion_group, criterion_main, Criterion};
use wire::constants::FRAME_HEADER_BYTES;
use wire::{BatchBuilder, FrameHeader, ProducePartition, ProduceRequest, ProduceTopic};

fn security(dir: &std::path::Path, mode: AuthMode) -> std::sync::Arc<Security> {
    std::fs::create_dir_all(dir).unwrap();
    let config = AuthConfig { mode, ..AuthConfig::default() };
    let security = Security::open(dir, &config).unwrap();
    let salt = [7u8; 16];
    let cred = wire::scram::Credential::derive(wire::scram::Mechanism::Sha256, b"pw", &salt, 4096);
    for (name, superuser) in [("admin", true), ("alice", false)] {
        let user = User { superuser, credentials: vec![StoredCredential::new(&cred)] };
        security.upsert_user(name, user).unwrap();
    }
    security
        .change(|s| {
            for i in 0..199 {
                s.acls.insert(Acl {
                    principal: format!("user-{i}"),
                    resource: ResourceKind::Topic,
                    name: format!("topic-{i}"),
                    operation: Operation::Read,
                    deny: false,
                });
            }
            s.acls.insert(Acl {
                principal: "alice".into(),
                resource: ResourceKind::TopicPrefix,
                name: "bench-".into(),
                operation: Operation::Write,
                deny: false,
            });
            Ok(())
        })
        .unwrap();
    security
}

fn produce_request() -> Request {
    let mut b = BatchBuilder::new(1 << 20);
    for i in 0..100u32 {
        b.append(i64::from(i), Some(&i.to_le_bytes()), Some(&[b'x'; 160]), &[]).unwrap();
    }
    let batch = b.finish().unwrap().to_vec();
    let req = ProduceRequest {
        topics: vec![ProduceTopic {
            name: "bench-0".into(),
            partitions: vec![ProducePartition {
                partition: 0,
                batches: batch,
                ..Default::default()
            }],
        }],
        ..Default::default()
    };
    let frame = wire::encode_request(1, &req).unwrap();
    let header =
        FrameHeader::decode(frame[..FRAME_HEADER_BYTES].try_into().unwrap(), u32::MAX).unwrap();
    Request::checked(header, frame)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let required = security(&dir.path().join("required"), AuthMode::Required);
    let off = security(&dir.path().join("off"), AuthMode::Off);
    let req = produce_request();
    let generation = required.generation();
    let mut g = c.benchmark_group("authorize_produce");
    g.bench_function("off", |b| {
        let session = Session::new(None);
        b.iter(|| {
            black_box(broker::auth::authorize::check(&off, &session, black_box(&req)).is_ok())
        })
    });
    g.bench_function("superuser", |b| {
        let session = Session::new(None);
        session.set_authenticated("admin", true, generation);
        b.iter(|| {
            black_box(broker::auth::authorize::check(&required, &session, black_box(&req)).is_ok())
        })
    });
    g.bench_function("acl_cached", |b| {
        let session = Session::new(None);
        session.set_authenticated("alice", false, generation);
        assert!(broker::auth::authorize::check(&required, &session, &req).is_ok());
        b.iter(|| {
            black_box(broker::auth::authorize::check(&required, &session, black_box(&req)).is_ok())
        })
    });
    g.bench_function("acl_uncached", |b| {
        b.iter(|| {
            let session = Session::new(None);
            session.set_authenticated("alice", false, generation);
            black_box(broker::auth::authorize::check(&required, &session, black_box(&req)).is_ok())
        })
    });
    g.bench_function("ingress_validation", |b| {
        b.iter(|| {
            let body = wire::access_body::<ProduceRequest>(black_box(req.body())).unwrap();
            let batches = &body.topics[0].partitions[0].batches;
            black_box(wire::BatchView::validate(batches).is_ok())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
