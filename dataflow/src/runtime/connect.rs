//! The TCP connections between a cluster's processes.
//!
//! Timely would connect them itself (`CommunicationConfig::Cluster`) with plain sockets: when a
//! peer vanishes without closing them (a partition, a machine lost, a cable pulled), an idle
//! connection then stays silent forever and one with data in flight only fails once the kernel
//! gives up retransmitting (about 15 minutes), and until then every process waits at its next
//! exchange. These are made with timely's own handshake (the connecting process sends its index
//! as a big-endian u64; process `p` connects to the processes before it and accepts the ones
//! after it) and with TCP keepalive and a user timeout, so a peer that stopped answering breaks
//! the connection within [`USER_TIMEOUT`]: timely's network threads then fail as they do for a
//! closed connection, and the engine reports the lost process.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use socket2::{SockRef, TcpKeepalive};

/// Idle time on a connection before the first keepalive probe: timely's connections are quiet
/// whenever no rule exchanges rows, and a partition must be seen then too.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// Time between unanswered keepalive probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// Unanswered probes before the connection is dropped (the user timeout below ends it first).
const KEEPALIVE_PROBES: u32 = 5;
/// How long sent data (or keepalive probes) may stay unacknowledged before the kernel drops
/// the connection (`TCP_USER_TIMEOUT`). A peer that is alive but slow still acknowledges (its
/// kernel does, also when its process reads nothing), so only a peer out of reach hits this.
pub const USER_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between attempts to connect to a process that is not listening yet.
const RETRY: Duration = Duration::from_millis(250);
/// Bound on one connection attempt (an address out of reach would otherwise take the kernel's
/// SYN retries, about two minutes, per attempt).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on reading a connecting process's index: something else connecting to the port must
/// not hold up the cluster's start.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects this process (`me`) to every other process of `addresses`; returns once all are
/// connected, waiting for those not listening yet. Item `i` is the connection to process `i`,
/// `None` for `me`: what `initialize_networking_from_sockets` takes.
pub fn connect(addresses: &[String], me: usize) -> io::Result<Vec<Option<TcpStream>>> {
    // Bound before connecting out, so the processes after this one find it listening.
    let listeners = addresses[me]
        .split_whitespace()
        .map(TcpListener::bind)
        .collect::<io::Result<Vec<_>>>()?;
    let later = addresses.len() - me - 1;
    let accepting = std::thread::Builder::new()
        .name("cluster-accept".into())
        .spawn(move || accept(&listeners, me, later))?;
    let mut sockets = Vec::with_capacity(addresses.len());
    for (index, address) in addresses.iter().enumerate().take(me) {
        sockets.push(Some(connect_to(index, address, me)?));
    }
    sockets.push(None);
    let accepted = accepting
        .join()
        .map_err(|_| io::Error::other("the thread accepting cluster connections panicked"))??;
    sockets.extend(accepted.into_iter().map(Some));
    Ok(sockets)
}

/// Connects to process `index` at `address`, retrying until it listens, and introduces this
/// process `me`.
fn connect_to(index: usize, address: &str, me: usize) -> io::Result<TcpStream> {
    let mut told = false;
    loop {
        match try_connect(address) {
            Ok(mut stream) => {
                tune(&stream)?;
                stream.write_all(&(me as u64).to_be_bytes())?;
                tracing::debug!("connected to cluster process {index} at {address}");
                return Ok(stream);
            }
            Err(e) => {
                if !told {
                    tracing::info!(
                        "waiting for cluster process {index} at {address} ({e}); retrying"
                    );
                    told = true;
                }
                std::thread::sleep(RETRY);
            }
        }
    }
}

