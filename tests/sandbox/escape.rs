//! The escape suite (`agentbox test`): it passes on the default sandbox, and each flag that
//! weakens the sandbox is reported as exactly the leaks it opens.

use std::fs;

use crate::harness::{each_user, escape_suite, host_interfaces_beyond_lo, host_route, leaks};

#[test]
fn escape_suite_passes_on_the_default_sandbox() {
    each_user(|w| {
        w.write("home/.ssh/id_rsa", "PRIVATE KEY");
        w.write("home/src/project/.env", "S=1");
        let (code, not_passing, doc) = escape_suite(w, &[]);
        assert_eq!(not_passing, Vec::<String>::new());
        assert_eq!(code, 0);
        assert!(doc["total"].as_u64().unwrap() >= 50, "{doc}");
        assert_eq!(doc["passed"], true);
        // Every class that blocks something also has a positive control somewhere.
        let probes = doc["probes"].as_array().unwrap();
        let allowed = probes.iter().filter(|p| p["expected"] == "allowed").count();
        assert!(allowed >= 15, "only {allowed} positive controls");
    });
}

#[test]
fn escape_suite_reports_exactly_the_weakening() {
    each_user(|w| {
        w.write("home/.ssh/id_rsa", "PRIVATE KEY");
        w.write("home/src/project/.env", "S=1");
        let check = |flags: &[&str], expected: Vec<String>| {
            let (code, mut got, _) = escape_suite(w, flags);
            got.sort();
            assert_eq!(got, expected, "flags {flags:?}");
            assert_eq!(code, 1, "flags {flags:?}");
        };

        let ssh = w.home.join(".ssh");
        check(&["--ro", ssh.to_str().unwrap()], leaks(&["home-ssh"]));

        check(
            &["--no-hide-env"],
            leaks(&[
                "canary-env",
                "canary-env-deep",
                "canary-key",
                "canary-secret-dir",
                "canary-symlink",
                "canary-hard-link",
                "canary-upper-case",
                "canary-private-pem",
                "canary-env-write",
                "project-secrets",
            ]),
        );

        // perf_event_open is still refused by the kernel where perf_event_paranoid > 2.
        let paranoid: i32 = fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
            .map_or(4, |s| s.trim().parse().unwrap_or(4));
        let mut debug = vec![
            "ptrace",
            "process-vm-readv",
            "process-vm-writev",
            "pidfd-getfd",
            "proc-mem-write",
        ];
        if paranoid <= 2 {
            debug.push("perf-event-open");
        }
        check(&["--allow-debug"], leaks(&debug));

        // Route probes only look up routes; what the host network offers decides them.
        let mut net = vec!["net-host-loopback", "unix-abstract-host"];
        let routes = [
            ("net-route", "192.0.2.1:9"),
            ("net-route-v6", "[2001:db8::1]:9"),
            ("net-metadata", "169.254.169.254:80"),
        ];
        for (id, addr) in routes {
            if host_route(addr) {
                net.push(id);
            }
        }
        if host_interfaces_beyond_lo() {
            net.push("net-interfaces");
        }
        let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let external = resolv
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .map(str::trim)
            .find(|s| !s.starts_with("127.") && *s != "::1");
        let dns = match external {
            Some(s) if s.contains(':') => host_route(&format!("[{s}]:53")),
            Some(s) => host_route(&format!("{s}:53")),
            None => host_interfaces_beyond_lo(),
        };
        if dns {
            net.push("net-dns");
        }
        check(&["--allow-net"], leaks(&net));
    });
}
