//! Deciding by content, for the names that hold public material as often as private (`*.pem`,
//! `*.crt`, `*.key`, `*.cer`) and for config files that only sometimes hold a token
//! (`.yarnrc.yml`): a public CA bundle must stay readable (Python's `certifi/cacert.pem`; masking
//! it breaks TLS for requests and httpx), a private key must not. What cannot be read or is too
//! large to read is masked: the scan fails closed. Reads only; opens without following a
//! symlink unless the entry is one (then its target's content decides, and only a regular file
//! is opened).

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

use crate::rules::Check;

/// Files larger than this are masked unread: the largest CA bundles are well under 1 MiB, and
/// a scan must not read a planted gigabyte.
pub(super) const MAX_SNIFF: u64 = 2 << 20;

/// Whether the entry `name` in `dir` is a secret under `check` (`Check::Name` is always one).
/// `follow`: the entry is a symlink; its target is read (the host masks the target).
pub(super) fn is_secret(dir: &OwnedFd, name: &std::ffi::CStr, check: Check, follow: bool) -> bool {
    if check == Check::Name {
        return true;
    }
    match read(dir, name, follow) {
        Some(bytes) => decide(&bytes, check),
        None => true,
    }
}

/// The whole content of a regular file, or `None` when it is not one, cannot be read, or is
/// larger than `MAX_SNIFF`.
fn read(dir: &OwnedFd, name: &std::ffi::CStr, follow: bool) -> Option<Vec<u8>> {
    // Only a regular file is opened: opening a device can have effects (a tape rewinds, a
    // watchdog arms), and a fifo would block.
    let at = if follow {
        AtFlags::empty()
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    let st = rfs::statat(dir.as_fd(), name, at).ok()?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return None;
    }
    let mut flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    // O_NOATIME: the scan changes nothing on the host, access times included (only the
    // owner may ask for it).
    let fd = match rfs::openat(dir.as_fd(), name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => rfs::openat(dir.as_fd(), name, flags, Mode::empty()),
        opened => opened,
    }
    .ok()?;
    let st = rfs::fstat(&fd).ok()?;
    let size = u64::try_from(st.st_size).ok()?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || size > MAX_SNIFF {
        return None;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).ok()?);
    std::fs::File::from(fd)
        .take(MAX_SNIFF + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    (bytes.len() as u64 <= MAX_SNIFF).then_some(bytes)
}

/// Whether the regular file at `path` holds (or may hold) a private key; unreadable or too
/// large counts as one. Does not follow a symlink at the last component.
pub(super) fn file_holds_private_key(path: &std::path::Path) -> bool {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return true;
    };
    let dir = rfs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    );
    let name = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(name));
    match (dir, name) {
        (Ok(dir), Ok(name)) => read(&dir, &name, false).is_none_or(|b| holds_private_key(&b)),
        _ => true,
    }
}

/// The decision on content that was read.
pub(super) fn decide(bytes: &[u8], check: Check) -> bool {
    match check {
        Check::Name => true,
        Check::PrivateKey => holds_private_key(bytes),
        Check::Holds(words) => words.iter().any(|w| contains(bytes, w.as_bytes())),
    }
}

/// Whether key-or-certificate content holds (or may hold) a private key. Shown only: an empty
/// file, PEM text whose blocks are all public (certificates, public keys, CRLs, requests,
/// parameters), or a DER X.509 certificate. Everything else is taken as private: PEM `PRIVATE
/// KEY` blocks (PKCS#8, RSA, EC, DSA, ENCRYPTED, OPENSSH, PGP), PuTTY keys, PKCS#12 and other
/// binary, and text that is not PEM (a `.key` file holding an API key).
pub(super) fn holds_private_key(bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return false;
    }
    if contains(bytes, b"PRIVATE KEY") || contains(bytes, b"PuTTY-User-Key-File") {
        return true;
    }
    if contains(bytes, b"-----BEGIN ") {
        return !pem_blocks_are_public(bytes);
    }
    !der_certificate(bytes)
}

/// PEM labels that hold only public material.
const PUBLIC_LABELS: &[&[u8]] = &[
    b"CERTIFICATE",
    b"TRUSTED CERTIFICATE",
    b"X509 CERTIFICATE",
    b"X509 CRL",
    b"PUBLIC KEY",
    b"RSA PUBLIC KEY",
    b"CERTIFICATE REQUEST",
    b"NEW CERTIFICATE REQUEST",
    b"DH PARAMETERS",
    b"EC PARAMETERS",
    b"PKCS7",
    b"CMS",
];

