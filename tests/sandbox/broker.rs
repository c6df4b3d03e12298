//! The credential broker with the real bwrap: a key set on the host never enters the sandbox
//! (environment of every process, command lines, the home, /run), requests through the broker
//! reach the upstream with the real key whatever key the agent sent, and every other way to the
//! brokered host is refused. The positive controls run the same requests with `--no-broker`.
//! The upstream is a recording HTTP server on the host's loopback.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::harness::{self, Out, World, each_user, http_ok};

/// The user's real key; the scripts below never spell it (it would be in their command line).
const REAL: &str = "sk-real-broker-test-7f3a9c";

/// A loopback server recording each request's head, answering 200 "ok" and closing; bounded
/// in connections and time.
fn recorder(max: usize) -> (u16, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let port = harness::http_server(IpAddr::from([127, 0, 0, 1]), max, move |head, _| {
        record.lock().unwrap().push(head.to_owned());
        http_ok(b"ok")
    });
    (port, seen)
}

/// `agentbox run --profile claude FLAGS -- sh -c SCRIPT` with the key (and `base`, when
/// given, as ANTHROPIC_BASE_URL) set on the host.
fn run(w: &World, flags: &[&str], base: Option<&str>, script: &str) -> Out {
    let mut args: Vec<&str> = vec!["run", "--profile", "claude"];
    args.extend_from_slice(flags);
    args.extend(["--", "sh", "-c", script]);
    let mut c = w.cmd(&args.iter().map(std::ffi::OsStr::new).collect::<Vec<_>>());
    c.env("ANTHROPIC_API_KEY", REAL);
    if let Some(b) = base {
        c.env("ANTHROPIC_BASE_URL", b);
    }
    Out(c.output().unwrap())
}

/// A script line writing into the project (dump.txt) what the sandbox shows: every process's
/// environment and command line, and the files of the home, /run and /tmp. The host searches
/// it (`dumped`): the script itself never spells the key.
const DUMP: &str = "{ for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do echo \"== $f\"; \
                    tr '\\0' '\\n' <\"$f\"; done; find \"$HOME\" /run /tmp -type f -readable \
                    -size -20M -exec cat {} +; } >dump.txt 2>/dev/null; true; ";

/// The dump the script made, read on the host (and removed, for the next run).
fn dumped(w: &World) -> String {
    let path = w.project.join("dump.txt");
    let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    std::fs::remove_file(path).unwrap();
    text
}

/// One curl call printing its status code (000: no HTTP answer); never fails the script.
fn curl(args: &str) -> String {
    format!("curl -s -m 10 -o /dev/null -w '%{{http_code}} ' {args}; echo; ")
}

const ATTACKER: &str = "-H 'x-api-key: sk-attacker' -H 'X-Api-Key: sk-attacker-2' \
                        -H 'Authorization: Bearer sk-attacker-3'";

