//! Failed authentications per source address: at most `auth.failures_per_address_max` in
//! each `auth.failure_window_ms`; past that, the address's attempts are refused (and its
//! connection closed) until the window ends.
//!
//! Contract: broker-wide (one table behind a mutex, touched only when a connection starts or
//! fails an authentication, never on the data path) and bounded by
//! `auth.failure_addresses_max` addresses: when full, expired entries go first, then the
//! oldest window. Connections without an address (in-process) are never limited.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::config::AuthConfig;

/// See the module docs.
pub struct FailureLimiter {
    failures_max: u32,
    window: Duration,
    addresses_max: usize,
    table: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailureLimiter {
    /// Empty, with the configured budget.
    pub fn new(config: &AuthConfig) -> FailureLimiter {
        FailureLimiter {
            failures_max: config.failures_per_address_max,
            window: Duration::from_millis(config.failure_window_ms),
            addresses_max: config.failure_addresses_max,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(time left)` while `ip` has used up its failures in the current window.
    pub fn blocked(&self, ip: Option<IpAddr>) -> Option<Duration> {
        let ip = ip?;
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let (start, count) = *table.get(&ip)?;
        let left = self.window.checked_sub(start.elapsed())?;
        (count >= self.failures_max).then_some(left)
    }

    /// Counts a failure of `ip`.
    pub fn record_failure(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if !table.contains_key(&ip) && table.len() >= self.addresses_max {
            let window = self.window;
            table.retain(|_, (start, _)| now.duration_since(*start) < window);
            if table.len() >= self.addresses_max {
                if let Some(oldest) = table.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| *k) {
                    table.remove(&oldest);
                }
            }
        }
        let entry = table.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_its_failures_and_the_table_stays_bounded() {
        let config = AuthConfig {
            failures_per_address_max: 3,
            failure_addresses_max: 2,
            ..AuthConfig::default()
        };
        let limiter = FailureLimiter::new(&config);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..2 {
            limiter.record_failure(Some(a));
        }
        assert!(limiter.blocked(Some(a)).is_none());
        limiter.record_failure(Some(a));
        assert!(limiter.blocked(Some(a)).is_some());
        assert!(limiter.blocked(None).is_none());
        for i in 2..10 {
            limiter.record_failure(Some(format!("10.0.0.{i}").parse().unwrap()));
        }
        assert!(limiter.table.lock().unwrap().len() <= 2);
    }
}
