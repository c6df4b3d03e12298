//! The relay's handover (src/net/handoff.rs) attacked from inside, as the agent: it can read
//! the proxy token and connect to the host proxy's socket, so it can pass the proxy a TCP
//! socket of its own, keeping a copy. The file description is then shared, and clearing
//! `O_NONBLOCK` on the agent's copy made the proxy's next read on it block the proxy's one
//! thread: every other connection stalled, and `agentbox` never returned once the proxy also
//! held the other end (the sandbox's exit could not close it). The proxy now takes sockets
//! only on the relay's line, registered before the agent starts. Loopback only, bounded.

use std::ffi::OsStr;
use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{self, Out, World, each_user, escape_suite, http_ok, processes_with};

/// The agent's side of the attack. Prints one line per step: the control (the token and the
/// socket serve it as a plain client), a line of its own, and the handover of its own socket.
const ATTACK: &str = r#"
import fcntl, os, socket, sys, time
port = int(sys.argv[1])
token = open("/run/agentbox/token").read().strip()
req = ("CONNECT bulk.test:%d HTTP/1.1\r\n\r\n" % port).encode()

def to_proxy():
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.connect("/run/agentbox/net/proxy.sock")
    u.sendall(("AGENTBOX %s\n" % token).encode())
    return u

def answer(s):
    s.settimeout(3)
    try:
        return s.recv(12).decode(errors="replace") or "closed"
    except OSError:
        return "nothing"

u = to_proxy(); u.sendall(req); print("direct", answer(u)); u.close()
u = to_proxy(); u.sendall(b"\x06"); print("line", answer(u)); u.close()
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
c = socket.create_connection(l.getsockname()); s, _ = l.accept()
keep = []
for byte, sock in ((b"\x03", c), (b"\x02", s)):
    u = to_proxy(); socket.send_fds(u, [byte], [sock.fileno()]); keep.append(u)