#[test]
fn the_key_stays_outside_and_replaces_any_key_the_agent_sends() {
    each_user(|w| {
        let (port, seen) = recorder(20);
        let base = format!("http://127.0.0.1:{port}/base");
        let allow = format!("127.0.0.1:{port}");
        let log = w.home.join("net.log");
        let log_arg = log.to_str().unwrap();
        // The pattern comes from a file, so no command line (grep's own included) holds it.
        let script = format!(
            "echo key=$ANTHROPIC_API_KEY; echo base=$ANTHROPIC_BASE_URL; {DUMP} echo dumped; \
             env | grep -c sk-agentbox-phantom; {broker} {bypass} {connect} {socks}",
            broker = curl(&format!(
                "{ATTACKER} -d hi \"$ANTHROPIC_BASE_URL/v1/messages\""
            )),
            bypass = curl(&format!(
                "--noproxy '' -x http://127.0.0.1:3128 {ATTACKER} http://{allow}/direct"
            )),
            connect = curl(&format!(
                "--noproxy '' -p -x http://127.0.0.1:3128 http://{allow}/tunnel"
            )),
            socks = curl(&format!(
                "--noproxy '' -x socks5h://127.0.0.1:3128 http://{allow}/socks"
            )),
        );
        let out = run(
            w,
            &["--allow-domain", &allow, "--net-log", log_arg],
            Some(&base),
            &script,
        );
        let stdout = out.ok();
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(lines[0].starts_with("key=sk-agentbox-phantom-"), "{stdout}");
        assert_eq!(lines[1], "base=http://127.0.0.3:3129/anthropic", "{stdout}");
        let dump = dumped(w);
        assert!(!dump.contains(REAL), "the key is inside");
        // The dump saw the environments: the phantom is there.
        assert!(
            dump.contains("ANTHROPIC_API_KEY=sk-agentbox-phantom-"),
            "{dump}"
        );
        assert_eq!(lines[4].trim(), "200", "through the broker: {stdout}");
        assert_eq!(lines[5].trim(), "403", "plain HTTP around it: {stdout}");
        assert_ne!(lines[6].trim(), "200", "CONNECT around it: {stdout}");
        assert_ne!(lines[7].trim(), "200", "SOCKS around it: {stdout}");
        assert!(!stdout.contains(REAL) && !out.stderr().contains(REAL));
        // The upstream saw one request: the broker's, with the user's key alone.
        let heads = seen.lock().unwrap().clone();
        assert_eq!(heads.len(), 1, "{heads:?}");
        assert!(
            heads[0].starts_with("POST /base/v1/messages HTTP/1.1"),
            "{heads:?}"
        );
        assert!(
            heads[0].contains(&format!("x-api-key: {REAL}\r\n")),
            "{heads:?}"
        );
        assert!(
            !heads[0].contains("sk-attacker")
                && !heads[0].to_ascii_lowercase().contains("authorization")
        );
        // The net log: the brokered request and the three refusals, no key, no header.
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("/base/v1/messages -> 200"), "{text}");
        assert_eq!(
            text.matches("ANTHROPIC_API_KEY is brokered").count(),
            3,
            "{text}"
        );
        assert!(
            !text.contains(REAL) && !text.contains("sk-attacker"),
            "{text}"
        );
        assert!(
            out.stderr().contains("blocked 3 request(s)"),
            "{}",
            out.stderr()
        );
    });
}

#[test]
fn without_the_broker_the_attackers_key_would_reach_the_host() {
    // The positive control of the test above: the same request around the broker, with
    // --no-broker, reaches the upstream with the attacker's key; and the user's key is not
    // passed at all unless asked for with --env.
    each_user(|w| {
        let (port, seen) = recorder(5);
        let base = format!("http://127.0.0.1:{port}/base");
        let allow = format!("127.0.0.1:{port}");
        let script = format!(
            "echo key=${{ANTHROPIC_API_KEY:-unset}}; {}",
            curl(&format!(
                "--noproxy '' -x http://127.0.0.1:3128 {ATTACKER} http://{allow}/direct"
            ))
        );
        let out = run(
            w,
            &["--no-broker", "--allow-domain", &allow],
            Some(&base),
            &script,
        );
        let stdout = out.ok();
        assert!(stdout.starts_with("key=unset\n200"), "{stdout}");
        assert!(
            out.stderr().contains("credential broker off"),
            "{}",
            out.stderr()
        );
        let heads = seen.lock().unwrap().clone();
        assert_eq!(heads.len(), 1);
        assert!(heads[0].contains("x-api-key: sk-attacker\r\n"), "{heads:?}");
        // --env passes the real key when the broker is off, as the user asked; and the scan
        // that finds nothing with the broker finds it then.
        let script = format!("echo len=${{#ANTHROPIC_API_KEY}}; {DUMP}");
        let out = run(
            w,
            &["--no-broker", "--env", "ANTHROPIC_API_KEY"],
            None,
            &script,
        );
        let stdout = out.ok();
        assert!(
            stdout.starts_with(&format!("len={}\n", REAL.len())),
            "{stdout}"
        );
        assert!(dumped(w).contains(REAL), "the dump would have seen the key");
    });
}

#[test]
fn a_captured_connection_to_the_default_upstream_is_refused() {
    // No base URL on the host: the broker's upstream is the profile's default,
    // api.anthropic.com. A client that ignores the proxy variables is captured by the relay
    // and refused before any lookup; with --no-broker the same connection is allowed by the
    // policy (resolved to the host's loopback, where nothing answers: nothing leaves).
    each_user(|w| {
        let log = w.home.join("net.log");
        let log_arg = log.to_str().unwrap();
        let script = curl("--noproxy '*' https://api.anthropic.com/v1/models");
        let flags = [
            "--test-resolve",
            "api.anthropic.com=127.0.0.1",
            "--net-log",
            log_arg,
        ];
        let out = run(w, &flags, None, &script);
        assert_eq!(out.ok().trim(), "000");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("\"host\":\"api.anthropic.com\"")
                && text.contains("ANTHROPIC_API_KEY is brokered")
                && text.contains("\"allowed\":false"),
            "{text}"
        );
        std::fs::remove_file(&log).unwrap();
        let mut control = vec!["--no-broker"];
        control.extend(flags);
        let out = run(w, &control, None, &script);
        assert_eq!(out.ok().trim(), "000");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("\"host\":\"api.anthropic.com\"")
                && !text.contains("is brokered")
                && text.contains("\"allowed\":true"),
            "{text}"
        );
    });
}

