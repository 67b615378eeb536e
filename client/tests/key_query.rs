//! Query by key and time range against the real broker: every record of one key with a
//! timestamp in the range, in offset order, paged, with and without the key index.

use client::Client;
use integration_tests::Broker;
use wire::{AckLevel, BatchBuilder, ExpectedPosition, TopicConfig};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn a_keys_records_in_a_time_range_come_back_in_offset_order() {
    let broker = Broker::start(2);
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let client = Client::connect(&addr).await.unwrap();
        let config = TopicConfig { partition_count: 1, ..Default::default() };
        client.create_topic("events", config).await.unwrap();
        // 40 batches of 25 records, keys a..e interleaved, timestamps rising by 10 ms.
        let mut stored: Vec<(String, i64, String, u64)> = Vec::new();
        let t0 = 1_700_000_000_000i64;
        for b in 0..40 {
            let mut batch = BatchBuilder::new(1 << 20);
            let mut pending = Vec::new();
            for i in 0..25 {
                let n = b * 25 + i;
                let key = ["a", "b", "c", "d", "e"][(n * 7 % 5) as usize];
                let ts = t0 + n * 10;
                let value = format!("{key}-{n}");
                batch
                    .append(
                        ts,
                        Some(key.as_bytes()),
                        Some(value.as_bytes()),
                        &[("n", value.as_bytes())],
                    )
                    .unwrap();
                pending.push((key.to_owned(), ts, value));
            }
            let r = client
                .produce_batches("events", 0, &batch.finish().unwrap(), AckLevel::Durable)
                .await
                .unwrap();
            let base = r.base_offset as u64;
            stored.extend(
                pending.into_iter().enumerate().map(|(i, (k, ts, v))| (k, ts, v, base + i as u64)),
            );
        }
        let want = |key: &str, from: i64, to: i64| -> Vec<(u64, String)> {
            stored
                .iter()
                .filter(|(k, ts, _, _)| k == key && (from..=to).contains(ts))
                .map(|(_, _, v, o)| (*o, v.clone()))
                .collect()
        };
        let got = |records: Vec<wire::TableEntry>| -> Vec<(u64, String)> {
            records.into_iter().map(|e| (e.offset, String::from_utf8(e.value).unwrap())).collect()
        };
        let (from, to) = (t0 + 2_000, t0 + 6_000);
        let all = client.query_key("events", b"c", from, to, 10_000).await.unwrap();
        assert!(all.iter().all(|e| e.headers.len() == 1 && e.headers[0].value == e.value));
        assert_eq!(got(all), want("c", from, to));
        assert_eq!(want("c", from, to).len(), 80);
        // Paged: the first 5 only.
        let five = client.query_key("events", b"c", from, to, 5).await.unwrap();
        assert_eq!(got(five), want("c", from, to)[..5].to_vec());
        // Edges: the whole stream, an empty range, a key never written.
        assert_eq!(
            got(client.query_key("events", b"a", i64::MIN, i64::MAX, 10_000).await.unwrap()).len(),
            200
        );
        assert!(client.query_key("events", b"a", to, from, 10).await.unwrap().is_empty());
        assert!(client
            .query_key("events", b"zz", i64::MIN, i64::MAX, 10)
            .await
            .unwrap()
            .is_empty());
        // With the key index built (a key-conditional append builds it), the answers are the same.
        let mut one = BatchBuilder::new(1 << 16);
        one.append(t0 + 20_000, Some(b"f"), Some(b"f-0"), &[]).unwrap();
        let expect = ExpectedPosition::KeyNeverWritten;
        client
            .produce_expecting("events", 0, &one.finish().unwrap(), AckLevel::Durable, expect)
            .await
            .unwrap();
        let again = client.query_key("events", b"c", from, to, 10_000).await.unwrap();
        assert_eq!(got(again), want("c", from, to));
        assert!(client
            .query_key("events", b"zz", i64::MIN, i64::MAX, 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            client.query_key("events", b"f", i64::MIN, i64::MAX, 10).await.unwrap().len(),
            1
        );
    });
}
