//! The audit log: one `tracing` line with target `audit` per admin operation (users, ACLs,
//! topics and tables created or deleted) and per denial, with the principal, operation,
//! resource and outcome.
//!
//! Contract: broker-wide at most `auth.audit_lines_per_s_max` lines per second (two atomics,
//! no lock); lines past it are counted and the count goes out with the next line
//! (`suppressed`), so a client hammering a denied resource cannot flood the log.

use std::sync::atomic::{AtomicU64, Ordering};

/// See the module docs.
pub struct Audit {
    lines_per_s_max: u64,
    /// `second << 32 | lines in that second`.
    window: AtomicU64,
    suppressed: AtomicU64,
}

impl Audit {
    /// With a budget of `lines_per_s_max` lines per second.
    pub fn new(lines_per_s_max: u32) -> Audit {
        Audit {
            lines_per_s_max: lines_per_s_max as u64,
            window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    fn admit(&self) -> bool {
        let now_s = (crate::clock::now_ms().max(0) as u64 / 1000) & 0xffff_ffff;
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (second, lines) = (current >> 32, current & 0xffff_ffff);
            let next =
                if second == now_s { (now_s << 32) | (lines + 1) } else { (now_s << 32) | 1 };
            if second == now_s && lines >= self.lines_per_s_max {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// Logs one decision (see the module docs).
    pub fn record(
        &self,
        principal: &str,
        operation: &str,
        resource: &dyn std::fmt::Display,
        allowed: bool,
    ) {
        if !self.admit() {
            return;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        let outcome = if allowed { "allowed" } else { "denied" };
        tracing::info!(
            target: "audit",
            principal,
            operation,
            resource = %resource,
            outcome,
            suppressed,
            "audit"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_budget_are_counted_not_logged() {
        let audit = Audit::new(3);
        let admitted = (0..10).filter(|_| audit.admit()).count();
        // A second boundary may fall in between: at most two windows' worth.
        assert!((3..=6).contains(&admitted), "{admitted}");
        assert_eq!(audit.suppressed.load(Ordering::Relaxed) as usize, 10 - admitted);
    }
}
