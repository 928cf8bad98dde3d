//! Runs one test alone in a child process of this test binary. For the rare test that must set
//! the process environment (the AWS SDK's default credential chain reads it): every other test
//! shares this process, so setting it here would change what they read.

use std::process::Command;

/// Set in the child to the name of the test it runs.
const CHILD_MARK: &str = "APPROVAL_WATCH_IT_ALONE";

/// True when this process is the child started by [`run_alone`] for `test`.
pub fn is_alone(test: &str) -> bool {
    std::env::var(CHILD_MARK).is_ok_and(|name| name == test)
}

/// Runs `test` (its path inside the binary, e.g. `accounts::some_test`) in a child of this test
/// binary, alone; panics with its output unless it ran and passed.
pub fn run_alone(test: &str) {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_MARK, test)
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{test} failed in its own process:\n{stdout}\n{stderr}"
    );
    // A renamed test would otherwise match nothing and "pass".
    assert!(
        stdout.contains("1 passed"),
        "{test} did not run in its own process:\n{stdout}\n{stderr}"
    );
}
