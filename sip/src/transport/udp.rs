//! A UDP socket that the event loop watches for reads only.
//!
//! tokio's `UdpSocket` registers for reads and writes. A UDP socket becomes writable again
//! each time the kernel lets go of a sent datagram, which on loopback is during the
//! `sendto` itself, so every send queued a write-space event that cost the loop one more
//! `epoll_wait` round per message, for a readiness nobody waits for. Here the socket is
//! registered for reads only ([`AsyncFd::with_interest`]) and sends are plain non-blocking
//! `sendto`s. A send that finds the send buffer full (the kernel holds a datagram only until
//! the interface has sent it, so this is rare) registers a duplicate of the descriptor for
//! write space, waits on it, and lets it go again.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A bound, non-blocking UDP socket on the tokio reactor, registered for reads only.
#[derive(Debug)]
pub(super) struct ReadOnlyUdp {
    fd: AsyncFd<UdpSocket>,
    local: SocketAddr,
}

impl ReadOnlyUdp {
    /// Binds `addr` and registers the socket with the current runtime.
    pub(super) fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let fd = register(socket, Interest::READABLE)?;
        Ok(Self { fd, local })
    }

    /// The bound address (with the port chosen for port 0).
    pub(super) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits for one datagram.
    pub(super) async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        when_ready(&self.fd, Interest::READABLE, |s| s.recv_from(buf)).await
    }

    /// Sends one datagram, waiting for write space only when the send buffer is full.
    pub(super) async fn send_to(&self, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
        match self.fd.get_ref().send_to(bytes, to) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.send_when_writable(bytes, to).await
            }
            result => result.map(drop),
        }
    }

    /// The slow path of [`send_to`](Self::send_to): a second registration, for write
    /// space, of a duplicate descriptor (epoll keys registrations by descriptor, and the
    /// kernel reports the current state when one is added, so no wake-up is missed).
    async fn send_when_writable(&self, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
        let dup = register(self.fd.get_ref().try_clone()?, Interest::WRITABLE)?;
        when_ready(&dup, Interest::WRITABLE, |s| s.send_to(bytes, to).map(drop)).await
    }
}

/// Runs `io` once `fd` is ready for `interest`, waiting again each time it would block.
async fn when_ready<R>(
    fd: &AsyncFd<UdpSocket>,
    interest: Interest,
    mut io: impl FnMut(&UdpSocket) -> io::Result<R>,
) -> io::Result<R> {
    loop {
        let mut ready = fd.ready(interest).await?;
        if let Ok(result) = ready.try_io(|s| io(s.get_ref())) {
            return result;
        }
    }
}

/// Registers `socket` with the current runtime for `interest` alone.
///
/// tokio 1.54 deprecates the safe `AsyncFd::with_interest` (tokio PR 8587) because an
/// arbitrary `AsRawFd` type may close or swap its descriptor while registered; its
/// replacement is an `unsafe fn`, and this workspace forbids unsafe code. A
/// `std::net::UdpSocket` owns its descriptor until it is dropped, and the `AsyncFd` that
/// holds it deregisters before dropping it, so the hazard cannot arise here.
#[allow(deprecated)]
fn register(socket: UdpSocket, interest: Interest) -> io::Result<AsyncFd<UdpSocket>> {
    AsyncFd::with_interest(socket, interest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sends_and_receives_without_write_interest() {
        let a = ReadOnlyUdp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = ReadOnlyUdp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        a.send_to(b"one", b.local_addr()).await.unwrap();
        // The slow path, taken here on purpose: it must send at once when there is space.
        a.send_when_writable(b"two", b.local_addr()).await.unwrap();
        let mut buf = [0u8; 16];
        for want in [&b"one"[..], b"two"] {
            let (n, from) = b.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], want);
            assert_eq!(from, a.local_addr());
        }
    }
}
