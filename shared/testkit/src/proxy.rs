//! A small TCP fault proxy for fault tests (the in-repo stand-in for Toxiproxy).
//!
//! Put it between the code under test and RabbitMQ or PostgreSQL, then switch modes:
//! - [`FaultProxy::pass`]: forward bytes both ways (the default);
//! - [`FaultProxy::cut`]: close every current connection (new ones are still accepted);
//! - [`FaultProxy::refuse`]: close every current connection and close new ones right after accept;
//! - [`FaultProxy::blackhole`]: keep the sockets open but forward nothing (a dead link without RST),
//!   until the mode changes back to pass.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Refuse,
    Blackhole,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Control {
    mode: Mode,
    /// Connections accepted before the latest cut carry an older epoch and close.
    epoch: u64,
}

/// A running proxy; stops (and closes its connections) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    control: watch::Sender<Control>,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (control, rx) = watch::channel(Control {
            mode: Mode::Pass,
            epoch: 0,
        });
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let ctl = *rx.borrow();
                if ctl.mode == Mode::Refuse {
                    drop(client);
                    continue;
                }
                let rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    pipe(client, server, rx, ctl.epoch).await;
                });
            }
        });
        Ok(FaultProxy {
            addr,
            control,
            accepted,
            task,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far (to see that a client reconnected).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn mode(&self) -> Mode {
        self.control.borrow().mode
    }

    /// Forward traffic (new and, after a blackhole, existing connections).
    pub fn pass(&self) {
        self.control.send_modify(|c| c.mode = Mode::Pass);
    }

    /// Close every open connection; keep accepting new ones.
    pub fn cut(&self) {
        self.control.send_modify(|c| c.epoch += 1);
    }

    /// Close every open connection and close new ones immediately.
    pub fn refuse(&self) {
        self.control.send_modify(|c| {
            c.epoch += 1;
            c.mode = Mode::Refuse;
        });
    }

    /// Stop forwarding without closing anything.
    pub fn blackhole(&self) {
        self.control.send_modify(|c| c.mode = Mode::Blackhole);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// Rewrites `url`'s `host:port` authority to the proxy's address (AMQP or PostgreSQL URLs).
pub fn rewrite_url(url: &str, upstream: SocketAddr, proxy: SocketAddr) -> String {
    url.replacen(&upstream.to_string(), &proxy.to_string(), 1)
}

async fn pipe(client: TcpStream, server: TcpStream, mut rx: watch::Receiver<Control>, epoch: u64) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let mut up = vec![0u8; 16 * 1024];
    let mut down = vec![0u8; 16 * 1024];
    loop {
        let ctl = *rx.borrow_and_update();
        if ctl.epoch != epoch {
            return; // dropping both halves closes both sockets
        }
        if ctl.mode == Mode::Blackhole {
            if rx.changed().await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            r = cr.read(&mut up) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => if sw.write_all(&up[..n]).await.is_err() { return },
            },
            r = sr.read(&mut down) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => if cw.write_all(&down[..n]).await.is_err() { return },
            },
            changed = rx.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(s: &mut TcpStream) -> std::io::Result<usize> {
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("timeout"))?
    }

    #[tokio::test]
    async fn pass_cut_blackhole_refuse() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut s).await.unwrap(), 4);

        proxy.blackhole();
        assert!(
            roundtrip(&mut s).await.is_err(),
            "blackholed link must not answer"
        );
        proxy.pass();
        // The bytes held during the blackhole come through once it heals.
        let mut buf = [0u8; 4];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"ping");

        proxy.cut();
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "cut closes open connections");
        let mut s2 = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut s2).await.unwrap(), 4);

        proxy.refuse();
        let mut s3 = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(roundtrip(&mut s3).await.is_err());
        assert!(proxy.accepted() >= 3);
    }
}
