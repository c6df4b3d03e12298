//! Bulk transfers through `--net filtered`: the tunnels' copy moves to splice(2) once a
//! direction is busy (src/net/proxy/tunnel.rs), in the relay inside and the proxy on the host.
//! These check that what arrives is exactly what was sent, both ways, on the CONNECT and the
//! captured paths. Loopback only; bounded in size, connections and time.

use std::net::IpAddr;

use crate::harness::{self, each_user, http_ok};

/// A loopback HTTP server that answers each request with its own body (read by
/// Content-Length): the upload comes back as the download. Bounded in connections and time.
fn echo_server(max: usize) -> u16 {
    harness::http_server(IpAddr::from([127, 0, 0, 1]), max, |_, body| http_ok(&body))
}

#[test]
fn bulk_transfers_arrive_byte_exact_both_ways() {
    each_user(|w| {
        let port = echo_server(4);
        let url = format!("http://bulk.test:{port}/");
        // 24 MiB of random bytes up, the same back down; `cmp` compares them. `-p`: a CONNECT
        // tunnel through the proxy port; `--noproxy '*'`: the captured path.
        let script = format!(
            "head -c 25165824 /dev/urandom >/tmp/up || exit 1; \
             for how in -p \"--noproxy *\"; do \
               rm -f /tmp/down; \
               curl -s -m 60 -H 'Expect:' $how --data-binary @/tmp/up -o /tmp/down {url} \
                 && cmp -s /tmp/up /tmp/down && echo same || echo differs; \
             done"
        );
        let allow = format!("bulk.test:{port}");
        let out = w.sh(
            &[
                "--allow-domain",
                &allow,
                "--test-resolve",
                "bulk.test=127.0.0.1",
            ],
            &script,
        );
        assert_eq!(out.ok(), "same\nsame\n", "stderr: {}", out.stderr());
    });
}
