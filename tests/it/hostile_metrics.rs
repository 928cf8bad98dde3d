//! The metrics endpoint of the real binary under hostile clients: idle connections that send
//! only a request line, a slow-loris client, a locked state database, a listen address open to
//! the network. `/healthz` and `/metrics` keep answering promptly.

use crate::support;

use std::time::{Duration, Instant};

use support::{Daemon, Fixture, SOON, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What "promptly" means for an endpoint a monitor polls with a short timeout.
const PROMPT: Duration = Duration::from_secs(1);

/// The daemon's `[metrics] listen` for `world`, then the daemon and the address it serves on.
async fn start(world: &mut World, listen: &str) -> (Daemon, String) {
    world.env.spec.extra_top = format!("[metrics]\nlisten = \"{listen}\"\n");
    world.env.write_config();
    let mut daemon = world.env.spawn_run();
    assert!(
        daemon.wait_for_stderr("metrics on http://", SOON).await,
        "no metrics address logged: {}",
        daemon.stderr()
    );
    let stderr = support::runner::strip_ansi(&daemon.stderr());
    let at = stderr.find("metrics on http://").unwrap() + "metrics on http://".len();
    let url = stderr[at..].split_whitespace().next().unwrap();
    let addr = url.strip_suffix("/metrics").unwrap().to_owned();
    (daemon, addr)
}

/// `GET http://addr/path`, answered within `PROMPT` or the test fails.
async fn get_promptly(addr: &str, path: &str) -> (u16, String) {
    let started = Instant::now();
    let response = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(PROMPT)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path} not answered within {PROMPT:?}: {e}"));
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    let took = started.elapsed();
    assert!(took <= PROMPT, "GET {path} took {took:?}");
    eprintln!("GET {path}: {status} in {took:?}");
    (status, body)
}

/// A connection that sent a request line and nothing more.
async fn idle_connection(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\n")
        .await
        .expect("request line");
    stream
}

