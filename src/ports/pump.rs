//! Copying a carried connection both ways, on either side of `--port`'s channel.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;

/// Anything with both halves of a stream to close.
pub(crate) trait Halves: Read + Write + Send + Sized + 'static {
    fn try_clone(&self) -> std::io::Result<Self>;
    fn shut(&self, how: Shutdown);
}

impl Halves for TcpStream {
    fn try_clone(&self) -> std::io::Result<Self> {
        TcpStream::try_clone(self)
    }
    fn shut(&self, how: Shutdown) {
        let _ = self.shutdown(how);
    }
}

impl Halves for UnixStream {
    fn try_clone(&self) -> std::io::Result<Self> {
        UnixStream::try_clone(self)
    }
    fn shut(&self, how: Shutdown) {
        let _ = self.shutdown(how);
    }
}

/// Copies `a` to `b` and `b` to `a` until both ends are done. An end of stream is passed on as
/// a half-close (the other way keeps going: a client that shut its writing still reads the
/// reply); an error ends both ways.
pub(crate) fn pump<A: Halves, B: Halves>(a: A, b: B) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let one_way = std::thread::spawn(move || copy_half(&mut a2, &mut b2));
    let (mut a, mut b) = (a, b);
    copy_half(&mut b, &mut a);
    let _ = one_way.join();
}

fn copy_half<R: Halves, W: Halves>(from: &mut R, to: &mut W) {
    match std::io::copy(from, to) {
        Ok(_) => to.shut(Shutdown::Write),
        Err(_) => {
            from.shut(Shutdown::Both);
            to.shut(Shutdown::Both);
        }
    }
}
