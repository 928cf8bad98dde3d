//! Runs the real `approval-watch` binary against the fakes: a temp dir holding `config.toml` and
//! the state database, a clean environment, captured stdout/stderr/exit code.
//!
//! Every output captured here is checked for the webhook secret: no command may ever print it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::fake_slack::WEBHOOK_SECRET;

/// How long a one-shot command may take before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `run` may take to exit after a signal.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// The binary under test. Integration tests get it from Cargo; an example including this module
/// finds it beside its own executable's folder (`target/debug/examples/..` → `target/debug/`).
/// `APPROVAL_WATCH_TEST_BIN` overrides both (a long soak runs a copy, so rebuilds meanwhile do
/// not swap the binary under it).
pub fn binary_path() -> PathBuf {
    if let Some(p) = std::env::var_os("APPROVAL_WATCH_TEST_BIN") {
        return PathBuf::from(p);
    }
    if let Some(p) = option_env!("CARGO_BIN_EXE_approval-watch") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("examples") || dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(format!("approval-watch{}", std::env::consts::EXE_SUFFIX))
}

/// Removes ANSI escape sequences (colours from the log formatter).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Panics if `text` contains the webhook secret.
pub fn assert_no_secret(what: &str, text: &str) {
    for candidate in [text.to_owned(), strip_ansi(text)] {
        if let Some(pos) = candidate.find(WEBHOOK_SECRET) {
            let start = candidate[..pos]
                .char_indices()
                .rev()
                .nth(120)
                .map_or(0, |(i, _)| i);
            let end = (pos + WEBHOOK_SECRET.len() + 40).min(candidate.len());
            let end = (end..=candidate.len())
                .find(|i| candidate.is_char_boundary(*i))
                .unwrap_or(candidate.len());
            panic!(
                "the webhook secret appears in {what}: …{}…",
                &candidate[start..end]
            );
        }
    }
}

/// What a finished command left.
#[derive(Debug, Clone)]
pub struct Output {
    pub args: Vec<String>,
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    fn checked(self) -> Self {
        assert_no_secret(&format!("stdout of {:?}", self.args), &self.stdout);
        assert_no_secret(&format!("stderr of {:?}", self.args), &self.stderr);
        self
    }

    /// The exit code; -1 when killed by a signal.
    pub fn code(&self) -> i32 {
        self.code.unwrap_or(-1)
    }

    /// stderr without colour codes.
    pub fn stderr_plain(&self) -> String {
        strip_ansi(&self.stderr)
    }

    pub fn stdout_plain(&self) -> String {
        strip_ansi(&self.stdout)
    }

    /// stdout and stderr together, without colour codes.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout_plain(), self.stderr_plain())
    }

    /// Panics (showing both streams) unless the exit code is `expected`.
    #[track_caller]
    pub fn assert_code(&self, expected: i32) -> &Self {
        if self.code != Some(expected) {
            panic!(
                "expected exit code {expected}, got {:?}\n{}",
                self.code,
                self.describe()
            );
        }
        self
    }

    /// Panics unless `needle` occurs in stdout or stderr (case-insensitive).
    #[track_caller]
    pub fn assert_mentions(&self, needle: &str) -> &Self {
        if !self
            .all_output()
            .to_lowercase()
            .contains(&needle.to_lowercase())
        {
            panic!("output does not mention {needle:?}\n{}", self.describe());
        }
        self
    }

    /// Lines of stderr (colour codes removed) that contain every one of `needles`.
    pub fn stderr_lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.stderr_plain()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
            .collect()
    }

    /// A readable dump for panic messages (stderr cut to its last 6000 characters).
    pub fn describe(&self) -> String {
        let stderr = self.stderr_plain();
        let tail = if stderr.len() > 6000 {
            let mut cut = stderr.len() - 6000;
            while !stderr.is_char_boundary(cut) {
                cut += 1;
            }
            format!("…{}", &stderr[cut..])
        } else {
            stderr
        };
        format!(
            "command: approval-watch {}\nexit: {:?} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            self.elapsed,
            self.stdout_plain(),
            tail
        )
    }
}

