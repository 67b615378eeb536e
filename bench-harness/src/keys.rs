//! Record keys as the workload asks: none, uniform over N keys, or Zipf over N keys.

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
        KeyGenerator { choice, rng: SmallRng::seed_from_u64(seed), buf: String::new() }
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
        self.buf.clear();
        write!(self.buf, "key-{n}").expect("write to String");
        Some(self.buf.as_bytes())
    }
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
}