#[test]
fn the_profiles_login_hosts_are_closed_while_the_key_is_brokered() {
    // claude.ai takes a login of anyone's: with the key brokered the agent needs none, and an
    // attacker's session there would carry the project out. Control: with --no-broker (and
    // when the user names the host) the profile's host is allowed (resolved to the host's
    // loopback, where nothing answers on 443: nothing leaves).
    each_user(|w| {
        let log = w.home.join("net.log");
        let log_arg = log.to_str().unwrap();
        let script = curl("https://claude.ai/api/organizations");
        let flags = [
            "--test-resolve",
            "claude.ai=127.0.0.1",
            "--net-log",
            log_arg,
        ];
        let decision = |extra: &[&str]| {
            let mut f: Vec<&str> = extra.to_vec();
            f.extend(flags);
            let out = run(w, &f, None, &script);
            out.ok();
            let text = std::fs::read_to_string(&log).unwrap();
            std::fs::remove_file(&log).unwrap();
            (out.stderr(), text)
        };
        let (stderr, text) = decision(&[]);
        assert!(
            stderr.contains("claude.ai") && stderr.contains("not allowed while the broker"),
            "{stderr}"
        );
        assert!(
            text.contains("\"host\":\"claude.ai\"") && text.contains("\"allowed\":false"),
            "{text}"
        );
        // Refused as closed: neither the report nor `--from-learn` offers it for every run.
        assert!(text.contains("closed while the broker"), "{text}");
        assert!(
            stderr.contains("blocked 1 request") && !stderr.contains("agentbox allow claude.ai"),
            "{stderr}"
        );
        for control in [&["--no-broker"][..], &["--allow-domain", "claude.ai"]] {
            let (_, text) = decision(control);
            assert!(
                text.contains("\"host\":\"claude.ai\"") && text.contains("\"allowed\":true"),
                "{control:?}: {text}"
            );
        }
    });
}

#[test]
fn dry_run_names_the_brokered_keys_never_their_values() {
    each_user(|w| {
        let out = run(w, &["--dry-run"], None, "true");
        let text = out.ok();
        assert!(
            text.contains("credential broker: ANTHROPIC_API_KEY held by agentbox, sent to https://api.anthropic.com"),
            "{text}"
        );
        assert!(
            text.contains("ANTHROPIC_BASE_URL=http://127.0.0.3:3129/anthropic"),
            "{text}"
        );
        assert!(!text.contains(REAL), "{text}");
        // An http:// upstream off the machine is refused, with the fix.
        let out = run(
            w,
            &["--dry-run"],
            Some("http://gateway.example.com"),
            "true",
        );
        assert_eq!(out.code(), 125);
        assert!(
            out.stderr().contains("ANTHROPIC_BASE_URL"),
            "{}",
            out.stderr()
        );
        assert!(out.stderr().contains("hint:"), "{}", out.stderr());
    });
}

#[test]
fn a_credential_from_the_users_config_is_brokered_too() {
    each_user(|w| {
        let (port, seen) = recorder(5);
        w.write(
            "home/.config/agentbox/config.toml",
            &format!(
                "[[profile.claude.credential]]\nvar = \"MY_API_TOKEN\"\n\
                 header = \"Authorization\"\nbearer = true\nbase_url_var = \"MY_API_URL\"\n\
                 upstream = \"http://127.0.0.1:{port}/api\"\n"
            ),
        );
        let mut c = w.cmd(
            &[
                "run",
                "--profile",
                "claude",
                "--",
                "sh",
                "-c",
                "echo url=$MY_API_URL; curl -s -m 10 -o /dev/null -w '%{http_code}\\n' \
                 -H 'Authorization: Bearer sk-attacker' \"$MY_API_URL/user\"",
            ]
            .map(std::ffi::OsStr::new),
        );
        c.env("MY_API_TOKEN", REAL);
        let out = Out(c.output().unwrap()).ok();
        assert_eq!(out, "url=http://127.0.0.3:3129/my_api\n200\n");
        let heads = seen.lock().unwrap().clone();
        assert_eq!(heads.len(), 1);
        assert!(heads[0].starts_with("GET /api/user HTTP/1.1"), "{heads:?}");
        assert!(
            heads[0].contains(&format!("authorization: Bearer {REAL}\r\n")),
            "{heads:?}"
        );
        assert!(!heads[0].contains("sk-attacker"));
    });
}