/// Where the webhook URL comes from in the written config.
#[derive(Debug, Clone)]
pub enum WebhookSource {
    /// `webhook_url_env = VAR`; the runner sets VAR to the URL unless `url` is `None`.
    Env { var: String, url: Option<String> },
    /// `webhook_url_file = PATH` (the file is written by `TestEnv::write_config` if `url` is some).
    File { path: PathBuf, url: Option<String> },
    /// `webhook_url = URL`.
    Inline(String),
    /// No `[slack]` source at all.
    Nothing,
}

/// The config file the runner writes.
#[derive(Debug, Clone)]
pub struct ConfigSpec {
    pub poll_interval: String,
    /// `idle_poll_interval`; `None` writes `poll_interval` again, so every pipeline is read
    /// every cycle (tests of adaptive polling set it).
    pub idle_poll_interval: Option<String>,
    pub state_path: PathBuf,
    pub region: Option<String>,
    /// `[aws] endpoint_url` (the runner prefers `AWS_ENDPOINT_URL`, so normally `None`).
    pub endpoint_url: Option<String>,
    pub webhook: WebhookSource,
    pub pipelines: Vec<String>,
    /// Raw TOML lines for the top level (before any table).
    pub extra_top: String,
    /// Raw TOML lines inside `[slack]`.
    pub extra_slack: String,
    /// Raw TOML for a `[reminders]` table body, if any.
    pub reminders: Option<String>,
}

fn toml_str(s: &str) -> String {
    // A TOML basic string; serde_json's escaping is valid TOML for what the tests write.
    serde_json::to_string(s).unwrap()
}

impl ConfigSpec {
    pub fn to_toml(&self) -> String {
        let mut t = String::new();
        t.push_str(&format!(
            "poll_interval = {}\n",
            toml_str(&self.poll_interval)
        ));
        t.push_str(&format!(
            "idle_poll_interval = {}\n",
            toml_str(
                self.idle_poll_interval
                    .as_ref()
                    .unwrap_or(&self.poll_interval)
            )
        ));
        t.push_str(&format!(
            "state_path = {}\n",
            toml_str(&self.state_path.display().to_string())
        ));
        t.push_str(&self.extra_top);
        if !self.extra_top.is_empty() && !self.extra_top.ends_with('\n') {
            t.push('\n');
        }
        t.push_str("\n[aws]\n");
        if let Some(r) = &self.region {
            t.push_str(&format!("region = {}\n", toml_str(r)));
        }
        if let Some(e) = &self.endpoint_url {
            t.push_str(&format!("endpoint_url = {}\n", toml_str(e)));
        }
        t.push_str("\n[slack]\n");
        match &self.webhook {
            WebhookSource::Env { var, .. } => {
                t.push_str(&format!("webhook_url_env = {}\n", toml_str(var)))
            }
            WebhookSource::File { path, .. } => t.push_str(&format!(
                "webhook_url_file = {}\n",
                toml_str(&path.display().to_string())
            )),
            WebhookSource::Inline(url) => t.push_str(&format!("webhook_url = {}\n", toml_str(url))),
            WebhookSource::Nothing => {}
        }
        t.push_str(&self.extra_slack);
        if !self.extra_slack.is_empty() && !self.extra_slack.ends_with('\n') {
            t.push('\n');
        }
        if let Some(r) = &self.reminders {
            t.push_str("\n[reminders]\n");
            t.push_str(r);
            t.push('\n');
        }
        for p in &self.pipelines {
            t.push_str(&format!("\n[[pipeline]]\nname = {}\n", toml_str(p)));
        }
        t
    }
}

/// A temp dir with a config and a state path, and the environment the binary runs with.
pub struct TestEnv {
    pub dir: TempDir,
    pub config_path: PathBuf,
    pub state_path: PathBuf,
    pub spec: ConfigSpec,
    /// The whole environment of the child (it starts from an empty one).
    pub env: BTreeMap<String, String>,
    /// A command the binary runs under (`prlimit --nofile=256:256 --`), which execs it: the
    /// child's pid is the binary's. Empty: the binary itself.
    pub wrapper: Vec<String>,
}

