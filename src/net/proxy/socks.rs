//! The SOCKS5 side of the proxy (RFC 1928): no authentication, CONNECT only, to a domain name
//! (resolved here, as `socks5h://` clients expect), an IPv4 or an IPv6 address. Reads exactly
//! the bytes of the handshake, never past it, so whatever the client sends early stays in the
//! socket for the tunnel.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Kind, Request};
use crate::net::rules::Host;

pub(super) const VERSION: u8 = 5;
const NO_AUTH: u8 = 0x00;
const NO_ACCEPTABLE_METHOD: u8 = 0xff;
const CMD_CONNECT: u8 = 1;
const ATYP_V4: u8 = 1;
const ATYP_NAME: u8 = 3;
const ATYP_V6: u8 = 4;

// Reply codes.
pub(super) const SUCCEEDED: u8 = 0x00;
pub(super) const GENERAL_FAILURE: u8 = 0x01;
pub(super) const NOT_ALLOWED: u8 = 0x02;
pub(super) const NETWORK_UNREACHABLE: u8 = 0x03;
pub(super) const HOST_UNREACHABLE: u8 = 0x04;
pub(super) const REFUSED: u8 = 0x05;
pub(super) const TTL_EXPIRED: u8 = 0x06;
pub(super) const COMMAND_NOT_SUPPORTED: u8 = 0x07;
pub(super) const ADDRESS_NOT_SUPPORTED: u8 = 0x08;

/// A reply with the bind address 0.0.0.0:0: the client has no use for the proxy's own
/// outgoing address, and it is none of its business.
pub(super) fn reply(code: u8) -> [u8; 10] {
    [VERSION, code, 0, ATYP_V4, 0, 0, 0, 0, 0, 0]
}

pub(super) fn dial_error_code(e: &io::Error) -> u8 {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => REFUSED,
        io::ErrorKind::NetworkUnreachable => NETWORK_UNREACHABLE,
        io::ErrorKind::HostUnreachable => HOST_UNREACHABLE,
        io::ErrorKind::TimedOut => TTL_EXPIRED,
        _ => GENERAL_FAILURE,
    }
}

/// The rest of the handshake after the version byte; answers failures itself.
pub(super) async fn read_request<S>(client: &mut S) -> Option<Request>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let count = client.read_u8().await.ok()?;
    let mut methods = [0u8; 255];
    let methods = &mut methods[..usize::from(count)];
    client.read_exact(methods).await.ok()?;
    if !methods.contains(&NO_AUTH) {
        let _ = client.write_all(&[VERSION, NO_ACCEPTABLE_METHOD]).await;
        return None;
    }
    client.write_all(&[VERSION, NO_AUTH]).await.ok()?;

    let mut head = [0u8; 4];
    client.read_exact(&mut head).await.ok()?;
    let [version, command, _reserved, atyp] = head;
    if version != VERSION {
        return None;
    }
    let host = match atyp {
        ATYP_V4 => {
            let mut a = [0u8; 4];
            client.read_exact(&mut a).await.ok()?;
            Some(Host::Ip(IpAddr::V4(Ipv4Addr::from(a))))
        }
        ATYP_V6 => {
            let mut a = [0u8; 16];
            client.read_exact(&mut a).await.ok()?;
            Some(Host::Ip(IpAddr::V6(Ipv6Addr::from(a))))
        }
        ATYP_NAME => {
            let len = client.read_u8().await.ok()?;
            let mut name = [0u8; 255];
            let name = &mut name[..usize::from(len)];
            client.read_exact(name).await.ok()?;
            std::str::from_utf8(name).ok().and_then(Host::parse)
        }
        _ => {
            // The address's length is unknown, so the request cannot even be skipped.
            let _ = client.write_all(&reply(ADDRESS_NOT_SUPPORTED)).await;
            return None;
        }
    };
    let port = client.read_u16().await.ok()?;
    let refuse = match (command, &host) {
        (CMD_CONNECT, Some(_)) => None,
        (CMD_CONNECT, None) => Some(GENERAL_FAILURE),
        _ => Some(COMMAND_NOT_SUPPORTED),
    };
    if let Some(code) = refuse {
        let _ = client.write_all(&reply(code)).await;
        return None;
    }
    Some(Request {
        kind: Kind::Socks,
        host: host?,
        port,
        early: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the handshake on `input` (after the version byte) -> the request and the replies.
    async fn handshake(input: &[u8]) -> (Option<(String, u16)>, Vec<u8>) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        a.write_all(input).await.unwrap();
        a.shutdown().await.unwrap();
        let req = read_request(&mut b).await;
        drop(b);
        let mut out = Vec::new();
        a.read_to_end(&mut out).await.unwrap();
        (req.map(|r| (r.host.to_string(), r.port)), out)
    }

    #[tokio::test]
    async fn requests_and_replies() {
        let ok = [VERSION, NO_AUTH].to_vec();
        let with_reply = |code| [&ok[..], &reply(code)].concat();
        let name = [&[1, 0, 5, 1, 0, 3, 11][..], b"Example.COM", &[1, 187]].concat();
        let cases = [
            (name, Some(("example.com", 443)), ok.clone()),
            (
                vec![2, 2, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80],
                Some(("127.0.0.1", 80)),
                ok.clone(),
            ),
            (
                [&[1, 0, 5, 1, 0, 4][..], &[0; 15], &[1, 0, 22]].concat(),
                Some(("[::1]", 22)),
                ok.clone(),
            ),
            // Only username/password offered.
            (vec![1, 2], None, vec![VERSION, NO_ACCEPTABLE_METHOD]),
            // BIND and UDP ASSOCIATE.
            (
                vec![1, 0, 5, 2, 0, 1, 1, 2, 3, 4, 0, 80],
                None,
                with_reply(COMMAND_NOT_SUPPORTED),
            ),
            (
                vec![1, 0, 5, 3, 0, 1, 1, 2, 3, 4, 0, 80],
                None,
                with_reply(COMMAND_NOT_SUPPORTED),
            ),
            (
                vec![1, 0, 5, 1, 0, 9, 1, 2],
                None,
                with_reply(ADDRESS_NOT_SUPPORTED),
            ),
            (
                vec![1, 0, 5, 1, 0, 3, 3, b'a', b'!', b'b', 0, 80],
                None,
                with_reply(GENERAL_FAILURE),
            ),
            // Wrong version in the request, and hangups mid-handshake: closed without a reply.
            (vec![1, 0, 4, 1, 0, 1, 1, 2, 3, 4, 0, 80], None, ok.clone()),
            (vec![1, 0, 5, 1, 0, 3, 9, b'a'], None, ok.clone()),
            (vec![3, 0], None, vec![]),
            (vec![], None, vec![]),
        ];
        for (input, want, replies) in cases {
            let (got, out) = handshake(&input).await;
            assert_eq!(got, want.map(|(h, p)| (h.to_owned(), p)), "{input:?}");
            assert_eq!(out, replies, "{input:?}");
        }
    }

    #[test]
    fn dial_errors_map_to_codes() {
        let code = |k| dial_error_code(&io::Error::from(k));
        assert_eq!(code(io::ErrorKind::ConnectionRefused), REFUSED);
        assert_eq!(code(io::ErrorKind::TimedOut), TTL_EXPIRED);
        assert_eq!(code(io::ErrorKind::Other), GENERAL_FAILURE);
        assert_eq!(reply(SUCCEEDED), [5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    }
}
