//! The network, decided once: `agentbox allow` (the file before and after, idempotent, comments
//! kept, a project file then untrusted), a running filtered session picking up an allowed
//! host, the line after a failed run, the fast failure with the network off, and named
//! private hosts. Servers on the host's loopback only; every loop is bounded.

use std::ffi::OsStr;
use std::fs;
use std::net::IpAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{self, World, each_user, http_ok};

/// An HTTP server on `ip` answering every request with 200; bounded in requests and time.
fn http_server_on(ip: IpAddr, max: usize) -> u16 {
    harness::http_server(ip, max, |_, _| http_ok(b"ok"))
}

fn http_server(max: usize) -> u16 {
    http_server_on(IpAddr::from([127, 0, 0, 1]), max)
}

/// A curl through the relay's proxy printing its status (000: no HTTP answer).
fn curl(url: &str) -> String {
    format!(
        "curl -s -m 10 --noproxy '' -x http://127.0.0.1:3128 -o /dev/null -w '%{{http_code}} ' {url}; "
    )
}

fn allow(w: &World, args: &[&str]) -> crate::harness::Out {
    let mut a: Vec<&OsStr> = vec![OsStr::new("allow")];
    a.extend(args.iter().map(OsStr::new));
    w.run_args(&a)
}

#[test]
fn allow_round_trip_edits_the_file_once_and_keeps_its_comments() {
    each_user(|w| {
        let port = http_server(4);
        let host = format!("allowed.test:{port}");
        let flags = [
            "--net",
            "filtered",
            "--test-resolve",
            "allowed.test=127.0.0.1",
        ];
        let script = curl(&format!("http://allowed.test:{port}/"));
        // Control: refused before, and the exit summary names the command that allows it.
        let out = w.sh(&flags, &script);
        assert_eq!(out.ok(), "403 ");
        assert!(
            out.stderr()
                .contains(&format!("to allow: agentbox allow {host}")),
            "{}",
            out.stderr()
        );

        let config = w.home.join(".config/agentbox/config.toml");
        let before =
            "# mine\n[defaults]\n# hosts I trust\nallow_domains = [\"other.test\"] # keep\n";
        fs::create_dir_all(config.parent().unwrap()).unwrap();
        fs::write(&config, before).unwrap();
        w.chown_all();
        let out = allow(w, &[&host]);
        assert!(out.ok().contains("config.toml"), "{}", out.stdout());
        assert!(
            out.stdout().contains(&format!(
                "+ allow_domains = [\"other.test\", \"{host}\"] # keep"
            )),
            "{}",
            out.stdout()
        );
        let after = fs::read_to_string(&config).unwrap();
        assert_eq!(
            after,
            format!(
                "# mine\n[defaults]\n# hosts I trust\nallow_domains = [\"other.test\", \"{host}\"] # keep\n"
            )
        );
        // Idempotent: the same host again changes nothing.
        let out = allow(w, &[&host]);
        assert!(out.ok().contains("already allows"), "{}", out.stdout());
        assert_eq!(fs::read_to_string(&config).unwrap(), after);
        // And a bad pattern writes nothing.
        assert_eq!(allow(w, &["x.test:0"]).code(), 125);
        assert_eq!(fs::read_to_string(&config).unwrap(), after);

        // The allowed host is reachable in the next run.
        assert_eq!(w.sh(&flags, &script).ok(), "200 ");
    });
}

#[test]
fn allow_into_the_project_file_leaves_it_untrusted() {
    each_user(|w| {
        let file = w.project.join(".agentbox.toml");
        fs::write(&file, "# the project's\nhide = [\"*.csv\"]\n").unwrap();
        w.chown_all();
        let out = allow(w, &["--project", "proj.test"]);
        out.ok();
        assert!(out.stderr().contains("agentbox trust"), "{}", out.stderr());
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            "# the project's\nhide = [\"*.csv\"]\nallow_domains = [\"proj.test\"]\n"
        );
        // Untrusted: the run ignores the allowance and says so; trusted, it does not.
        let out = w.sh(&[], "true");
        assert!(
            out.stderr().contains("ignoring allow_domains"),
            "{}",
            out.stderr()
        );
        w.run_args(&[OsStr::new("trust"), OsStr::new("--yes")]).ok();
        let out = w.sh(&[], "true");
        assert!(!out.stderr().contains("ignoring"), "{}", out.stderr());

        // A project file that is a symlink (planted by an earlier run) is not followed.
        let outside = w.home.join("rc");
        fs::write(&outside, "# rc\n").unwrap();
        fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(&outside, &file).unwrap();
        w.chown_all();
        let out = allow(w, &["--project", "proj.test"]);
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(out.stderr().contains("symlink"), "{}", out.stderr());
        assert_eq!(fs::read_to_string(&outside).unwrap(), "# rc\n");
    });
}

