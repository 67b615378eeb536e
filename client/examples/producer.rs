//! Sends N keyed records and prints where each batch of acks landed.
//!
//! `cargo run -p client --example producer -- 127.0.0.1:9400 orders 1000`

use client::{Client, Producer, ProducerConfig};

#[tokio::main]
async fn main() -> Result<(), client::ClientError> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9400".into());
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let client = Client::connect(&addr).await?;
    if client.partition_count(&topic).await.is_err() {
        client
            .create_topic(
                &topic,
                wire::TopicConfig {
                    partition_count: 4,
                    retention_ms: -1,
                    retention_bytes: -1,
                    ..Default::default()
                },
            )
            .await?;
    }
    let producer = Producer::new(client, ProducerConfig::default());
    let mut acks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let key = format!("customer-{}", i % 10);
        let value = format!("order {i}");
        acks.push(
            producer
                .send(
                    &topic,
                    Some(key.as_bytes()),
                    Some(value.as_bytes()),
                    &[("source", b"example")],
                )
                .await?,
        );
    }
    producer.flush().await?;
    let mut last = None;
    for a in acks {
        last = Some(a.await?);
    }
    println!("sent {n} records; last at partition/offset {last:?}");
    Ok(())
}