/// Every `-----BEGIN LABEL-----` carries a public label.
fn pem_blocks_are_public(bytes: &[u8]) -> bool {
    let begin = b"-----BEGIN ";
    let mut rest = bytes;
    while let Some(i) = find(rest, begin) {
        rest = &rest[i + begin.len()..];
        let Some(end) = find(rest, b"-----") else {
            return false;
        };
        if !PUBLIC_LABELS.contains(&&rest[..end]) {
            return false;
        }
        rest = &rest[end..];
    }
    true
}

/// A DER X.509 certificate: SEQUENCE { SEQUENCE tbsCertificate { [0] version | INTEGER serial
/// ... } ... }. A DER private key differs at the first inner element: an INTEGER version
/// directly in the outer SEQUENCE (PKCS#1, PKCS#8, SEC1), or an algorithm SEQUENCE starting
/// with an OID (encrypted PKCS#8); PKCS#12 has an INTEGER first too.
fn der_certificate(bytes: &[u8]) -> bool {
    let Some(inner) = der_body(bytes, 0x30) else {
        return false;
    };
    let Some(tbs) = der_body(inner, 0x30) else {
        return false;
    };
    matches!(tbs.first(), Some(0xa0 | 0x02))
}

/// The content of the DER element at the start of `bytes`, if it has tag `tag` and a length
/// that fits (the content may run past the buffer end only for the outer element's check).
fn der_body(bytes: &[u8], tag: u8) -> Option<&[u8]> {
    if *bytes.first()? != tag {
        return None;
    }
    let first = *bytes.get(1)?;
    let (len, skip) = match first {
        0..=0x7f => (usize::from(first), 2),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let len = bytes
                .get(2..2 + n)?
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, 2 + n)
        }
        _ => return None,
    };
    let body = bytes.get(skip..)?;
    Some(&body[..len.min(body.len())])
}

/// memchr's SIMD search: a CA bundle is a few hundred kB, searched for several words, at every
/// launch (as root, the system's own bundle in /etc too); a naive search took a millisecond.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "# Issuer: CN=Example Root\n-----BEGIN CERTIFICATE-----\nMIIB\n\
                        -----END CERTIFICATE-----\n";

    #[test]
    fn public_material_is_shown_private_keys_are_not() {
        let bundle = CERT.repeat(3);
        assert!(!holds_private_key(bundle.as_bytes()));
        assert!(!holds_private_key(
            b"-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n"
        ));
        assert!(!holds_private_key(b""));
        for label in [
            "PRIVATE KEY",
            "RSA PRIVATE KEY",
            "EC PRIVATE KEY",
            "ENCRYPTED PRIVATE KEY",
            "OPENSSH PRIVATE KEY",
        ] {
            let key = format!("{CERT}-----BEGIN {label}-----\nMIIE\n-----END {label}-----\n");
            assert!(holds_private_key(key.as_bytes()), "{label}");
        }
        // An unknown block, text that is not PEM (an API key in a `.key` file), PuTTY.
        assert!(holds_private_key(
            b"-----BEGIN SECRET THING-----\nx\n-----END"
        ));
        assert!(holds_private_key(b"sk-live-0123456789\n"));
        assert!(holds_private_key(b"PuTTY-User-Key-File-3: ssh-ed25519\n"));
    }

    #[test]
    fn der_certificates_are_told_from_der_keys() {
        // SEQUENCE { SEQUENCE { [0] { INTEGER 2 } ... } ... }: a certificate.
        let cert = [
            0x30, 0x0a, 0x30, 0x05, 0xa0, 0x03, 0x02, 0x01, 0x02, 0x30, 0x00, 0x03,
        ];
        assert!(!holds_private_key(&cert));
        // SEQUENCE { INTEGER 0, ... }: PKCS#1 / PKCS#8 / PKCS#12.
        assert!(holds_private_key(&[
            0x30, 0x82, 0x01, 0x00, 0x02, 0x01, 0x00
        ]));
        // SEQUENCE { SEQUENCE { OID ... } OCTET STRING }: encrypted PKCS#8.
        assert!(holds_private_key(&[
            0x30, 0x08, 0x30, 0x03, 0x06, 0x01, 0x2a, 0x04, 0x01, 0x00
        ]));
        assert!(holds_private_key(&[0x00, 0x01, 0x02]));
    }

    #[test]
    fn words_decide_config_files() {
        let yarn = Check::Holds(&["npmAuthToken"]);
        assert!(decide(b"npmAuthToken: abc\n", yarn));
        assert!(!decide(b"nodeLinker: node-modules\n", yarn));
    }
}