impl TestEnv {
    /// A config for `pipelines` polled every 1s, the webhook URL in `SLACK_WEBHOOK_URL`,
    /// `AWS_ENDPOINT_URL` pointing at `aws_endpoint`. Writes the config file.
    pub fn new(aws_endpoint: &str, slack_url: &str, pipelines: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("approval-watch-test")
            .tempdir()
            .expect("temp dir");
        let config_path = dir.path().join("config.toml");
        let state_path = dir.path().join("state.db");
        let mut env = BTreeMap::new();
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", aws_endpoint),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("RUST_LOG", "debug"),
            ("RUST_BACKTRACE", "1"),
        ] {
            env.insert(k.to_owned(), v.to_owned());
        }
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("home dir");
        env.insert(
            "AWS_CONFIG_FILE".into(),
            dir.path().join("no-such-aws-config").display().to_string(),
        );
        env.insert(
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            dir.path()
                .join("no-such-aws-credentials")
                .display()
                .to_string(),
        );
        env.insert("HOME".into(), home.display().to_string());
        let spec = ConfigSpec {
            poll_interval: "1s".into(),
            idle_poll_interval: None,
            state_path: state_path.clone(),
            region: Some("us-east-1".into()),
            endpoint_url: None,
            webhook: WebhookSource::Env {
                var: "SLACK_WEBHOOK_URL".into(),
                url: Some(slack_url.to_owned()),
            },
            pipelines: pipelines.iter().map(|p| (*p).to_owned()).collect(),
            extra_top: String::new(),
            extra_slack: String::new(),
            reminders: None,
        };
        let mut this = TestEnv {
            dir,
            config_path,
            state_path,
            spec,
            env,
            wrapper: Vec::new(),
        };
        this.write_config();
        this
    }

    /// A path inside the temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `spec` to the config file (and the webhook env var / file it names).
    pub fn write_config(&mut self) {
        match self.spec.webhook.clone() {
            WebhookSource::Env { var, url } => match url {
                Some(url) => {
                    self.env.insert(var, url);
                }
                None => {
                    self.env.remove(&var);
                }
            },
            WebhookSource::File {
                path,
                url: Some(url),
            } => {
                std::fs::write(&path, format!("{url}\n")).expect("write webhook file");
            }
            _ => {}
        }
        std::fs::write(&self.config_path, self.spec.to_toml()).expect("write config");
    }

    /// Writes a config file as given; `{state_path}` and `{dir}` are replaced.
    pub fn write_raw_config(&self, text: &str) {
        let text = text
            .replace("{state_path}", &self.state_path.display().to_string())
            .replace("{dir}", &self.dir.path().display().to_string());
        std::fs::write(&self.config_path, text).expect("write config");
    }

    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config_path).unwrap_or_default()
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.insert(key.to_owned(), value.to_owned());
    }

    pub fn remove_env(&mut self, key: &str) {
        self.env.remove(key);
    }

    fn command(&self, args: &[String]) -> Command {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut cmd = Command::new(program);
                cmd.args(wrapper_args).arg(binary_path());
                cmd
            }
            None => Command::new(binary_path()),
        };
        cmd.args(args)
            .env_clear()
            .envs(&self.env)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    fn with_config(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec![
            "--config".to_owned(),
            self.config_path.display().to_string(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        all
    }

    /// Runs `approval-watch --config <config> ARGS…` to completion.
    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_exact(&self.with_config(args)).await
    }

    /// Runs `approval-watch ARGS…` (no `--config` added) to completion.
    pub async fn run_without_config_flag(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        self.run_exact(&args).await
    }

    async fn run_exact(&self, args: &[String]) -> Output {
        let start = Instant::now();
        let child = self.command(args).spawn().expect("spawn approval-watch");
        let out = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
            Ok(out) => out.expect("wait for approval-watch"),
            Err(_) => panic!("approval-watch {args:?} did not finish within {COMMAND_TIMEOUT:?}"),
        };
        Output {
            args: args.to_vec(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: start.elapsed(),
        }
        .checked()
    }

    /// `once`.
    pub async fn once(&self) -> Output {
        self.run(&["once"]).await
    }

    /// `once --dry-run`.
    pub async fn dry_run(&self) -> Output {
        self.run(&["once", "--dry-run"]).await
    }

    /// Starts `approval-watch --config <config> run` in the background.
    pub fn spawn_run(&self) -> Daemon {
        self.spawn(&["run"])
    }

    /// Starts `approval-watch --config <config> ARGS…` in the background.
    pub fn spawn(&self, args: &[&str]) -> Daemon {
        let args = self.with_config(args);
        let mut child = self.command(&args).spawn().expect("spawn approval-watch");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (stdout_grew, _) = watch::channel(());
        let (stderr_grew, stderr_rx) = watch::channel(());
        let readers = vec![
            pump(
                child.stdout.take().expect("stdout"),
                stdout.clone(),
                stdout_grew,
            ),
            pump(
                child.stderr.take().expect("stderr"),
                stderr.clone(),
                stderr_grew,
            ),
        ];
        Daemon {
            pid: child.id().expect("pid"),
            child,
            args,
            started: Instant::now(),
            stdout,
            stderr,
            stderr_grew: stderr_rx,
            readers,
        }
    }

    /// The state database's bytes, or `None` if it does not exist.
    pub fn state_bytes(&self) -> Option<Vec<u8>> {
        std::fs::read(&self.state_path).ok()
    }

    /// Files in the temp dir whose name starts with the state file's name (db, -wal, -shm…).
    pub fn state_files(&self) -> Vec<PathBuf> {
        let name = self
            .state_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with(&name))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }
}

