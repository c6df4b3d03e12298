//! Copying an open tunnel both ways, counting bytes, with half-close: when one side stops
//! sending, the other is told (shutdown of the write side) and the reverse direction goes on,
//! which request/response protocols need.
//!
//! Each direction starts in user space with a small buffer that grows on full reads, so a
//! thousand idle or chatty tunnels cost little memory and no extra fds. Once a direction fills
//! a `SPLICE_AFTER` read (a bulk transfer), it moves to `splice(2)` through a pipe of its own:
//! the kernel moves the socket's pages into the pipe and out to the other socket, and the bytes
//! no longer cross into this process (a user-space copy held a download to a third of
//! loopback's). Nothing reads what goes through here: every check on a tunnel's content (the
//! TLS hello while a broker runs) happens before the copy starts. A pipe that cannot be made
//! (fd limit, pipe quota) leaves that direction in user space.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use rustix::net::Shutdown;
use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

const MIN_BUF: usize = 1024;
pub(super) const MAX_BUF: usize = 256 * 1024;
/// A full read of this many bytes in user space moves the direction to splice.
const SPLICE_AFTER: usize = 64 * 1024;
/// What one direction's pipe is asked to hold: one splice moves up to this much.
const PIPE_SIZE: usize = 1024 * 1024;

/// A connected socket tokio watches: what the copy needs of `TcpStream` and `UnixStream`.
pub(crate) trait Socket: AsFd + Send + Sync {
    fn ready(
        &self,
        interest: Interest,
    ) -> impl Future<Output = io::Result<tokio::io::Ready>> + Send;
    fn try_io<T>(&self, interest: Interest, f: impl FnOnce() -> io::Result<T>) -> io::Result<T>;
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

macro_rules! socket {
    ($t:ty) => {
        impl Socket for $t {
            fn ready(
                &self,
                interest: Interest,
            ) -> impl Future<Output = io::Result<tokio::io::Ready>> + Send {
                <$t>::ready(self, interest)
            }
            fn try_io<T>(
                &self,
                interest: Interest,
                f: impl FnOnce() -> io::Result<T>,
            ) -> io::Result<T> {
                <$t>::try_io(self, interest, f)
            }
            fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$t>::poll_read_ready(self, cx)
            }
        }
    };
}
socket!(TcpStream);
socket!(UnixStream);

/// Copies until both directions have ended, or either fails (then both are cut: a reset on
/// one side means nobody is left to talk to).
pub(crate) async fn run<A: Socket, B: Socket>(
    a: &A,
    b: &B,
    a_to_b: &AtomicU64,
    b_to_a: &AtomicU64,
) {
    let _ = tokio::try_join!(pump(a, b, a_to_b), pump(b, a, b_to_a));
}