/// An HTTPS server on 127.0.0.1 for `localhost` (its certificate self-signed, in `dir`), which
/// writes each request's x-api-key to `dir/keys` and answers 200. Killed when dropped.
struct Tls {
    _child: crate::harness::Killed,
    port: u16,
    dir: std::path::PathBuf,
}

impl Tls {
    fn start(dir: &std::path::Path) -> Tls {
        // A CA (what SSL_CERT_FILE names) and a certificate for localhost it signed.
        std::fs::write(
            dir.join("leaf.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for args in [
            &[
                "req",
                "-x509",
                "-days",
                "1",
                "-subj",
                "/CN=agentbox test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ][..],
            &[
                "req",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
            ],
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "leaf.ext",
                "-out",
                "cert.pem",
            ],
        ] {
            let mut c = std::process::Command::new("openssl");
            c.args(&args[..1]);
            if args[0] == "req" {
                c.args(ec);
            }
            let st = c
                .args(&args[1..])
                .current_dir(dir)
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "openssl {args:?}");
        }
        let script = "import http.server, ssl, sys, os\n\
            d = sys.argv[1]\n\
            class H(http.server.BaseHTTPRequestHandler):\n\
            \x20   def do_GET(self):\n\
            \x20       open(os.path.join(d, 'keys'), 'a').write(str(self.headers.get('x-api-key')) + '\\n')\n\
            \x20       self.send_response(200); self.send_header('content-length', '2'); self.end_headers(); self.wfile.write(b'ok')\n\
            \x20   def log_message(self, *a): pass\n\
            s = http.server.HTTPServer(('127.0.0.1', 0), H)\n\
            c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
            c.load_cert_chain(os.path.join(d, 'cert.pem'), os.path.join(d, 'key.pem'))\n\
            s.socket = c.wrap_socket(s.socket, server_side=True)\n\
            open(os.path.join(d, 'port.tmp'), 'w').write(str(s.server_address[1]))\n\
            os.replace(os.path.join(d, 'port.tmp'), os.path.join(d, 'port'))\n\
            s.serve_forever()\n";
        let child = std::process::Command::new("/usr/bin/python3")
            .args(["-c", script])
            .arg(dir)
            .spawn()
            .unwrap();
        let child = crate::harness::Killed(child);
        crate::harness::wait_until("the TLS server", || dir.join("port").exists());
        let port = std::fs::read_to_string(dir.join("port"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Tls {
            _child: child,
            port,
            dir: dir.to_owned(),
        }
    }

    fn keys(&self) -> String {
        std::fs::read_to_string(self.dir.join("keys")).unwrap_or_default()
    }
}

#[test]
fn a_tls_upstream_is_verified_against_the_trusted_roots() {
    each_user(|w| {
        let dir = w.home.join("tls");
        std::fs::create_dir_all(&dir).unwrap();
        let tls = Tls::start(&dir);
        w.chown_all();
        let base = format!("https://localhost:{}", tls.port);
        let script = curl("-H 'x-api-key: sk-attacker' \"$ANTHROPIC_BASE_URL/v1/models\"");
        let go = |trust: bool| {
            let mut args: Vec<&str> = vec!["run", "--profile", "claude", "--"];
            args.extend(["sh", "-c", &script]);
            let mut c = w.cmd(&args.iter().map(std::ffi::OsStr::new).collect::<Vec<_>>());
            c.env("ANTHROPIC_API_KEY", REAL)
                .env("ANTHROPIC_BASE_URL", &base);
            if trust {
                // The test CA, named as a user names a private CA (rustls-native-certs).
                c.env("SSL_CERT_FILE", dir.join("ca.pem"));
            }
            Out(c.output().unwrap()).ok()
        };
        // Not trusted: the broker refuses the certificate, nothing is sent.
        assert_eq!(go(false).trim(), "502");
        assert_eq!(tls.keys(), "");
        // Trusted through SSL_CERT_FILE: the request goes, with the real key.
        assert_eq!(go(true).trim(), "200");
        assert_eq!(tls.keys(), format!("{REAL}\n"));
    });
}
