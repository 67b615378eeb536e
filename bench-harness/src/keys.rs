//! Record keys as the workload asks: none, uniform over N keys, or Zipf over N keys.
//!
//! With idle partitions (`active_partitions` below the topic's partitions) the N keys are
//! precomputed: `key-0`, `key-1`, ... kept only when they hash (the client's partitioner,
//! [`crate::driver::partition_of_key`], the same for every driver) to an active partition,
//! with an equal share of the keys for each active partition, so the draws reach the active
//! partitions and no other.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

use crate::workload::{KeyDistribution, Workload};

/// Draws keys for one producer; the key bytes live in a reused buffer.
#[derive(Debug)]
pub struct KeyGenerator {
    choice: Choice,
    rng: SmallRng,
    buf: String,
    /// The keys to draw from when some partitions stay idle (`None`: `key-<n>`).
    active_keys: Option<Vec<Box<[u8]>>>,
}

#[derive(Debug)]
enum Choice {
    None,
    Uniform(u64),
    Zipf(Zipf<f64>),
}

impl KeyGenerator {
    /// A generator for `workload`, seeded so runs are repeatable.
    pub fn new(workload: &Workload, seed: u64) -> KeyGenerator {
        let choice = match workload.keys {
            KeyDistribution::None => Choice::None,
            KeyDistribution::Uniform => Choice::Uniform(workload.key_count.max(1)),
            KeyDistribution::Zipf => Choice::Zipf(
                Zipf::new(workload.key_count.max(1) as f64, workload.zipf_exponent)
                    .expect("checked by Workload::check"),
            ),
        };
        let active_keys = (workload.keys != KeyDistribution::None
            && workload.active_partition_count() < workload.partitions_per_topic)
            .then(|| keys_of_active_partitions(workload));
        KeyGenerator { choice, rng: SmallRng::seed_from_u64(seed), buf: String::new(), active_keys }
    }

    /// The next key, or `None` for unkeyed workloads.
    pub fn next_key(&mut self) -> Option<&[u8]> {
        use std::fmt::Write;
        let n = match &self.choice {
            Choice::None => return None,
            Choice::Uniform(count) => self.rng.random_range(0..*count),
            // Zipf samples are in 1..=count; rank 1 is the hottest key.
            Choice::Zipf(z) => z.sample(&mut self.rng) as u64 - 1,
        };
        if let Some(keys) = &self.active_keys {
            return Some(&keys[n as usize]);
        }
        self.buf.clear();
        write!(self.buf, "key-{n}").expect("write to String");
        Some(self.buf.as_bytes())
    }
}

/// `key_count` keys `key-<n>` that hash to the workload's active partitions, the same share
/// for each (the first `key_count % active` partitions get one more), in the order found.
fn keys_of_active_partitions(workload: &Workload) -> Vec<Box<[u8]>> {
    let partitions = workload.partitions_per_topic;
    let active = workload.active_partition_list();
    let key_count = workload.key_count;
    assert!(
        key_count >= active.len() as u64 && key_count <= crate::workload::ACTIVE_KEYS_MAX,
        "checked by Workload::check: {key_count} keys for {} partitions",
        active.len()
    );
    // Keys still wanted per partition (idle partitions want none).
    let mut quota = vec![0u64; partitions as usize];
    let (share, extra) = (key_count / active.len() as u64, key_count % active.len() as u64);
    for (i, &p) in active.iter().enumerate() {
        quota[p as usize] = share + u64::from((i as u64) < extra);
    }
    let mut keys = Vec::with_capacity(key_count as usize);
    let mut n = 0u64;
    while (keys.len() as u64) < key_count {
        let key = format!("key-{n}");
        let p = crate::driver::partition_of_key(key.as_bytes(), partitions) as usize;
        if quota[p] > 0 {
            quota[p] -= 1;
            keys.push(key.into_bytes().into_boxed_slice());
        }
        n += 1;
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(extra: &str) -> Workload {
        Workload::parse(&format!("name = \"k\"\n{extra}")).unwrap()
    }

    #[test]
    fn none_uniform_zipf() {
        assert!(KeyGenerator::new(&workload(""), 1).next_key().is_none());

        let mut g = KeyGenerator::new(&workload("keys = \"uniform\"\nkey_count = 4"), 1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            seen.insert(g.next_key().unwrap().to_vec());
        }
        assert_eq!(seen.len(), 4);

        let mut g = KeyGenerator::new(&workload("keys = \"zipf\"\nkey_count = 1000"), 1);
        let mut hot = 0;
        for _ in 0..10_000 {
            let k = g.next_key().unwrap();
            assert!(std::str::from_utf8(&k[4..]).unwrap().parse::<u64>().unwrap() < 1000);
            if k == b"key-0" {
                hot += 1;
            }
        }
        // With exponent 1 over 1000 keys the hottest key has ~13% of the draws.
        assert!((800..2000).contains(&hot), "hot key drawn {hot} times");
    }

    #[test]
    fn idle_partitions_get_no_keys() {
        let w = workload(
            "keys = \"uniform\"\nkey_count = 1000\npartitions_per_topic = 1000\nactive_partitions = 10",
        );
        let active = w.active_partition_list();
        let mut g = KeyGenerator::new(&w, 1);
        let mut hits = std::collections::BTreeMap::new();
        for _ in 0..20_000 {
            let p = crate::driver::partition_of_key(g.next_key().unwrap(), 1000);
            *hits.entry(p).or_insert(0u32) += 1;
        }
        assert_eq!(hits.keys().copied().collect::<Vec<_>>(), active, "exactly the active ones");
        // 100 keys each, uniform draws: every partition near 2,000.
        assert!(hits.values().all(|&n| (1500..2500).contains(&n)), "{hits:?}");
        // Every producer draws from the same keys.
        let mut other = KeyGenerator::new(&w, 2);
        assert_eq!(other.active_keys, g.active_keys);
        assert!(other.next_key().unwrap().starts_with(b"key-"));
    }
}