/// One attempt at `address` (a name is looked up again each time: it may appear later).
fn try_connect(address: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing");
    let resolved: Vec<SocketAddr> = address.to_socket_addrs()?.collect();
    for addr in resolved {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Accepts the `later` processes after `me`; item `i` is process `me + 1 + i`'s connection.
fn accept(listeners: &[TcpListener], me: usize, later: usize) -> io::Result<Vec<TcpStream>> {
    let mut accepted: Vec<Option<TcpStream>> = (0..later).map(|_| None).collect();
    for listener in listeners {
        listener.set_nonblocking(true)?;
    }
    let mut waiting_since = Instant::now();
    while accepted.iter().any(Option::is_none) {
        let mut any = false;
        for listener in listeners {
            let (stream, from) = match listener.accept() {
                Ok(conn) => conn,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            any = true;
            match introduced(stream) {
                Ok((index, stream)) if index > me && index <= me + later => {
                    let slot = &mut accepted[index - me - 1];
                    if slot.is_some() {
                        tracing::warn!(
                            "a second connection from cluster process {index} ({from}) refused"
                        );
                    } else {
                        tracing::debug!("cluster process {index} connected from {from}");
                        *slot = Some(stream);
                    }
                }
                Ok((index, _)) => tracing::warn!(
                    "a connection from {from} says it is cluster process {index}, which does not connect to process {me}; refused"
                ),
                Err(e) => tracing::warn!(
                    "a connection from {from} did not introduce a cluster process ({e}); refused"
                ),
            }
        }
        if !any {
            if waiting_since.elapsed() >= Duration::from_secs(10) {
                let missing = accepted.iter().filter(|s| s.is_none()).count();
                tracing::info!("waiting for {missing} cluster process(es) to connect");
                waiting_since = Instant::now();
            }
            std::thread::sleep(RETRY);
        }
    }
    Ok(accepted.into_iter().flatten().collect())
}

/// Reads the index a connecting process sends first; the stream tuned for the cluster.
fn introduced(mut stream: TcpStream) -> io::Result<(usize, TcpStream)> {
    // An accepted socket may inherit the listener's non-blocking mode on some systems.
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut index = [0u8; 8];
    stream.read_exact(&mut index)?;
    stream.set_read_timeout(None)?;
    tune(&stream)?;
    let index = usize::try_from(u64::from_be_bytes(index)).unwrap_or(usize::MAX);
    Ok((index, stream))
}

/// Sets what every cluster connection needs: no Nagle delay (timely's messages are its
/// progress traffic too), keepalive and the user timeout.
fn tune(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let socket = SockRef::from(stream);
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    socket.set_tcp_keepalive(&keepalive)?;
    // Elsewhere keepalive alone bounds an idle connection; data in flight waits for the
    // kernel's retransmissions to give up.
    #[cfg(target_os = "linux")]
    socket.set_tcp_user_timeout(Some(USER_TIMEOUT))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_address() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("an address").to_string()
    }

    #[test]
    fn three_processes_connect_in_timely_order_with_keepalive_and_a_user_timeout() {
        let addresses: Vec<String> = (0..3).map(|_| free_address()).collect();
        // Started last first: the others wait for the processes not listening yet.
        let handles: Vec<_> = (0..3)
            .rev()
            .map(|me| {
                let addresses = addresses.clone();
                std::thread::spawn(move || (me, connect(&addresses, me).expect("connected")))
            })
            .collect();
        let mut all: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        all.sort_by_key(|(me, _)| *me);
        for (me, sockets) in &mut all {
            assert_eq!(sockets.len(), 3);
            assert!(sockets[*me].is_none());
            for socket in sockets.iter_mut().flatten() {
                let s = SockRef::from(&*socket);
                assert!(s.keepalive().unwrap());
                assert_eq!(s.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
                assert_eq!(s.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
                assert_eq!(s.tcp_keepalive_retries().unwrap(), KEEPALIVE_PROBES);
                #[cfg(target_os = "linux")]
                assert_eq!(s.tcp_user_timeout().unwrap(), Some(USER_TIMEOUT));
                assert!(socket.nodelay().unwrap());
                // Each connection joins the two processes it says: a byte each way.
                socket.write_all(&[*me as u8]).unwrap();
            }
        }
        for (me, sockets) in &mut all {
            for (peer, socket) in sockets.iter_mut().enumerate() {
                let Some(socket) = socket else { continue };
                let mut byte = [0u8; 1];
                socket.read_exact(&mut byte).unwrap();
                assert_eq!(byte[0] as usize, peer, "process {me}'s slot {peer}");
            }
        }
    }

    #[test]
    fn a_connection_that_does_not_introduce_a_process_is_refused() {
        let addresses: Vec<String> = (0..2).map(|_| free_address()).collect();
        let first = {
            let addresses = addresses.clone();
            std::thread::spawn(move || connect(&addresses, 0).expect("connected"))
        };
        // A stranger that says it is process 7, then the real process 1.
        let mut stranger = loop {
            match TcpStream::connect(&addresses[0]) {
                Ok(s) => break s,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stranger.write_all(&7u64.to_be_bytes()).unwrap();
        let mut second = connect(&addresses, 1).expect("connected");
        let mut first = first.join().unwrap();
        second[0].as_mut().unwrap().write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        first[1].as_mut().unwrap().read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
    }
}
