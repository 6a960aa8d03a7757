//! A TCP proxy in front of a real service, whose behaviour a test switches while clients
//! are connected: pass bytes through, delay what the service sends, drop what it sends
//! (the service still gets everything), drop both ways, or refuse new connections.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What the proxy does with the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Both ways, at once.
    Pass,
    /// The client's bytes at once; the service's after this long, in order.
    DelayReplies(Duration),
    /// The client's bytes reach the service; the service's are thrown away.
    DropReplies,
    /// Nothing gets through either way (a network partition).
    DropAll,
    /// New connections are closed as they arrive; open ones pass.
    Refuse,
}

/// A running proxy; it stops, with its connections, when dropped.
pub struct TcpProxy {
    /// The port clients connect to, on 127.0.0.1.
    pub port: u16,
    mode: Arc<Mutex<Mode>>,
    task: JoinHandle<()>,
}

impl TcpProxy {
    /// A proxy on a free port forwarding to `upstream`, passing bytes.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let mode = Arc::new(Mutex::new(Mode::Pass));
        let shared = mode.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                if *shared.lock().unwrap() == Mode::Refuse {
                    continue;
                }
                let Ok(service) = TcpStream::connect(upstream).await else { continue };
                connections.spawn(carry(client, service, shared.clone()));
            }
        });
        Self { port, mode, task }
    }

    /// Switches what the proxy does, for open connections and new ones.
    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

/// Carries one connection until either side closes it.
async fn carry(client: TcpStream, service: TcpStream, mode: Arc<Mutex<Mode>>) {
    let (mut client_read, client_write) = client.into_split();
    let (service_read, mut service_write) = service.into_split();
    let mode_up = mode.clone();
    let upstream = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if *mode_up.lock().unwrap() == Mode::DropAll {
                continue;
            }
            if service_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = upstream => {}
        () = replies(service_read, client_write, mode) => {}
    }
}

/// The service's bytes to the client, each chunk at its due time and in order.
async fn replies(
    mut service_read: tokio::net::tcp::OwnedReadHalf,
    mut client_write: tokio::net::tcp::OwnedWriteHalf,
    mode: Arc<Mutex<Mode>>,
) {
    let (due_tx, mut due_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((due, bytes)) = due_rx.recv().await {
            tokio::time::sleep_until(due).await;
            if client_write.write_all(&bytes).await.is_err() {
                return;
            }
        }
    };
    let reader = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = match service_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let delay = match *mode.lock().unwrap() {
                Mode::Pass | Mode::Refuse => Duration::ZERO,
                Mode::DelayReplies(delay) => delay,
                Mode::DropReplies | Mode::DropAll => continue,
            };
            if due_tx.send((Instant::now() + delay, buffer[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    // The reader ending drops the sender, so the writer flushes what is due and ends too.
    tokio::join!(reader, writer);
}