/// One direction: read, write, count; at end of input, shut the writer down.
pub(crate) async fn pump<R: Socket, W: Socket>(
    from: &R,
    to: &W,
    count: &AtomicU64,
) -> io::Result<()> {
    // The buffer exists only while bytes are in hand: an idle tunnel (most of a thousand open
    // ones) holds none. `size` grows with full reads, for the next burst.
    let mut size = MIN_BUF;
    let mut buf = Vec::new();
    loop {
        let n = loop {
            from.ready(Interest::READABLE).await?;
            if buf.len() != size {
                buf = vec![0u8; size];
            }
            match from.try_io(Interest::READABLE, || {
                Ok(rustix::io::read(from.as_fd(), &mut buf)?)
            }) {
                // Nothing there after all (readiness is only cleared by a would-block, so this
                // follows every drained read): wait without the buffer.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => buf = Vec::new(),
                other => break other?,
            }
        };
        if n == 0 {
            return shutdown(to);
        }
        write_all(to, &buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        // A full read means more is waiting: read more at a time, up to the cap; a bulk
        // transfer goes on in the kernel.
        if n == size
            && n >= SPLICE_AFTER
            && let Some(pipe) = Pipe::new()
        {
            drop(buf);
            // Boxed: the splice loop's state lives on the heap only for the tunnels that
            // reach it, not in every idle tunnel's task.
            return Box::pin(pipe.pump(from, to, count)).await;
        }
        if n == size && size < MAX_BUF {
            size = (size * 4).min(MAX_BUF);
        }
    }
}

/// Writes all of `data`.
pub(crate) async fn write_all<W: Socket>(to: &W, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        to.ready(Interest::WRITABLE).await?;
        match to.try_io(Interest::WRITABLE, || {
            Ok(rustix::io::write(to.as_fd(), data)?)
        }) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn shutdown<W: Socket>(to: &W) -> io::Result<()> {
    match rustix::net::shutdown(to.as_fd(), Shutdown::Write) {
        // The peer is gone already: nothing is owed to it.
        Err(rustix::io::Errno::NOTCONN) => Ok(()),
        other => Ok(other?),
    }
}

/// One direction's pipe: splice moves a socket's bytes in and out of it without a copy to
/// user space.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// How much one splice may move: the pipe's capacity.
    size: usize,
}

impl Pipe {
    fn new() -> Option<Pipe> {
        let (read, write) =
            rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).ok()?;
        // A larger pipe moves more per call; past the system's or user's pipe quota the
        // default capacity (64 KiB, or less) still works.
        let size = rustix::pipe::fcntl_setpipe_size(&write, PIPE_SIZE)
            .or_else(|_| rustix::pipe::fcntl_getpipe_size(&write))
            .ok()?;
        Some(Pipe { read, write, size })
    }

    /// Copies `from` to `to` through the pipe until end of input, then shuts `to` down.
    async fn pump<R: Socket, W: Socket>(
        self,
        from: &R,
        to: &W,
        count: &AtomicU64,
    ) -> io::Result<()> {
        loop {
            // The pipe is empty here, so a would-block is the socket's.
            let n = loop {
                from.ready(Interest::READABLE).await?;
                match from.try_io(Interest::READABLE, || {
                    self.splice(from.as_fd(), self.write.as_fd(), self.size)
                }) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    other => break other?,
                }
            };
            if n == 0 {
                return shutdown(to);
            }
            // The pipe holds n bytes, so a would-block is the socket's.
            let mut left = n;
            while left > 0 {
                to.ready(Interest::WRITABLE).await?;
                match to.try_io(Interest::WRITABLE, || {
                    self.splice(self.read.as_fd(), to.as_fd(), left)
                }) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(m) => left -= m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            count.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    fn splice(&self, from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
        let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
        Ok(rustix::pipe::splice(from, None, to, None, len, flags)?)
    }
}

/// Reads a socket shared with a concurrent writer (for parsers that want `AsyncRead`, such
/// as the TLS hello check), without taking it apart.
pub(crate) struct Reader<'a, S>(pub(crate) &'a S);

impl<S: Socket> AsyncRead for Reader<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let s = self.0;
        loop {
            match s.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            let dst = buf.initialize_unfilled();
            match s.try_io(Interest::READABLE, || {
                Ok(rustix::io::read(s.as_fd(), &mut *dst)?)
            }) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const LIMIT: Duration = Duration::from_secs(60);

    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8)
            .collect()
    }

    /// A client end (UNIX, as the relay's side of the host proxy), the tunnel's two sockets,
    /// and the far end (TCP loopback).
    async fn sockets() -> (UnixStream, UnixStream, TcpStream, TcpStream) {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = TcpStream::connect(server.local_addr().unwrap())
            .await
            .unwrap();
        let (far, _) = server.accept().await.unwrap();
        let (client, near) = UnixStream::pair().unwrap();
        (client, near, upstream, far)
    }

    /// Sends `out` and reads everything back until the other end's half-close.
    async fn talk<S: AsyncReadExt + AsyncWriteExt + Unpin>(s: S, out: &[u8]) -> Vec<u8> {
        let (mut r, mut w) = tokio::io::split(s);
        let send = async {
            w.write_all(out).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let recv = async {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            got
        };
        tokio::join!(send, recv).1
    }

    #[tokio::test]
    async fn large_transfers_are_exact_both_ways_at_once() {
        // Past SPLICE_AFTER in both directions: both go through their pipes.
        let (up_data, down_data) = (pattern(24 << 20, 1), pattern(24 << 20 | 123, 2));
        let (client, near, upstream, far) = sockets().await;
        let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
        let all = async {
            tokio::join!(
                run(&near, &upstream, &up, &down),
                talk(client, &up_data),
                talk(far, &down_data)
            )
        };
        let ((), at_client, at_far) = tokio::time::timeout(LIMIT, all).await.unwrap();
        assert!(at_far == up_data, "upload differs");
        assert!(at_client == down_data, "download differs");
        assert_eq!(up.into_inner(), up_data.len() as u64);
        assert_eq!(down.into_inner(), down_data.len() as u64);
    }

    #[tokio::test]
    async fn the_pipe_alone_copies_exactly() {
        // Straight to splice (no user-space start), with a sender that pauses, so the pipe
        // sees both full and partial reads and the reader's would-blocks.
        let data = pattern(8 << 20, 3);
        let (mut client, near, upstream, far) = sockets().await;
        let count = AtomicU64::new(0);
        let pipe = Pipe::new().expect("a pipe");
        let send = async {
            for (i, chunk) in data.chunks(1 << 20).enumerate() {
                client.write_all(chunk).await.unwrap();
                if i % 3 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            client.shutdown().await.unwrap();
        };
        let recv = async {
            let mut far = far;
            let mut got = Vec::new();
            far.read_to_end(&mut got).await.unwrap();
            got
        };
        let all = async { tokio::join!(pipe.pump(&near, &upstream, &count), send, recv) };
        let (copied, (), got) = tokio::time::timeout(LIMIT, all).await.unwrap();
        copied.unwrap();
        assert!(got == data, "spliced bytes differ");
        assert_eq!(count.into_inner(), data.len() as u64);
    }

    #[tokio::test]
    async fn half_close_passes_through() {
        // The far end replies only after the client's half-close; the reply is large enough
        // to go through the pipe.
        let reply = pattern(4 << 20, 4);
        let (mut client, near, upstream, far) = sockets().await;
        let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
        let echo = async {
            let mut far = far;
            let mut got = Vec::new();
            far.read_to_end(&mut got).await.unwrap(); // ends only on the client's half-close
            far.write_all(&got).await.unwrap();
            far.write_all(&reply).await.unwrap();
        };
        let talk = async {
            client.write_all(b"ping").await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        };
        let all = async {
            let copy = run(&near, &upstream, &up, &down);
            tokio::join!(copy, echo, talk)
        };
        let ((), (), back) = tokio::time::timeout(LIMIT, all).await.unwrap();
        assert_eq!(&back[..4], b"ping");
        assert!(back[4..] == reply[..], "reply differs");
        assert_eq!(up.into_inner(), 4);
        assert_eq!(down.into_inner(), 4 + reply.len() as u64);
    }

    #[tokio::test]
    async fn a_peer_reset_ends_the_tunnel() {
        // The far end takes some of a bulk upload, then resets: the copy must end (both ways
        // cut), not hang, and the client must see its tunnel close.
        let data = pattern(16 << 20, 5);
        let (mut client, near, upstream, far) = sockets().await;
        let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
        let reset = async {
            let mut far = far;
            let mut buf = vec![0u8; 1 << 20];
            let mut got = 0;
            while got < 2 << 20 {
                got += far.read(&mut buf).await.unwrap();
            }
            rustix::net::sockopt::set_socket_linger(&far, Some(Duration::ZERO)).unwrap();
            drop(far); // RST
        };
        let send = async {
            // Fails once the tunnel is cut; how far it got does not matter.
            let _ = client.write_all(&data).await;
            let mut rest = Vec::new();
            let _ = client.read_to_end(&mut rest).await;
        };
        let copy = async {
            run(&near, &upstream, &up, &down).await;
            drop(near); // what the proxy does when run returns
        };
        let all = async { tokio::join!(copy, reset, send) };
        tokio::time::timeout(LIMIT, all).await.unwrap();
        assert!(up.into_inner() >= 2 << 20);
    }

    #[tokio::test]
    async fn reader_reads_a_shared_socket() {
        let (mut client, near) = UnixStream::pair().unwrap();
        client.write_all(b"hello").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        Reader(&near).read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
    }
}
