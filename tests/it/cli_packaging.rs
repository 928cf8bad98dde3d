//! What packaging generates from the real binary: shell completions and the man page, with no
//! config file anywhere (the build machine has none).

use std::io::Write;
use std::process::{Command, Output, Stdio};

const SUBCOMMANDS: [&str; 7] = [
    "run",
    "once",
    "check-config",
    "status",
    "audit",
    "test-slack",
    "completions",
];

/// Runs the binary with a config path that does not exist, as on a build machine.
fn run(args: &[&str]) -> Output {
    run_with(args, &[])
}

fn run_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let missing = tempfile::tempdir().expect("temp dir");
    Command::new(env!("CARGO_BIN_EXE_approval-watch"))
        .args(args)
        .env("APPROVAL_WATCH_CONFIG", missing.path().join("config.toml"))
        .env_remove("APPROVAL_WATCH_LOG_FORMAT")
        .env_remove("SOURCE_DATE_EPOCH")
        .envs(env.iter().copied())
        .output()
        .expect("run approval-watch")
}

fn stdout_of(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn bash_completion_offers_every_subcommand_without_a_config() {
    let script = stdout_of(&["completions", "bash"]);
    assert!(
        script.contains("complete -F _approval__watch") && script.ends_with("fi\n"),
        "not a bash completion script:\n{script}"
    );
    for sub in SUBCOMMANDS {
        assert!(
            script.contains(&format!(" {sub} ")) || script.contains(&format!("{sub})")),
            "bash completion lacks {sub}:\n{script}"
        );
    }
    assert!(script.contains("--dry-run"), "lacks once --dry-run");
}

#[test]
fn zsh_and_fish_completions_name_the_subcommands() {
    let zsh = stdout_of(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef approval-watch"), "zsh:\n{zsh}");
    let fish = stdout_of(&["completions", "fish"]);
    assert!(fish.contains("complete -c approval-watch"), "fish:\n{fish}");
    for sub in SUBCOMMANDS {
        assert!(zsh.contains(&format!("'{sub}:")), "zsh lacks {sub}");
        assert!(fish.contains(&format!("-a \"{sub}\"")), "fish lacks {sub}");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = run(&["completions", "cmd.exe"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cmd.exe") && stderr.contains("bash"),
        "{stderr}"
    );
}

#[test]
fn man_page_renders_without_a_config() {
    let page = stdout_of(&["man"]);
    let th = page
        .lines()
        .find(|l| l.starts_with(".TH "))
        .unwrap_or_else(|| panic!("no .TH line:\n{page}"));
    assert!(th.starts_with(".TH approval-watch 1 "), "{th}");
    assert!(th.contains(env!("CARGO_PKG_VERSION")), "no version in {th}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "man page lacks {section}:\n{page}");
    }
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!("approval\\-watch\\-{}", sub.replace('-', "\\-"))),
            "man page lacks {sub}:\n{page}"
        );
    }
    assert!(page.contains("\\-\\-config"), "man page lacks --config");
    lint(&page);
}

#[test]
fn man_page_is_dated_by_source_date_epoch() {
    // 2024-02-29T12:00:00Z: the same page from the same commit, whenever it is built.
    let first = run_with(&["man"], &[("SOURCE_DATE_EPOCH", "1709208000")]);
    let second = run_with(&["man"], &[("SOURCE_DATE_EPOCH", "1709208000")]);
    assert!(first.status.success(), "{first:?}");
    assert_eq!(first.stdout, second.stdout, "two builds differ");
    let page = String::from_utf8(first.stdout).expect("UTF-8");
    assert!(page.contains(".TH approval-watch 1 2024-02-29 "), "{page}");
}

#[test]
fn a_bad_source_date_epoch_is_named() {
    let out = run_with(&["man"], &[("SOURCE_DATE_EPOCH", "yesterday")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SOURCE_DATE_EPOCH") && stderr.contains("yesterday"),
        "{stderr}"
    );
}

/// mandoc's linter, where installed (CI installs it): any warning or error fails.
fn lint(page: &str) {
    let mut child = match Command::new("mandoc")
        .args(["-T", "lint", "-W", "warning"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("mandoc not installed: checked the roff structure only");
            return;
        }
        Err(e) => panic!("cannot run mandoc: {e}"),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("write to mandoc");
    let out = child.wait_with_output().expect("mandoc");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "mandoc -T lint: {:?}\n{report}",
        out.status
    );
}
