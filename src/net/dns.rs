//! The smallest DNS the relay needs: read one question from a query and build the answer (an
//! A record with a synthetic address, no data, NXDOMAIN, or "not implemented"). It never asks
//! another server: names are decided by the allowlist, and traffic goes by name through the
//! host's proxy. Pure: bytes in, bytes out.

use std::net::Ipv4Addr;

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;

/// The one question of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub id: u16,
    /// Lowercase, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The question section as it came, echoed in the answer.
    raw: Vec<u8>,
    recursion_desired: bool,
}

/// How to answer a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    A(Ipv4Addr),
    /// The name exists, but not with this record type (AAAA for an allowed name).
    NoData,
    NxDomain,
    NotImplemented,
}

/// Parses a query with exactly one question (QDCOUNT 1), no compression in it.
pub fn parse_query(packet: &[u8]) -> Option<Question> {
    if packet.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let flags = u16::from_be_bytes([packet[2], packet[3]]);
    let is_query = flags & 0x8000 == 0;
    let qdcount = u16::from_be_bytes([packet[4], packet[5]]);
    if !is_query || qdcount != 1 {
        return None;
    }
    let mut pos = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = *packet.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        let label = packet.get(pos..pos + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += len;
    }
    let tail = packet.get(pos..pos + 4)?;
    let qtype = u16::from_be_bytes([tail[0], tail[1]]);
    let qclass = u16::from_be_bytes([tail[2], tail[3]]);
    Some(Question {
        id,
        name: labels.join("."),
        qtype,
        qclass,
        raw: packet[12..pos + 4].to_vec(),
        recursion_desired: flags & 0x0100 != 0,
    })
}

/// The response to `q`.
pub fn build_response(q: &Question, answer: Answer) -> Vec<u8> {
    let rcode: u16 = match answer {
        Answer::A(_) | Answer::NoData => 0,
        Answer::NxDomain => 3,
        Answer::NotImplemented => 4,
    };
    // QR, AA (we are the authority for what this sandbox may reach), RA, RD echoed.
    let flags: u16 =
        0x8000 | 0x0400 | 0x0080 | if q.recursion_desired { 0x0100 } else { 0 } | rcode;
    let ancount: u16 = matches!(answer, Answer::A(_)).into();
    let mut out = Vec::with_capacity(q.raw.len() + 32);
    out.extend_from_slice(&q.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&ancount.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&q.raw);
    if let Answer::A(ip) = answer {
        out.extend_from_slice(&[0xc0, 0x0c]); // the name, by pointer to the question
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // IN
        out.extend_from_slice(&5u32.to_be_bytes()); // short TTL: the mapping is per sandbox
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn answers_a_with_the_given_address() {
        let q = parse_query(&query("API.Example.com", TYPE_A)).unwrap();
        assert_eq!(
            (q.id, q.name.as_str(), q.qtype),
            (0x1234, "api.example.com", TYPE_A)
        );
        let r = build_response(&q, Answer::A(Ipv4Addr::new(127, 80, 0, 7)));
        assert_eq!(&r[0..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(&r[6..8], &[0, 1], "one answer");
        assert_eq!(&r[r.len() - 4..], &[127, 80, 0, 7]);
    }

    #[test]
    fn nxdomain_and_nodata() {
        let q = parse_query(&query("evil.org", TYPE_A)).unwrap();
        let r = build_response(&q, Answer::NxDomain);
        assert_eq!((r[3] & 0x0f, &r[6..8]), (3, &[0u8, 0][..]));
        let q = parse_query(&query("api.example.com", TYPE_AAAA)).unwrap();
        let r = build_response(&q, Answer::NoData);
        assert_eq!((r[3] & 0x0f, &r[6..8]), (0, &[0u8, 0][..]));
    }

    #[test]
    fn junk_is_not_a_query() {
        assert_eq!(parse_query(b""), None);
        assert_eq!(parse_query(&[0; 11]), None);
        let mut q = query("a.b", TYPE_A);
        q[2] |= 0x80; // a response, not a query
        assert_eq!(parse_query(&q), None);
        let mut q = query("a.b", TYPE_A);
        q.truncate(15);
        assert_eq!(parse_query(&q), None);
    }
}
