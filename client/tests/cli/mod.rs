//! Runs `brokerctl` against a test broker (shared by the client's integration tests).

use std::process::{Command, Stdio};

use integration_tests::Broker;

/// `brokerctl ARGS` with `BROKER_ADDR` set to `broker`, `stdin` fed to it: (exit ok, stdout,
/// stderr).
pub fn brokerctl(broker: &Broker, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brokerctl"));
    cmd.args(args)
        .env("BROKER_ADDR", broker.public.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
