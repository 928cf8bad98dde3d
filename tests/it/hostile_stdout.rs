//! stdout that cannot be written: full (`> /dev/full`) or a pipe whose reader has gone
//! (`| head -0`). A full stdout is one line on stderr and exit 1; a closed pipe ends the
//! command quietly with exit 0, as other Unix tools do. Never a panic, in any command.

use crate::support;

use std::process::{Command, Stdio};

use support::runner::{assert_no_secret, binary_path, strip_ansi};
use support::{Fixture, World};

/// Every command that prints on stdout.
const COMMANDS: [&[&str]; 5] = [
    &["status"],
    &["status", "--json"],
    &["check-config"],
    &["test-slack"],
    &["once", "--dry-run"],
];

struct Ran {
    code: Option<i32>,
    stderr: String,
}

/// Runs a command with `stdout` as given, at the default log level (what a person sees).
fn run_with_stdout(w: &World, args: &[&str], stdout: Stdio) -> Ran {
    let mut cmd = Command::new(binary_path());
    cmd.arg("--config")
        .arg(&w.env.config_path)
        .args(args)
        .env_clear()
        // The runner points the SDK at missing config files, which it warns about; HOME is
        // an empty directory, so without them there is nothing to warn about.
        .envs(w.env.env.iter().filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "RUST_LOG" | "AWS_CONFIG_FILE" | "AWS_SHARED_CREDENTIALS_FILE"
            )
        }))
        .current_dir(w.env.dir.path())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped());
    let out = cmd.output().expect("run approval-watch");
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert_no_secret(&format!("stderr of {args:?}"), &stderr);
    Ran {
        code: out.status.code(),
        stderr,
    }
}

async fn world() -> World {
    let w = World::start(&["web-app"]).await;
    // Something for every command to print: a waiting approval recorded, one more to send.
    w.aws.set_state("web-app", Fixture::Waiting);
    w.env.once().await.assert_code(0);
    w.aws.set_waiting("web-app", "a-new-token-for-the-dry-run");
    w
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_stdout_is_one_line_on_stderr_and_exit_1() {
    let w = world().await;
    for args in COMMANDS {
        let full = std::fs::File::options()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let ran = run_with_stdout(&w, args, Stdio::from(full));
        assert_eq!(ran.code, Some(1), "{args:?}\n{}", ran.stderr);
        assert!(!ran.stderr.contains("panicked"), "{args:?}\n{}", ran.stderr);
        let lines: Vec<&str> = ran.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}\n{}", ran.stderr);
        assert!(
            lines[0].contains("ERROR") && lines[0].contains("cannot write to stdout"),
            "{args:?}: {}",
            lines[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stdout_whose_reader_went_away_ends_the_command_quietly() {
    let w = world().await;
    for args in COMMANDS {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let ran = run_with_stdout(&w, args, Stdio::from(writer));
        assert_eq!(ran.code, Some(0), "{args:?}\n{}", ran.stderr);
        assert_eq!(ran.stderr, "", "{args:?}");
    }
}