/// Whether the server has closed `stream` (EOF or reset) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or 503 the server wrote on its way out: keep reading to the close.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_do_not_starve_the_endpoint() {
    let mut world = World::start(&["web-app"]).await;
    world.aws.set_state("web-app", Fixture::Waiting);
    let (daemon, addr) = start(&mut world, "127.0.0.1:0").await;

    // Fifty idle clients: fewer than the connection cap.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(idle_connection(&addr).await);
    }
    let (status, body) = get_promptly(&addr, "/healthz").await;
    assert!(status == 200 && body.starts_with("ok"), "{status} {body}");
    let (status, body) = get_promptly(&addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("approval_watch_build_info"), "{body}");

    // Fifty more: past the cap, the oldest idle ones make room.
    for _ in 0..50 {
        idle.push(idle_connection(&addr).await);
    }
    let (status, _) = get_promptly(&addr, "/healthz").await;
    assert_eq!(status, 200);
    let (status, _) = get_promptly(&addr, "/metrics").await;
    assert_eq!(status, 200);
    let newest = idle.len() - 1;
    assert!(
        !closed_within(&mut idle[newest], Duration::from_millis(200)).await,
        "the newest idle connection is kept (until the header timeout)"
    );
    for (i, stream) in idle.iter_mut().take(30).enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(1)).await,
            "idle connection {i} of 100 was not shed"
        );
    }

    // HEAD and other methods answer as before.
    let response = reqwest::Client::new()
        .head(format!("http://{addr}/healthz"))
        .timeout(PROMPT)
        .send()
        .await
        .expect("HEAD /healthz");
    assert_eq!(response.status().as_u16(), 200);
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/metrics"))
        .timeout(PROMPT)
        .send()
        .await
        .expect("POST /metrics");
    assert_eq!(response.status().as_u16(), 405);

    let out = daemon.terminate().await;
    out.assert_code(0);
    assert!(
        out.stderr_lines_with(&["not a loopback address"])
            .is_empty(),
        "no exposure warning on loopback:\n{}",
        out.describe()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_loris_is_dropped_after_the_header_timeout() {
    let mut world = World::start(&["web-app"]).await;
    let (daemon, addr) = start(&mut world, "127.0.0.1:0").await;

    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        .await
        .expect("request line");
    // One byte of a header every 200 ms: never the end of the head.
    let dropped_after = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut buf = [0u8; 512];
        let closed = match tokio::time::timeout(Duration::ZERO, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => closed_within(&mut stream, Duration::from_secs(1)).await,
            Err(_) => stream.write_all(b"a").await.is_err(),
        };
        if closed {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "a slow-loris client was kept for 15 s"
        );
    };
    eprintln!("slow-loris client dropped after {dropped_after:?}");
    assert!(
        (Duration::from_secs(4)..Duration::from_secs(8)).contains(&dropped_after),
        "dropped after {dropped_after:?}, expected the 5 s header timeout"
    );
    let (status, _) = get_promptly(&addr, "/healthz").await;
    assert_eq!(status, 200);
    daemon.terminate().await.assert_code(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_answers_while_the_database_is_locked() {
    let mut world = World::start(&["web-app"]).await;
    world.aws.set_state("web-app", Fixture::Waiting);
    let (daemon, addr) = start(&mut world, "127.0.0.1:0").await;
    world.slack.wait_for_delivered(1, SOON).await;
    // Healthy once a cycle has succeeded (on a loaded machine the first may take a while).
    let started = Instant::now();
    loop {
        let (status, body) = get_promptly(&addr, "/healthz").await;
        if status == 200 {
            break;
        }
        assert!(started.elapsed() < SOON, "never healthy: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // This test process takes the write lock and keeps it: every cycle waits for it (the
    // daemon's busy timeout), then fails.
    let locker = rusqlite::Connection::open(&world.env.state_path).expect("open state");
    locker
        .busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    locker
        .execute_batch("BEGIN EXCLUSIVE")
        .expect("exclusive lock");
    world.aws.set_state("web-app", Fixture::Approved);

    // Polled as a monitor would: every answer prompt, 503 once no cycle has succeeded for
    // three poll intervals, and still answering while a cycle waits out SQLite's busy timeout
    // and fails.
    let started = Instant::now();
    let mut unhealthy = None;
    loop {
        let (status, body) = get_promptly(&addr, "/healthz").await;
        match status {
            503 => unhealthy = Some(body),
            200 => assert!(unhealthy.is_none(), "healthy again while locked: {body}"),
            _ => panic!("{status} {body}"),
        }
        let failed = support::runner::strip_ansi(&daemon.stderr()).contains("cycle failed");
        if failed && unhealthy.is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "with the database locked: unhealthy {unhealthy:?}, a cycle failed: {failed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = unhealthy.unwrap_or_default();
    assert!(body.starts_with("unhealthy"), "{body}");
    let (status, _) = get_promptly(&addr, "/metrics").await;
    assert_eq!(status, 200);

    // The lock goes: cycles succeed again, and so does /healthz.
    locker.execute_batch("ROLLBACK").expect("unlock");
    drop(locker);
    let started = Instant::now();
    loop {
        let (status, body) = get_promptly(&addr, "/healthz").await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "/healthz never recovered: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = daemon.terminate().await;
    out.assert_code(0);
    assert!(
        !out.stderr_lines_with(&["cycle failed", "locked"])
            .is_empty(),
        "the cycles failed on the lock:\n{}",
        out.describe()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listen_address_that_is_not_loopback_is_warned_about() {
    let mut world = World::start(&["web-app"]).await;
    let (daemon, addr) = start(&mut world, "0.0.0.0:0").await;
    let port = addr.rsplit_once(':').unwrap().1;
    let (status, _) = get_promptly(&format!("127.0.0.1:{port}"), "/healthz").await;
    assert_eq!(status, 200);
    let out = daemon.terminate().await;
    out.assert_code(0);
    let warnings = out.stderr_lines_with(&["WARN", "0.0.0.0", "not a loopback address"]);
    assert_eq!(warnings.len(), 1, "{}", out.describe());
    assert!(
        warnings[0].contains("no authentication"),
        "the warning names the exposure: {}",
        warnings[0]
    );
}
