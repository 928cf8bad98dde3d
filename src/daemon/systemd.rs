//! The systemd notification protocol (`sd_notify(3)`) over a Unix datagram socket, without
//! libsystemd: `READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=…` and `WATCHDOG=1`.
//!
//! The `sd-notify` crate writes the fields and reads the monotonic clock; the socket is ours,
//! opened once from `NOTIFY_SOCKET`, because `sd_notify::notify` reads the variable on every
//! call, cannot reach an abstract (`@name`) socket, and ends the datagram with a newline.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd, or `Type=` is not `notify`) every call is a
//! no-op, so the daemon runs the same anywhere. Sending never fails the caller: a lost
//! notification is logged at debug and forgotten, as libsystemd does.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

/// Where notifications go, and how often the watchdog wants a ping.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    stopping: AtomicBool,
}

impl Default for Notifier {
    /// A notifier that sends nothing.
    fn default() -> Self {
        Self {
            target: None,
            watchdog: None,
            stopping: AtomicBool::new(false),
        }
    }
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, as systemd sets them.
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let watchdog = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        let target = socket.and_then(|path| match connect(&path) {
            Ok(target) => Some(target),
            Err(e) => {
                tracing::warn!(
                    socket = %path.to_string_lossy(),
                    "cannot use NOTIFY_SOCKET; systemd will not hear from this service: {e}"
                );
                None
            }
        });
        let watchdog = watchdog.filter(|_| target.is_some());
        if let Some(every) = watchdog {
            tracing::debug!(
                every_ms = every.as_millis() as u64,
                "systemd watchdog enabled"
            );
        }
        Self {
            target,
            watchdog,
            stopping: AtomicBool::new(false),
        }
    }

    /// A notifier sending to `path`, with a watchdog ping interval.
    #[cfg(test)]
    fn to_socket(path: &std::ffi::OsStr, watchdog: Option<Duration>) -> std::io::Result<Self> {
        Ok(Self {
            target: Some(connect(path)?),
            watchdog,
            stopping: AtomicBool::new(false),
        })
    }

    /// How often to send `WATCHDOG=1` (half of `WATCHDOG_USEC`), if the watchdog is on.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Started (or reloaded) and doing its job; `status` is the line `systemctl status` shows.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
    }

    /// A reload has begun; [`Notifier::ready`] ends it. systemd matches the reload against
    /// `MONOTONIC_USEC`, `CLOCK_MONOTONIC` now.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// Shutting down. Sent once, however often it is called.
    pub fn stopping(&self) {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
        }
    }

    /// The one-line status `systemctl status` shows.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(&one_line(status))]);
    }

    /// The loop is alive; with a status refresh, in one datagram.
    pub fn watchdog(&self, status: &str) {
        if self.watchdog.is_some() {
            self.send(&[
                NotifyState::Watchdog,
                NotifyState::Status(&one_line(status)),
            ]);
        }
    }

    /// One datagram, the fields one per line (no newline after the last).
    fn send(&self, fields: &[NotifyState<'_>]) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        let message = fields
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
            tracing::debug!("cannot notify systemd: {e}");
        }
    }
}

/// A notification value is one line.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// An unbound datagram socket and the address `NOTIFY_SOCKET` names: a path, or an abstract
/// name written with a leading `@`.
fn connect(path: &std::ffi::OsStr) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_bytes();
    let addr = match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(path)?,
        Some(b'@') => abstract_addr(&bytes[1..])?,
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "expected an absolute path or an @abstract name",
            ));
        }
    };
    let socket = UnixDatagram::unbound()?;
    Ok((socket, addr))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> std::io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &[u8]) -> std::io::Result<SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract socket names exist only on Linux",
    ))
}

/// The ping interval: half of `WATCHDOG_USEC`, when the watchdog is meant for this process
/// (`WATCHDOG_PID` absent or ours).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(own_pid)
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_is_half_the_timeout_and_only_for_the_named_pid() {
        assert_eq!(
            watchdog_interval(Some("2000000"), None, 42),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog_interval(Some("2000000"), Some("42"), 42),
            Some(Duration::from_secs(1))
        );
        assert_eq!(watchdog_interval(Some("2000000"), Some("41"), 42), None);
        assert_eq!(watchdog_interval(Some("0"), None, 42), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 42), None);
        assert_eq!(watchdog_interval(None, None, 42), None);
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::to_socket(path.as_os_str(), Some(Duration::from_secs(1))).unwrap();
        notifier.ready("0 approvals waiting");
        notifier.watchdog("still\nhere");
        notifier.stopping();
        notifier.stopping();
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        receiver.set_nonblocking(true).unwrap();
        while let Ok(n) = receiver.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(
            got,
            [
                "READY=1\nSTATUS=0 approvals waiting",
                "WATCHDOG=1\nSTATUS=still here",
                "STOPPING=1\nSTATUS=stopping"
            ]
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("approval-watch-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        let notifier = Notifier::to_socket(format!("@{name}").as_ref(), None).unwrap();
        notifier.status("hello");
        notifier.watchdog("ignored without a watchdog");
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=hello");
        receiver.set_nonblocking(true).unwrap();
        assert!(receiver.recv(&mut buf).is_err());
    }

    #[test]
    fn reloading_carries_the_monotonic_clock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::to_socket(path.as_os_str(), None).unwrap();
        let usec = || match NotifyState::monotonic_usec_now().unwrap() {
            NotifyState::MonotonicUsec(usec) => usec,
            other => panic!("{other:?}"),
        };
        let before = usec();
        notifier.reloading();
        let after = usec();
        let mut buf = [0u8; 128];
        let n = receiver.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        let sent: i128 = got
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("{got:?}"))
            .parse()
            .unwrap();
        assert!((before..=after).contains(&sent), "{before} {sent} {after}");
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        let notifier = Notifier::default();
        assert!(notifier.target.is_none());
        notifier.ready("x");
        notifier.stopping();
        assert_eq!(notifier.watchdog_interval(), None);
    }

    #[test]
    fn relative_socket_paths_are_refused() {
        assert!(connect("relative.sock".as_ref()).is_err());
    }
}
