//! The network is off unless allowed; and `--net filtered`: the allowlist through agentbox's proxy, against servers on the host's
//! loopback only. Test names are mapped to 127.0.0.1 on the proxy side with the hidden
//! `--test-resolve` flag; nothing leaves the machine.

use std::ffi::OsStr;
use std::fs;
use std::net::IpAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{
    self, each_user, escape_suite, http_ok, loopback_server, processes_with, send_term,
};

/// A loopback HTTP server answering every request with `body`; bounded in requests and time.
fn http_server(body: &'static str, max: usize) -> u16 {
    harness::http_server(IpAddr::from([127, 0, 0, 1]), max, move |_, _| {
        http_ok(body.as_bytes())
    })
}

/// One curl call printing its status code (000: no HTTP answer); never fails the script.
/// `--noproxy ''` where a proxy is named: NO_PROXY (loopback) would otherwise win over `-x`.
fn curl(args: &str) -> String {
    let args = if args.starts_with("-x") {
        format!("--noproxy '' {args}")
    } else {
        args.to_owned()
    };
    format!("curl -s -m 10 -o /dev/null -w '%{{http_code}} ' {args}; ")
}

#[test]
fn the_allowlist_holds_for_every_kind_of_client() {
    each_user(|w| {
        let port = http_server("hello-allowed", 40);
        let allowed = format!("http://allowed.test:{port}/");
        let log = w.home.join("net.log");
        let script = [
            curl(&allowed),                                          // plain HTTP forwarding
            curl(&format!("-p {allowed}")),                          // CONNECT
            curl(&format!("-x socks5h://127.0.0.1:3128 {allowed}")), // SOCKS5, remote name
            curl(&format!("--noproxy '*' {allowed}")),               // ignores the proxy: captured
            curl(&format!("http://denied.test:{port}/")),            // not allowed
            curl(&format!(
                "-x http://127.0.0.1:3128 http://127.0.0.1:{port}/"
            )), // IP literal
            curl("-x http://127.0.0.1:3128 http://169.254.169.254/latest/"), // cloud metadata
            curl(&format!("--noproxy '*' http://denied.test:{port}/")), // captured, not allowed
            "getent hosts denied.test || echo nxdomain; true".to_owned(),
        ]
        .concat();
        let allow = format!("allowed.test:{port}");
        let out = w.sh(
            &[
                "--allow-domain",
                &allow,
                "--test-resolve",
                "allowed.test=127.0.0.1",
                "--test-resolve",
                "denied.test=127.0.0.1",
                "--net-log",
                log.to_str().unwrap(),
            ],
            &script,
        );
        assert_eq!(
            out.ok(),
            "200 200 200 200 403 403 403 000 nxdomain\n",
            "stderr: {}",
            out.stderr()
        );
        // The summary names what was blocked.
        assert!(
            out.stderr().contains("agentbox: blocked"),
            "{}",
            out.stderr()
        );
        assert!(out.stderr().contains("denied.test"), "{}", out.stderr());

        // Every decision is a JSON line; a denied name was decided before any lookup.
        let lines: Vec<serde_json::Value> = fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let denied = lines.iter().find(|l| l["host"] == "denied.test").unwrap();
        assert_eq!(denied["allowed"], false);
        assert!(
            denied["reason"].as_str().unwrap().contains("allowlist"),
            "{denied}"
        );
        let ok = lines.iter().find(|l| l["host"] == "allowed.test").unwrap();
        assert_eq!(ok["allowed"], true);
        assert!(ok["bytes_down"].as_u64().unwrap() > 0, "{ok}");
        for field in ["time", "port", "method", "reason", "bytes_up"] {
            assert!(!ok[field].is_null(), "{field} missing: {ok}");
        }
        let metadata = lines
            .iter()
            .find(|l| l["host"] == "169.254.169.254")
            .unwrap();
        assert_eq!(metadata["allowed"], false);

        // Control: with the host network the same IP literal is reachable directly.
        let out = w
            .sh(
                &["--allow-net"],
                &curl(&format!("http://127.0.0.1:{port}/")),
            )
            .ok();
        assert_eq!(out, "200 ");
    });
}

#[test]
fn an_explicit_loopback_allow_reaches_the_host_and_nothing_else_does() {
    each_user(|w| {
        let port = http_server("hello-loopback", 10);
        let allow = format!("127.0.0.1:{port}");
        // With the host's loopback allowed, loopback goes through the proxy (NO_PROXY names only
        // the broker's own address).
        let out = w
            .sh(
                &["--allow-domain", &allow],
                &curl(&format!("http://127.0.0.1:{port}/")),
            )
            .ok();
        assert_eq!(out, "200 ");
        // A name that resolves to loopback is refused (DNS rebinding), even when allowed.
        let out = w
            .sh(
                &["--allow-domain", &format!("localhost.example:{port}")],
                &curl(&format!(
                    "-x http://127.0.0.1:3128 http://localhost:{port}/"
                )),
            )
            .ok();
        assert_eq!(out, "403 ");
    });
}

