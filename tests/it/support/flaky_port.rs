//! A TCP forwarder on a fixed loopback port in front of a fake, which can go down (new
//! connections refused, live ones cut) and come back up on the same port. Puts "connection
//! refused" between the binary and a fake without changing the binary's config.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The forwarder. Dropping it stops it (connections cut, port closed).
pub struct FlakyPort {
    port: u16,
    target: SocketAddr,
    listener: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accepted: Arc<Mutex<usize>>,
}

impl Drop for FlakyPort {
    fn drop(&mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

impl FlakyPort {
    /// Forwards 127.0.0.1:<new port> to `target`; up from the start.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind flaky port");
        let port = listener.local_addr().expect("local addr").port();
        let mut this = FlakyPort {
            port,
            target,
            listener: None,
            connections: Arc::new(Mutex::new(Vec::new())),
            accepted: Arc::new(Mutex::new(0)),
        };
        this.serve(listener);
        this
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted (and forwarded) so far.
    pub fn accepted(&self) -> usize {
        *self.accepted.lock().unwrap()
    }

    pub fn is_up(&self) -> bool {
        self.listener.is_some()
    }

    /// Closes the port (connecting is refused) and cuts every live connection.
    pub async fn down(&mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
            let _ = l.await;
        }
        let live: Vec<JoinHandle<()>> = self.connections.lock().unwrap().drain(..).collect();
        for c in live {
            c.abort();
            let _ = c.await;
        }
    }

    /// Listens on the same port again.
    pub async fn up(&mut self) {
        if self.listener.is_some() {
            return;
        }
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) => {
                    tries += 1;
                    assert!(
                        tries < 100,
                        "cannot listen on port {} again: {e}",
                        self.port
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let target = self.target;
        let connections = self.connections.clone();
        let accepted = self.accepted.clone();
        self.listener = Some(tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                *accepted.lock().unwrap() += 1;
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut live = connections.lock().unwrap();
                live.retain(|t| !t.is_finished());
                live.push(task);
            }
        }));
    }
}