c.sendall(req)
got = answer(c)
print("handover", got)
if got.startswith("HTTP/1.1 200"):
    fcntl.fcntl(s, fcntl.F_SETFL, fcntl.fcntl(s, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    c.sendall(b"x")
    time.sleep(0.5)
"#;

/// `agentbox run [flags] -- sh -c SCRIPT`, killed and failed if it has not returned within
/// `limit` (a wedged proxy kept it running for good).
fn sh_bounded(w: &World, flags: &[&str], script: &str, limit: Duration) -> Out {
    let mut args: Vec<&OsStr> = vec![OsStr::new("run")];
    args.extend(flags.iter().map(OsStr::new));
    args.extend(["--", "sh", "-c", script].map(OsStr::new));
    let child = w
        .cmd(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(limit) {
        Ok(out) => Out(out.unwrap()),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("agentbox did not return within {limit:?}");
        }
    }
}

#[test]
fn a_socket_the_agent_keeps_is_not_taken_and_cannot_wedge_the_proxy() {
    each_user(|w| {
        let port = harness::http_server(IpAddr::from([127, 0, 0, 1]), 8, |_, _| http_ok(b"ok"));
        w.write("home/src/project/attack.py", ATTACK);
        // After the attack, the relay's own handovers (proxy port and captured) still work.
        let script = format!(
            "python3 attack.py {port}; \
             curl -s -m 5 -p http://bulk.test:{port}/ -o /dev/null -w 'proxy %{{http_code}}\\n'; \
             curl -s -m 5 --noproxy '*' http://bulk.test:{port}/ -o /dev/null \
               -w 'captured %{{http_code}}\\n'"
        );
        let allow = format!("bulk.test:{port}");
        let flags = [
            "--allow-domain",
            &allow,
            "--test-resolve",
            "bulk.test=127.0.0.1",
        ];
        let out = sh_bounded(w, &flags, &script, Duration::from_secs(60));
        // Control: the agent reaches the proxy and the token works (as a plain client, which
        // is what port 3128 gives it anyway). Attack: no line of its own, and its own socket
        // is not served.
        assert_eq!(
            out.ok(),
            "direct HTTP/1.1 200\nline closed\nhandover nothing\nproxy 200\ncaptured 200\n",
            "stderr: {}",
            out.stderr()
        );
        assert!(processes_with("attack.py").is_empty(), "left behind");
    });
}

#[test]
fn concurrent_handovers_share_the_relay_line() {
    // One line carries every handover, one at a time: twenty at once, half through the proxy
    // port and half captured, each gets its own answer.
    each_user(|w| {
        let port = harness::http_server(IpAddr::from([127, 0, 0, 1]), 20, |head, _| {
            let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
            http_ok(format!("{path}\n").as_bytes())
        });
        let script = format!(
            "for i in $(seq 1 10); do \
               curl -s -m 20 -p http://many.test:{port}/p$i >out.p$i & \
               curl -s -m 20 --noproxy '*' http://many.test:{port}/c$i >out.c$i & \
             done; wait; cat out.p* out.c* | sort | tr '\\n' ' '"
        );
        let allow = format!("many.test:{port}");
        let flags = [
            "--allow-domain",
            &allow,
            "--test-resolve",
            "many.test=127.0.0.1",
        ];
        let out = sh_bounded(w, &flags, &script, Duration::from_secs(90));
        let mut want: Vec<String> = (1..=10)
            .flat_map(|i| [format!("/c{i}"), format!("/p{i}")])
            .collect();
        want.sort();
        assert_eq!(out.ok(), want.join(" ") + " ", "stderr: {}", out.stderr());
    });
}

#[test]
fn the_relay_is_out_of_reach_even_with_nested_namespaces() {
    // The relay holds the proxy's line; the agent runs as the same user. With
    // --allow-nested there is no Landlock and /proc is writable, so only the relay being
    // non-dumpable keeps the agent from writing its memory (and using the line).
    each_user(|w| {
        let probe = r#"
import os, subprocess
def try_open(pid):
    try:
        os.close(os.open("/proc/%d/mem" % pid, os.O_RDWR)); return "open"
    except OSError as e:
        return "denied" if e.errno in (1, 13) else "error %d" % e.errno
relay = [int(p) for p in os.listdir("/proc") if p.isdigit()
         and open("/proc/%s/cmdline" % p, "rb").read().split(b"\0")[1:2] == [b"__relay"]]
child = subprocess.Popen(["sleep", "30"])
print("child", try_open(child.pid))
print("relay", [try_open(p) for p in relay])
child.kill()
"#;
        w.write("home/src/project/probe.py", probe);
        let flags = ["--net", "filtered", "--allow-nested"];
        let out = sh_bounded(w, &flags, "python3 probe.py", Duration::from_secs(60));
        // Control: the agent's own child's memory is writable this way.
        assert_eq!(
            out.ok(),
            "child open\nrelay ['denied']\n",
            "stderr: {}",
            out.stderr()
        );
    });
}

#[test]
fn the_escape_suite_probes_the_handover_with_its_control() {
    // `agentbox test` with the filtered network: the probe's control (a plain client with the
    // token is answered) ran, and the passed socket was not served.
    each_user(|w| {
        let (_, _, doc) = escape_suite(w, &["--allow-domain", "example.com"]);
        let probe = doc["probes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == "net-proxy-handover")
            .cloned()
            .unwrap();
        assert_eq!(probe["result"], "PASS", "{probe}");
        assert_eq!(
            probe["detail"], "a plain client is served; a passed socket is not",
            "{probe}"
        );
    });
}

#[test]
fn a_relay_the_agent_stops_is_continued_and_the_run_ends() {
    // The relay is the agent's parent and the same user: the agent can SIGSTOP it. Stopped,
    // it carried no more connections and never reaped the agent, so agentbox never returned.
    each_user(|w| {
        let port = harness::http_server(IpAddr::from([127, 0, 0, 1]), 4, |_, _| http_ok(b"ok"));
        // Control: the parent is the relay and the signal is delivered (that it takes effect
        // shows without the watchdog: the run never ends). The state is not checked here: the
        // watchdog may have continued the relay already.
        let script = format!(
            "tr '\\0' ' ' </proc/$PPID/cmdline | cut -d' ' -f2; \
             kill -STOP $PPID && echo sent; \
             curl -s -m 10 -p http://stop.test:{port}/ -w ' %{{http_code}}\\n'; \
             kill -STOP $PPID"
        );
        let allow = format!("stop.test:{port}");
        let flags = [
            "--allow-domain",
            &allow,
            "--test-resolve",
            "stop.test=127.0.0.1",
        ];
        let out = sh_bounded(w, &flags, &script, Duration::from_secs(30));
        assert_eq!(
            out.ok(),
            "__relay\nsent\nok 200\n",
            "stderr: {}",
            out.stderr()
        );
    });
}

#[test]
fn the_relay_cannot_be_traced_with_debugging_allowed() {
    // --allow-debug lets the agent ptrace (its own processes); with --allow-nested there is
    // no Landlock either, so only the relay being non-dumpable keeps it out.
    each_user(|w| {
        let probe = r#"
import ctypes, os, subprocess, time
libc = ctypes.CDLL(None, use_errno=True)
def attach(pid):
    if libc.ptrace(16, pid, 0, 0) == 0:
        libc.ptrace(17, pid, 0, 0)
        return "attached"
    return "refused"
child = subprocess.Popen(["sleep", "30"])
time.sleep(0.1)
print("child", attach(child.pid))
child.kill()
print("relay", attach(os.getppid()))
"#;
        w.write("home/src/project/trace.py", probe);
        let flags = ["--net", "filtered", "--allow-debug", "--allow-nested"];
        let out = sh_bounded(w, &flags, "exec python3 trace.py", Duration::from_secs(60));
        // Control: the agent's own child is traced this way.
        assert_eq!(
            out.ok(),
            "child attached\nrelay refused\n",
            "stderr: {}",
            out.stderr()
        );
    });
}
