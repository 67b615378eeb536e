//! A wait bounded in time: a future's output, or a given value once a limit passed.
//!
//! Contract: the timer is armed only when the future is pending at its first poll (a wait
//! already done takes none), and a future that is ready wins over a timer that fired in the
//! same poll. Dropping the wait drops the future (whatever it held is given back).

use std::future::Future;
use std::time::{Duration, Instant};

use futures_lite::future;

/// `wait`'s output, or `timed_out()`'s once `limit` passed.
pub async fn or_after<T>(
    limit: Duration,
    wait: impl Future<Output = T>,
    timed_out: impl FnOnce() -> T,
) -> T {
    future::or(wait, async move {
        glommio::timer::sleep(limit).await;
        timed_out()
    })
    .await
}

/// `wait`'s output, or `timed_out()`'s once `deadline` passed (no deadline: `wait`'s).
pub async fn or_at<T>(
    deadline: Option<Instant>,
    wait: impl Future<Output = T>,
    timed_out: impl FnOnce() -> T,
) -> T {
    match deadline {
        None => wait.await,
        Some(d) => {
            future::or(wait, async move {
                glommio::timer::sleep(d.saturating_duration_since(Instant::now())).await;
                timed_out()
            })
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use wire::ErrorCode;

    use super::*;

    #[test]
    fn every_wait_of_a_request_ends_at_its_one_deadline() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let start = Instant::now();
                let deadline = Some(start + Duration::from_millis(300));
                // Two partitions that never ack, waited for one after the other.
                let never = || future::pending::<Result<(), ErrorCode>>();
                for _ in 0..2 {
                    let r = or_at(deadline, never(), || Err(ErrorCode::Timeout)).await;
                    assert_eq!(r, Err(ErrorCode::Timeout));
                }
                let took = start.elapsed();
                assert!(took >= Duration::from_millis(300), "not before the deadline: {took:?}");
                assert!(took < Duration::from_millis(550), "one deadline, not one each: {took:?}");
                // Past the deadline, a wait that is done still answers with its own output.
                assert_eq!(
                    or_at(deadline, future::ready(Ok(())), || Err(ErrorCode::Timeout)).await,
                    Ok(())
                );
                assert_eq!(or_at(None, future::ready(7), || 0).await, 7);
            })
            .expect("executor")
            .join()
            .expect("test executor");
    }
}
