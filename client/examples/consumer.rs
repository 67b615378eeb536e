//! Follows one partition from the beginning and prints each record.
//!
//! `cargo run -p client --example consumer -- 127.0.0.1:9400 orders 0`

use client::{Client, Consumer};
use wire::StartPosition;

#[tokio::main]
async fn main() -> Result<(), client::ClientError> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9400".into());
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let partition: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let client = Client::connect(&addr).await?;
    let mut consumer =
        Consumer::subscribe(&client, &topic, partition, StartPosition::Earliest, 1 << 20).await?;
    while let Some(batch) = consumer.next_batch().await? {
        for r in batch.records() {
            // Key and value borrow from the received bytes: no copy per record.
            let key = r.key().map(String::from_utf8_lossy);
            let value = r.value().map(String::from_utf8_lossy);
            println!("{partition}@{} {key:?} {value:?}", r.offset());
        }
        println!("-- position {} lag {}", consumer.position(), consumer.lag());
    }
    Ok(())
}
