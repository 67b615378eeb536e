//! The harness end to end: the real `bench-harness` binary runs the smoke workload against a
//! broker it spawns itself (and against a spawned nats-server when one is installed), and the
//! JSON it writes adds up.

use std::path::{Path, PathBuf};
use std::process::Command;

use bench_harness::RunResult;

fn workload(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads").join(format!("{name}.toml"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("harness-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn harness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bench-harness"))
}

/// Runs the smoke workload with `--spawn` (and `extra` arguments) and returns the parsed
/// result.
fn run_smoke(driver: &str, server_bin: &Path, dir: &Path, extra: &[String]) -> RunResult {
    let out = dir.join("out");
    let output = harness()
        .args(["run", workload("smoke").to_str().unwrap(), "--driver", driver, "--spawn"])
        .args(extra)
        .arg("--server-bin")
        .arg(server_bin)
        .arg("--spawn-dir")
        .arg(dir)
        .arg("--out")
        .arg(&out)
        .args(["--no-progress", "--check"])
        .output()
        .unwrap();
    let text = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "harness run failed\n{text}");
    let json = out.join(format!("smoke-{driver}.json"));
    let html = std::fs::read_to_string(out.join(format!("smoke-{driver}.html"))).unwrap();
    assert!(html.contains("<svg") && html.contains("Publish latency"), "{text}");
    RunResult::load(&json).unwrap()
}

/// What every run of the smoke workload (2,000 msg/s, 0.5 s warm-up, 2 s measured) must show.
fn check_smoke(r: &RunResult) {
    r.check_consistent().unwrap();
    let t = &r.totals;
    assert!(t.sent > 0 && t.sent == t.acked && t.acked == t.consumed, "{t:?}");
    assert_eq!(t.publish_errors, 0);
    // Paced sends have fixed intended times: the measured window holds exactly rate × duration
    // messages however slow the machine is (a slow machine shows up as latency instead).
    let expected = (r.workload.producer_rate_msgs_per_s as f64 * r.workload.duration_s) as u64;
    assert!(
        r.publish.messages.abs_diff(expected) <= 2,
        "{} measured, {expected} expected",
        r.publish.messages
    );
    assert_eq!(r.publish.bytes, r.publish.messages * r.workload.message_bytes as u64);
    assert!((r.publish.msgs_per_s - 2000.0).abs() < 5.0, "{}", r.publish.msgs_per_s);
    // Everything sent during warm-up + window arrived; the consumers saw the window's share.
    assert!(t.sent >= expected, "{t:?}");
    let e2e = r.end_to_end_latency.as_ref().expect("live consumers measure end-to-end latency");
    assert!(e2e.count > 0 && e2e.count <= t.consumed);
    assert_eq!(r.publish_latency.count, r.publish.messages);
    // The serialized histograms decode to the same counts.
    assert_eq!(r.publish_latency.histogram().unwrap().len(), r.publish_latency.count);
    assert_eq!(e2e.histogram().unwrap().len(), e2e.count);
    assert!(!r.timeline.is_empty());
    assert!(!r.environment.kernel.is_empty() && r.environment.cores > 0);
    // A spawned server's pid is known: its CPU time and the harness's are measured.
    for p in [r.cpu.server.as_ref().expect("server CPU"), r.cpu.harness.as_ref().expect("own CPU")]
    {
        assert!(p.cpu_s > 0.0 && p.window_s > 1.5, "{p:?}");
        let per_gb = p.cpu_s / (r.publish.bytes as f64 / 1e9);
        let got = p.cpu_s_per_gb_produced.expect("CPU-s per GB produced");
        assert!((got - per_gb).abs() <= per_gb * 1e-9, "{p:?} vs {per_gb}");
        assert!(p.cpu_s_per_gb_consumed.is_some() && p.rss_bytes.is_some(), "{p:?}");
    }
    assert_eq!(r.pinning.server_pid, Some(r.cpu.server.as_ref().unwrap().pid));
}

/// `--server-cpus LAST --client-cpus FIRST` when this process may use two CPUs or more.
fn pinning_args() -> Option<(String, String)> {
    let allowed = bench_harness::affinity::allowed(0).unwrap();
    match allowed.cpus() {
        [first, .., last] => Some((last.to_string(), first.to_string())),
        _ => None,
    }
}

#[test]
fn smoke_against_a_spawned_broker_adds_up_and_compares() {
    let dir = scratch("broker");
    let pinning = pinning_args();
    let extra: Vec<String> = match &pinning {
        Some((server, client)) => {
            vec!["--server-cpus".into(), server.clone(), "--client-cpus".into(), client.clone()]
        }
        None => vec![],
    };
    let r = run_smoke("broker", &integration_tests::broker_binary(), &dir, &extra);
    check_smoke(&r);
    assert_eq!(r.driver, "broker");
    if let Some((server, client)) = pinning {
        // Every thread of the server, and of the harness, ran on its own CPU.
        let p = &r.pinning;
        assert_eq!(
            (p.server_cpus.as_deref(), p.client_cpus.as_deref()),
            (Some(&*server), Some(&*client))
        );
        let threads = |t: &Option<String>, cpu: &str| {
            let t = t.as_deref().unwrap();
            assert!(t.starts_with(&format!("{cpu} (")) && !t.contains(';'), "{t}");
        };
        threads(&p.server_threads, &server);
        threads(&p.harness_threads, &client);
    }

    // compare renders the result against itself: ratios of 1.
    let json = dir.join("out").join("smoke-broker.json");
    let html = dir.join("compare.html");
    let output =
        harness().arg("compare").arg(&json).arg(&json).arg("--out").arg(&html).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("1.00×"), "{table}");
    assert!(std::fs::read_to_string(&html).unwrap().matches("<polyline").count() >= 4);

    // summary finds the result and says which targets it could not judge.
    let output = harness().arg("summary").arg("--results").arg(dir.join("out")).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary = std::fs::read_to_string(dir.join("out").join("summary.md")).unwrap();
    assert!(
        summary.contains("broker · smoke") && summary.contains("fio: not measured"),
        "{summary}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn smoke_against_a_spawned_nats_server_when_installed() {
    let Some(nats) = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        eprintln!("skipped: nats-server is not installed (apt-get install nats-server)");
        return;
    };
    let dir = scratch("nats");
    let r = run_smoke("nats", &nats, &dir, &[]);
    check_smoke(&r);
    assert!(r.server_version.starts_with("nats-server"), "{}", r.server_version);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = scratch("bad");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "name = \"bad\"\nmessage_bytes = 4\n").unwrap();
    let output = harness().arg("run").arg(&bad).output().unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("message_bytes must be at least 16"), "{err}");

    let output = harness()
        .args([
            "run",
            workload("smoke").to_str().unwrap(),
            "--broker",
            "127.0.0.1:1",
            "--no-progress",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("cannot reach broker at 127.0.0.1:1"), "{err}");

    // Without a server address the Iggy driver is skipped with a message, not an error.
    let output = harness()
        .args(["run", workload("smoke").to_str().unwrap(), "--driver", "iggy"])
        .env_remove("IGGY_ADDR")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("iggy skipped"));

    // Pinning a server whose process is unknown, or to CPUs that do not exist, is refused.
    let smoke = workload("smoke");
    for (args, expected) in [
        (vec!["--server-cpus", "0"], "--server-cpus needs --spawn or --server-pid"),
        (vec!["--client-cpus", "1023"], "are not available"),
        (vec!["--client-cpus", "2-1"], "runs backwards"),
    ] {
        let output = harness()
            .args(["run", smoke.to_str().unwrap(), "--no-progress"])
            .args(&args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
