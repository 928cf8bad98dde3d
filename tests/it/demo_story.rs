//! The README's first command, `cargo run --example demo`, tells its story: the demo checks
//! each step's Slack messages itself and exits non-zero when one does not happen.

use std::path::PathBuf;
use std::process::Command;

/// `cargo test` builds the examples next to the test binaries: target/<profile>/examples/.
fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    profile_dir.join("examples").join("demo")
}

#[test]
fn the_demo_tells_its_whole_story() {
    let demo = demo_binary();
    assert!(
        demo.is_file(),
        "{} is missing: run the whole `cargo test` (it builds the examples)",
        demo.display()
    );
    let out = Command::new(&demo)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for step in 1..=7 {
        assert!(stdout.contains(&format!("── step {step}:")), "{stdout}");
    }
    assert_eq!(stdout.matches("┌─ Slack message").count(), 7, "{stdout}");
    assert!(
        stdout.contains("would now list 3 waiting approval"),
        "{stdout}"
    );
}