/// Copies `reader` into `into`, telling `grew` after each chunk; `grew` is dropped at the end
/// of the stream (the child closed it, normally by exiting).
fn pump<R>(mut reader: R, into: Arc<Mutex<String>>, grew: watch::Sender<()>) -> JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    into.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                    grew.send_replace(());
                }
            }
        }
    })
}

/// A long-lived child (`run`). Killed if dropped while still running.
pub struct Daemon {
    pub pid: u32,
    child: Child,
    args: Vec<String>,
    started: Instant,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// Changes whenever stderr grows; closed when the child closes stderr.
    stderr_grew: watch::Receiver<()>,
    readers: Vec<JoinHandle<()>>,
}

impl Daemon {
    /// stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Sends a signal by name (`TERM`, `INT`…) with `kill(1)`.
    pub async fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg("-s")
            .arg(name)
            .arg(self.pid.to_string())
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -s {name} {} failed", self.pid);
    }

    /// The exit code if it has already exited.
    pub fn try_exit_code(&mut self) -> Option<Option<i32>> {
        self.child
            .try_wait()
            .expect("try_wait")
            .map(|status| status.code())
    }

    /// Waits until stderr contains `needle` (colour codes removed), woken by each new chunk of
    /// stderr. False on timeout or when the child closes stderr (exits) without it.
    pub async fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) -> bool {
        let mut grew = self.stderr_grew.clone();
        let stderr = self.stderr.clone();
        let seen = move || strip_ansi(&stderr.lock().unwrap()).contains(needle);
        let wait = async {
            loop {
                // Mark the current text as seen before looking, so no chunk slips between.
                grew.borrow_and_update();
                if seen() {
                    return;
                }
                if grew.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        seen()
    }

    /// SIGTERM, then waits for exit (panics after `SHUTDOWN_TIMEOUT`).
    pub async fn terminate(self) -> Output {
        self.stop("TERM", SHUTDOWN_TIMEOUT).await
    }

    /// Sends `signal`, waits up to `timeout` for the exit, and collects the output. Panics (after
    /// killing it) if it does not exit in time.
    pub async fn stop(mut self, signal: &str, timeout: Duration) -> Output {
        if self.try_exit_code().is_none() {
            self.signal(signal).await;
        }
        self.wait(timeout).await
    }

    /// Waits for the child to exit on its own (panics after `timeout`).
    pub async fn wait(mut self, timeout: Duration) -> Output {
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait for approval-watch"),
            Err(_) => {
                let _ = self.child.kill().await;
                panic!(
                    "approval-watch {:?} did not exit within {timeout:?}\n--- stderr ---\n{}",
                    self.args,
                    strip_ansi(&self.stderr())
                );
            }
        };
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        Output {
            args: self.args.clone(),
            code: status.code(),
            stdout: self.stdout(),
            stderr: self.stderr(),
            elapsed: self.started.elapsed(),
        }
        .checked()
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The file's modification time and size, for "left untouched" checks.
pub fn file_fingerprint(path: &Path) -> Option<(std::time::SystemTime, u64, Vec<u8>)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), std::fs::read(path).ok()?))
}
