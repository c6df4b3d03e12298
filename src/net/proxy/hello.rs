//! A tunnel's first flight, looked at before it goes on, while a credential broker runs: a TLS
//! ClientHello naming a brokered host is refused, whatever name the tunnel was opened for.
//! API hosts share their front ends' addresses with other names (a CDN's edge serves every
//! site it fronts; Google's front ends serve every googleapis.com name at every address), so a
//! tunnel to an allowed name could otherwise carry a TLS session with the brokered host, and an
//! attacker's key in it.
//!
//! Out of reach without terminating TLS: a hello naming nothing (or an allowed name, or ECH's
//! outer name) followed by a Host header naming the brokered host inside the encrypted stream
//! (domain fronting; or HTTP/2 reusing the connection for another name its certificate
//! covers), where the front end routes by that header.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::net::rules::Host;

/// The most of a hello read before judging it; a real one is a few KiB.
const MAX_HELLO: usize = 64 * 1024;
/// A TLS record of the handshake type: the first byte of every ClientHello.
const HANDSHAKE: u8 = 0x16;

/// Reads from `client` (after `early`, which it sent with its request) until its first flight
/// can be judged. `Ok(bytes)`: everything read, owed to the destination. `Err(reason)`: the
/// tunnel is to be cut, nothing sent. `refuse` says why a host must not be named.
pub(super) async fn first_flight<R>(
    client: &mut R,
    early: Vec<u8>,
    refuse: impl Fn(&Host) -> Option<String>,
) -> std::io::Result<Result<Vec<u8>, String>>
where
    R: AsyncRead + Unpin,
{
    let mut buf = early;
    let mut fed = 0;
    let mut hello = rustls::server::Acceptor::default();
    loop {
        if buf.first().is_some_and(|b| *b != HANDSHAKE) {
            // Not TLS (plain HTTP, SSH, ...): nothing here names a host the way SNI does.
            return Ok(Ok(buf));
        }
        while fed < buf.len() {
            let mut rest = &buf[fed..];
            match hello.read_tls(&mut rest) {
                Ok(0) => break,
                Ok(n) => fed += n,
                Err(e) => return Ok(Err(format!("a TLS hello agentbox cannot read: {e}"))),
            }
        }
        if !buf.is_empty() {
            match hello.accept() {
                Ok(Some(accepted)) => {
                    let name = accepted.client_hello().server_name().and_then(Host::parse);
                    let why = name.as_ref().and_then(|h| {
                        refuse(h).map(|why| format!("a TLS hello naming {h}: {why}"))
                    });
                    return Ok(why.map_or(Ok(buf), Err));
                }
                Ok(None) => {}
                // A hello the destination might read but agentbox cannot: it could name
                // anything, so it does not go.
                Err((e, _)) => return Ok(Err(format!("a TLS hello agentbox cannot read: {e}"))),
            }
        }
        if buf.len() >= MAX_HELLO {
            return Ok(Err("a TLS hello over 64 KiB".into()));
        }
        let old = buf.len();
        buf.resize((old + 4096).min(MAX_HELLO), 0);
        let n = client.read(&mut buf[old..]).await?;
        buf.truncate(old + n);
        if n == 0 {
            // Ended before a whole hello: what came is no hello a server answers.
            return Ok(Ok(buf));
        }
    }
}
