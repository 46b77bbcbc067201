//! A loopback TCP proxy for outage tests.

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A loopback TCP proxy in front of a real server (MariaDB, Mosquitto) that a test can cut
/// (closing every connection and refusing new ones) and restore: an outage of the far end
/// without stopping a shared service.
pub struct Proxy {
    /// The port to connect to instead of the server's.
    pub port: u16,
    cut: Arc<AtomicBool>,
    /// Set: the next statement execution reaches the server, and the connection breaks
    /// before its answer reaches the client (a lost commit acknowledgement).
    pub lose_reply: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

/// MySQL's COM_STMT_EXECUTE command byte.
const COM_STMT_EXECUTE: u8 = 0x17;

/// Copies client -> server; when `lose_reply` is set and an execute goes by, closes the
/// client side at once (the answer is lost) and the server side a moment later (so the
/// server has run and committed the statement).
fn forward_client(mut client: TcpStream, mut server: TcpStream, lose_reply: Arc<AtomicBool>) {
    use std::io::Read;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
        if n > 4 && buf[4] == COM_STMT_EXECUTE && lose_reply.swap(false, Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            std::thread::sleep(Duration::from_millis(500));
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Both);
    let _ = client.shutdown(Shutdown::Both);
}

impl Proxy {
    /// Starts forwarding a free loopback port to `upstream`.
    pub fn start(upstream: &'static str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let lose_reply = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, o, l) = (cut.clone(), open.clone(), lose_reply.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let mut conns = o.lock().expect("conns");
                conns.push(client.try_clone().expect("clone"));
                conns.push(server.try_clone().expect("clone"));
                let (c, sv, lose) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                    l.clone(),
                );
                std::thread::spawn(move || forward_client(c, sv, lose));
                let (mut from, mut to) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                });
            }
        });
        Proxy {
            port,
            cut,
            lose_reply,
            open,
        }
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for c in self.open.lock().expect("conns").drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}
