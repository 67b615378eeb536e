//! The shard executor never parks while a task is runnable (the `vendor/glommio` patch).
//!
//! glommio 0.9.0 arms a preempt timer (1 ms for the broker's latency-sensitive `requests`
//! queue) right before it runs the task queues; when that timer had already fired by the
//! time the first queue was to run (the thread was descheduled for a millisecond: any CPU
//! contention), the executor ran nothing, reported "nothing ran" and parked in
//! `io_uring_enter` with the woken tasks still queued, until some I/O completion or timer
//! happened to wake it. A partition's writer woken by a produce then sat queued, and its
//! `written` ack with it: for as long as the shard had nothing else in flight, up to the
//! produce timeout (`docs/notes/written-ack-stall.md`). A 1 ns preempt timer makes that
//! window certain: before the patch these runs stop making progress at once.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Runs `body` on its own thread; fails if it does not finish within `within`.
fn finishes_within(within: Duration, body: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        body();
        let _ = tx.send(());
    });
    rx.recv_timeout(within).expect("the executor stopped making progress with runnable work");
    worker.join().expect("executor thread");
}

#[test]
fn an_executor_whose_preempt_timer_already_fired_still_runs_its_tasks() {
    finishes_within(Duration::from_secs(20), || {
        let ex = glommio::LocalExecutorBuilder::default()
            .preempt_timer(Duration::from_nanos(1))
            .make()
            .expect("executor");
        for _ in 0..1_000 {
            ex.run(async {});
        }
    });
}

#[test]
fn a_task_woken_in_a_latency_queue_runs_although_the_preempt_timer_fired_first() {
    // The broker's shape: a latency-sensitive queue where one task (a produce) wakes
    // another (the partition's writer) through a channel, many times over.
    finishes_within(Duration::from_secs(20), || {
        let ex = glommio::LocalExecutorBuilder::default()
            .preempt_timer(Duration::from_nanos(1))
            .make()
            .expect("executor");
        ex.run(async {
            let requests = glommio::executor().create_task_queue(
                glommio::Shares::Static(1000),
                glommio::Latency::Matters(Duration::from_millis(1)),
                "requests",
            );
            let (tx, rx) = glommio::channels::local_channel::new_bounded::<u32>(1);
            let writer = glommio::spawn_local_into(
                async move {
                    let mut n = 0;
                    while rx.recv().await.is_some() {
                        n += 1;
                    }
                    n
                },
                requests,
            )
            .expect("requests queue");
            let producer = glommio::spawn_local_into(
                async move {
                    for i in 0..10_000 {
                        tx.send(i).await.expect("writer alive");
                    }
                },
                requests,
            )
            .expect("requests queue");
            producer.await;
            assert_eq!(writer.await, 10_000);
        });
    });
}