#[test]
fn learn_prints_the_hosts_that_were_asked_for() {
    each_user(|w| {
        let port = http_server("x", 10);
        let script = format!(
            "{}{}true",
            curl(&format!("http://wanted.test:{port}/")),
            curl("https://api.wanted.test/")
        );
        let out = w.sh(
            &["--learn", "--test-resolve", "wanted.test=127.0.0.1"],
            &script,
        );
        assert_eq!(out.ok(), "403 000 ");
        let err = out.stderr();
        assert!(err.contains("--learn"), "{err}");
        assert!(
            err.contains(&format!("--allow-domain wanted.test:{port}")),
            "{err}"
        );
        assert!(err.contains("--allow-domain api.wanted.test"), "{err}");
        assert!(err.contains("allow_domains = ["), "{err}");
    });
}

#[test]
fn bad_patterns_are_refused() {
    each_user(|w| {
        for bad in ["*", "*.com", "host:0", "a..b"] {
            let out = w.sh(&["--allow-domain", bad], "true");
            assert_eq!(out.code(), 125, "{bad}: {}", out.stderr());
            assert!(out.stderr().contains("hint:"), "{}", out.stderr());
        }
        let out = w.sh(&["--allow-net", "--allow-domain", "a.example.com"], "true");
        assert_eq!(out.code(), 125);
    });
}

/// The socket directory is private while the run lasts and gone afterwards; when agentbox is
/// killed, the sandbox dies with it and the next run removes what was left.
#[test]
fn the_socket_directory_does_not_outlive_the_run() {
    each_user(|w| {
        let base = w.home.join(".run/agentbox");
        let listing = || -> Vec<String> {
            fs::read_dir(&base)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.starts_with("net-"))
                        .collect()
                })
                .unwrap_or_default()
        };
        w.sh(&["--net", "filtered"], "true").ok();
        assert_eq!(listing(), Vec::<String>::new());

        let marker = format!(
            "{}.{}",
            7000 + std::process::id() % 1000,
            w.user.map_or(0, |u| u.uid)
        );
        // The marker is a whole argv word only of the sleep inside, not of agentbox's own argv.
        let inner = format!("sleep {marker}");
        let mut child = w
            .cmd(&["run", "--net", "filtered", "--", "sh", "-c", &inner].map(OsStr::new))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while processes_with(&marker).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            listing().len(),
            1,
            "the socket directory exists during the run"
        );
        let mode = fs::metadata(base.join(&listing()[0])).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o700
        );
        child.kill().unwrap();
        child.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !processes_with(&marker).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            processes_with(&marker).is_empty(),
            "the sandbox outlived agentbox"
        );
        assert_eq!(listing().len(), 1, "SIGKILL leaves the directory");
        w.sh(&["--net", "filtered"], "true").ok();
        assert_eq!(listing(), Vec::<String>::new(), "the next run removes it");
    });
}

#[test]
fn the_escape_suite_passes_with_the_filtered_network() {
    each_user(|w| {
        let (code, not_passing, _) = escape_suite(w, &["--allow-domain", "example.com"]);
        assert_eq!(not_passing, Vec::<String>::new());
        assert_eq!(code, 0);
    });
}

/// SIGTERM sent to agentbox reaches the agent, which can end cleanly, when agentbox stays as
/// the sandbox's parent (the filtered network, or limits).
#[test]
fn termination_reaches_the_agent() {
    each_user(|w| {
        for flags in [&["--net", "filtered"][..], &["--pids", "200"][..]] {
            let _ = fs::remove_file(w.project.join("term.txt"));
            let _ = fs::remove_file(w.project.join("ready.txt"));
            let script = "trap 'echo got-term > term.txt; exit 3' TERM; echo ready > ready.txt; \
                          sleep 30 & wait";
            let mut args = vec!["run", "-q"];
            args.extend_from_slice(flags);
            args.extend(["--", "sh", "-c", script]);
            let mut child = w
                .cmd(&args.iter().map(OsStr::new).collect::<Vec<_>>())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut ready = None;
            while ready.is_none() && Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                ready = fs::read_to_string(w.project.join("ready.txt")).ok();
                std::thread::sleep(Duration::from_millis(20));
            }
            if ready.is_none() {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                let err = String::from_utf8_lossy(&out.stderr).into_owned();
                if err.contains("cannot enforce") {
                    eprintln!("note: limits not available to this user: {err}");
                    continue;
                }
                panic!("never started ({flags:?}): {err}");
            }
            std::thread::sleep(Duration::from_millis(100));
            send_term(child.id());
            let status = child.wait().unwrap();
            assert_eq!(status.code(), Some(3), "{flags:?}");
            assert_eq!(
                fs::read_to_string(w.project.join("term.txt")).unwrap(),
                "got-term\n",
                "{flags:?}"
            );
        }
    });
}

#[test]
fn network_is_off_unless_allowed() {
    each_user(|w| {
        let (port, server) = loopback_server(1);
        let probe = format!(
            "if exec 3<>/dev/tcp/127.0.0.1/{port}; then head -n1 <&3; else echo no-connect; fi"
        );
        let script = format!("bash -c '{probe}' 2>/dev/null");
        let out = w.sh(&[], &script).ok();
        assert!(
            out.contains("no-connect") && !out.contains("hello"),
            "{out}"
        );
        let out = w.sh(&["--allow-net"], &script).ok();
        assert!(out.contains("hello-from-host"), "{out}");
        let out = w
            .sh(
                &["--net", "host"],
                "cat /etc/resolv.conf >/dev/null && echo ok",
            )
            .ok();
        assert!(out.contains("ok"));
        assert_eq!(server.join().unwrap(), 1);
    });
}