#[test]
fn from_learn_takes_the_refused_hosts_of_a_net_log() {
    each_user(|w| {
        let port = http_server(4);
        let log = w.project.join("net.log");
        let script = curl(&format!("http://wanted.test:{port}/"));
        let out = w.sh(
            &[
                "--learn",
                "--test-resolve",
                "wanted.test=127.0.0.1",
                "--net-log",
                log.to_str().unwrap(),
            ],
            &script,
        );
        assert_eq!(out.ok(), "403 ");
        assert!(
            out.stderr()
                .contains(&format!("for good:  agentbox allow wanted.test:{port}")),
            "{}",
            out.stderr()
        );
        let out = allow(w, &["--from-learn", "net.log"]);
        out.ok();
        let config = fs::read_to_string(w.home.join(".config/agentbox/config.toml")).unwrap();
        assert!(
            config.contains(&format!("\"wanted.test:{port}\"")),
            "{config}"
        );
    });
}

#[test]
fn a_running_session_picks_up_a_host_allowed_meanwhile() {
    each_user(|w| {
        let port = http_server(8);
        let status = w.project.join("status");
        // The agent's own attempt first: the project file is writable inside, but an
        // untrusted project file loosens nothing, also not live. Then at most 60 tries,
        // half a second apart.
        let script = format!(
            "printf 'allow_domains = [\"live.test:{port}\"]\\n' > .agentbox.toml; \
             for i in $(seq 60); do c=$(curl -s -m 5 --noproxy '' -x http://127.0.0.1:3128 \
             -o /dev/null -w '%{{http_code}}' http://live.test:{port}/); echo $c >> status; \
             [ $c = 200 ] && exit 0; sleep 0.5; done; exit 1"
        );
        let child = w
            .cmd(
                &[
                    "run",
                    "--net",
                    "filtered",
                    "--test-resolve",
                    "live.test=127.0.0.1",
                    "--",
                    "sh",
                    "-c",
                    &script,
                ]
                .map(OsStr::new),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Control: refused while not allowed (the planted project file included).
        let deadline = Instant::now() + Duration::from_secs(30);
        while !fs::read_to_string(&status).is_ok_and(|s| s.contains("403")) {
            assert!(Instant::now() < deadline, "the session never asked");
            std::thread::sleep(Duration::from_millis(100));
        }
        allow(w, &[&format!("live.test:{port}")]).ok();
        let out = child.wait_with_output().unwrap();
        let seen = fs::read_to_string(&status).unwrap();
        assert!(
            out.status.success(),
            "{seen}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            seen.starts_with("403\n") && seen.ends_with("200\n"),
            "{seen}"
        );
    });
}

#[test]
fn a_failed_run_says_what_the_network_did() {
    each_user(|w| {
        // Network off: a failure gets the line, a success does not.
        let out = w.sh(&[], "exit 3");
        assert_eq!(out.code(), 3);
        assert!(
            out.stderr().contains("with the network off")
                && out.stderr().contains("agentbox allow HOST")
                && out.stderr().contains("--learn"),
            "{}",
            out.stderr()
        );
        let out = w.sh(&[], "true");
        out.ok();
        assert!(!out.stderr().contains("network off"), "{}", out.stderr());
        // Filtered, a host blocked: the line names the command that allows it.
        let port = http_server(4);
        let flags = [
            "--net",
            "filtered",
            "--test-resolve",
            "blocked.test=127.0.0.1",
        ];
        let url = format!("http://blocked.test:{port}/");
        let out = w.sh(&flags, &format!("{} exit 1", curl(&url)));
        assert_eq!(out.code(), 1);
        assert!(
            out.stderr()
                .contains(&format!("`agentbox allow blocked.test:{port}`")),
            "{}",
            out.stderr()
        );
        // The same blocked request in a run that succeeds: the summary, not the line.
        let out = w.sh(&flags, &curl(&url));
        out.ok();
        assert!(!out.stderr().contains("failed"), "{}", out.stderr());
    });
}

#[test]
fn with_the_network_off_npm_fails_at_once() {
    each_user(|w| {
        w.write(
            "home/src/project/package.json",
            r#"{"name":"x","version":"1.0.0","dependencies":{"left-pad":"1.3.0"}}"#,
        );
        // A name: its lookup fails at once in the empty namespace (EAI_AGAIN), and npm
        // retries that with a 10 s back-off unless told not to. `timeout` bounds both runs.
        let script = "timeout 8 npm install --registry http://registry.test:4873/ \
                      --no-audit --no-fund >/dev/null 2>&1; echo $?";
        let out = w.sh(&[], script);
        let code: i32 = out.stdout().trim().parse().unwrap();
        assert!(code != 0 && code != 124, "npm: {code}\n{}", out.stderr());
        // Control: npm's own retries, as a user's environment would have them, hang it.
        let out = w.sh(
            &[
                "--env",
                "npm_config_fetch_retries=2",
                "--env",
                "npm_config_fetch_retry_mintimeout=20000",
            ],
            script,
        );
        assert_eq!(out.stdout().trim(), "124", "{}", out.stderr());
        // And the lookup itself fails at once, also with a resolver file inside.
        assert!(w.project.is_dir(), "the project is gone");
        let out = w.sh(&[], "timeout 5 getent hosts registry.test; echo $?");
        assert_eq!(out.stdout().trim(), "2", "{}", out.stderr());
    });
}

#[test]
fn a_private_address_is_reached_only_by_a_host_named_for_it() {
    // The machine's own name resolves (through /etc/hosts, which the proxy's resolver reads)
    // to a non-public address on every usual system: a stand-in for a company mirror.
    let name = fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_ascii_lowercase();
    let ip = std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), 80))
        .unwrap()
        .map(|a| a.ip())
        .find(|ip| ip.is_ipv4())
        .expect("the hostname does not resolve to an IPv4 address: add it to /etc/hosts");
    assert!(
        ip.is_loopback() || matches!(ip, IpAddr::V4(v4) if v4.is_private()),
        "{name} resolves to {ip}, not a private address: this test needs /etc/hosts to map it"
    );
    each_user(|w| {
        let port = http_server_on(ip, 4);
        let pattern = format!("{name}:{port}");
        let script = curl(&format!("http://{name}:{port}/"));
        // Control: allowed, but refused for its address, and the refusal says how.
        let out = w.sh(&["--allow-domain", &pattern], &script);
        assert_eq!(out.ok(), "403 ");
        assert!(
            out.stderr()
                .contains(&format!("--allow-private-host {name}")),
            "{}",
            out.stderr()
        );
        // Named for it: reached.
        let out = w.sh(&["--allow-private-host", &pattern], &script);
        assert_eq!(out.ok(), "200 ", "{}", out.stderr());
        // The same from the config file, written by `agentbox allow --private` (which takes
        // names only: an address pattern reaches its own address already).
        assert_eq!(allow(w, &["--private", "10.0.0.1"]).code(), 125);
        allow(w, &["--private", &pattern]).ok();
        let out = w.sh(&["--net", "filtered"], &script);
        assert_eq!(out.ok(), "200 ", "{}", out.stderr());
    });
}

#[test]
fn a_registry_preset_allows_what_the_tools_own_config_names() {
    each_user(|w| {
        let npm_port = http_server(4);
        let go_port = http_server(4);
        // Each tool pointed at a loopback stand-in through its own config, as the user.
        let st = w
            .program(OsStr::new("npm"))
            .args(["config", "set", "registry"])
            .arg(format!("http://127.0.0.1:{npm_port}/"))
            .status()
            .unwrap();
        assert!(st.success());
        let st = w
            .program(OsStr::new("go"))
            .args(["env", "-w"])
            .arg(format!("GOPROXY=http://127.0.0.1:{go_port},direct"))
            .arg("GOSUMDB=off")
            .status()
            .unwrap();
        assert!(st.success());
        let script = [npm_port, go_port]
            .map(|p| curl(&format!("http://127.0.0.1:{p}/")))
            .concat();
        // Control: not allowed without the preset.
        assert_eq!(w.sh(&["--net", "filtered"], &script).ok(), "403 403 ");
        let out = w.sh(
            &["--allow-registry", "npm", "--allow-registry", "go"],
            &script,
        );
        assert_eq!(out.ok(), "200 200 ", "{}", out.stderr());
        assert!(
            out.stderr().contains(&format!(
                "npm's configured registries: allowing 127.0.0.1:{npm_port}"
            )),
            "{}",
            out.stderr()
        );
        // The config key does the same.
        let config = w.home.join(".config/agentbox/config.toml");
        fs::create_dir_all(config.parent().unwrap()).unwrap();
        fs::write(&config, "[defaults]\nallow_registries = [\"npm\"]\n").unwrap();
        w.chown_all();
        let out = w.sh(&[], &curl(&format!("http://127.0.0.1:{npm_port}/")));
        assert_eq!(out.ok(), "200 ", "{}", out.stderr());
        fs::remove_file(&config).unwrap();
    });
}

#[test]
fn a_registry_preset_never_asks_a_tool_the_project_holds() {
    each_user(|w| {
        let port = http_server(2);
        // An `npm` that names a registry the user never chose.
        let fake = format!("#!/bin/sh\necho '{{\"registry\": \"http://127.0.0.1:{port}/\"}}'\n");
        for dir in ["home/src/project/bin", "bin"] {
            let p = w.write(&format!("{dir}/npm"), &fake);
            fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        let script = curl(&format!("http://127.0.0.1:{port}/"));
        let run = |bin: &std::path::Path| {
            let mut c = w.cmd(
                &["run", "--allow-registry", "npm", "--", "sh", "-c", &script].map(OsStr::new),
            );
            c.env(
                "PATH",
                format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()),
            );
            crate::harness::Out(c.output().unwrap())
        };
        // Control: the same tool outside the writable roots is asked, and believed.
        let out = run(&w.base.join("bin"));
        assert_eq!(out.ok(), "200 ", "{}", out.stderr());
        // In the project: skipped (the real npm, if any, answers instead).
        let out = run(&w.project.join("bin"));
        assert_eq!(out.ok(), "403 ", "{}", out.stderr());
    });
}
