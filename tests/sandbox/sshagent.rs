//! `--ssh-agent`: agentbox's filtering agent in front of a real `ssh-agent` holding two keys.
//! Inside, only the named key is listed and signs; adding, removing and locking are refused
//! and the user's agent is left as it was. Each refusal has its control: the same operation
//! through `--ssh-agent=raw` (the agent's own socket) succeeds.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::harness::{Killed, Out, World, each_user, shell_quote, wait_until};

/// A real ssh-agent run as the scenario's user (it only serves its own uid), killed at the end.
struct Agent {
    _child: Killed,
    sock: PathBuf,
}

fn agent(w: &World) -> Agent {
    let sock = w.home.join("agent.sock");
    let child = w
        .program(OsStr::new("ssh-agent"))
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("ssh-agent", || sock.exists());
    Agent {
        _child: Killed(child),
        sock,
    }
}

/// Two keys made on the host (private halves in the home, hidden inside; public halves in the
/// project), both added to the agent; a third key in the project for `ssh-add` to try; an
/// askpass script for `ssh-add -x`. Returns the fingerprints of the two added keys.
fn keys(w: &World, a: &Agent) -> (String, String) {
    let script = format!(
        "set -e; mkdir -p ~/keys; cd ~/keys
         ssh-keygen -q -t ed25519 -N '' -C allowed -f allowed
         ssh-keygen -q -t ed25519 -N '' -C other -f other
         ssh-keygen -q -t ed25519 -N '' -C third -f {p}/third
         cp allowed.pub other.pub {p}/
         printf '#!/bin/sh\\necho pw\\n' > {p}/ask; chmod +x {p}/ask
         SSH_AUTH_SOCK={s} ssh-add -q allowed other
         ssh-keygen -lf allowed.pub | cut -d' ' -f2
         ssh-keygen -lf other.pub | cut -d' ' -f2",
        p = shell_quote(w.project.to_str().unwrap()),
        s = shell_quote(a.sock.to_str().unwrap()),
    );
    let out = w.host_sh(&script).ok();
    let fps: Vec<&str> = out.lines().collect();
    assert_eq!(fps.len(), 2, "{out}");
    (fps[0].to_owned(), fps[1].to_owned())
}

fn run(w: &World, a: &Agent, flags: &[&str], script: &str) -> Out {
    let mut args: Vec<&OsStr> = vec![OsStr::new("run")];
    args.extend(flags.iter().map(OsStr::new));
    args.extend(["--", "sh", "-c", script].map(OsStr::new));
    Out(w.cmd(&args).env("SSH_AUTH_SOCK", &a.sock).output().unwrap())
}

/// What the user's agent holds, asked on the host.
fn held(w: &World, a: &Agent) -> String {
    w.host_sh(&format!(
        "SSH_AUTH_SOCK={} ssh-add -l; true",
        shell_quote(a.sock.to_str().unwrap())
    ))
    .stdout()
}

/// Signs `msg` inside with the public key `pubkey` (the private half is the agent's).
fn sign_script(pubkey: &str) -> String {
    format!(
        "echo hello > msg; rm -f msg.sig; ssh-keygen -Y sign -f {pubkey} -n file msg \
         >/dev/null 2>&1 && echo signed || echo refused"
    )
}

fn verify(w: &World, pubkey: &Path) -> String {
    let signers = w.project.join("signers");
    std::fs::write(
        &signers,
        format!("me {}", std::fs::read_to_string(pubkey).unwrap()),
    )
    .unwrap();
    w.host_sh("ssh-keygen -Y verify -f signers -I me -n file -s msg.sig < msg 2>&1; true")
        .stdout()
}

/// A sign request for the key in `argv[1]`, sent straight to `$SSH_AUTH_SOCK`; prints the
/// reply's type (5 failure, 14 signature), or `closed`. With `huge`, announces a message over
/// the protocol's bound instead.
const SIGN_PY: &str = r#"
import base64, os, socket, struct, sys
blob = base64.b64decode(open(sys.argv[1]).read().split()[1])
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["SSH_AUTH_SOCK"])
def string(b): return struct.pack(">I", len(b)) + b
body = bytes([13]) + string(blob) + string(b"data") + struct.pack(">I", 0)
if len(sys.argv) > 2:
    s.sendall(struct.pack(">I", 300 * 1024) + body)
else:
    s.sendall(string(body))
try:
    head = s.recv(5)
except ConnectionResetError:
    head = b""
print("reply %d" % head[4] if len(head) == 5 else "closed")
"#;

#[test]
fn only_the_named_key_is_listed_and_signs() {
    each_user(|w| {
        let a = agent(w);
        let (allowed, other) = keys(w, &a);
        let flags = ["--ssh-agent", "--ssh-key", allowed.as_str()];
        // Listing: the named key only; the raw socket (control) lists both.
        let out = run(w, &a, &flags, "ssh-add -l");
        let listed = out.ok();
        assert!(listed.contains(&allowed), "{listed}");
        assert!(!listed.contains(&other), "{listed}");
        assert!(out.stderr().contains("--ssh-agent:"), "{}", out.stderr());
        let raw = run(w, &a, &["--ssh-agent=raw"], "ssh-add -l").ok();
        assert!(raw.contains(&allowed) && raw.contains(&other), "{raw}");

        // Signing with the named key works, and the signature verifies on the host.
        let out = run(w, &a, &flags, &sign_script("allowed.pub"));
        assert_eq!(out.ok(), "signed\n", "{}", out.stderr());
        let v = verify(w, &w.project.join("allowed.pub"));
        assert!(v.contains("Good \"file\" signature"), "{v}");
        // The other key is refused: by ssh-keygen, which does not find it listed, and by the
        // filter when asked directly (the raw protocol, as a hostile client would).
        let out = run(w, &a, &flags, &sign_script("other.pub"));
        assert_eq!(out.ok(), "refused\n");
        assert!(!w.project.join("msg.sig").exists());
        std::fs::write(w.project.join("sign.py"), SIGN_PY).unwrap();
        let out = run(w, &a, &flags, "python3 sign.py other.pub");
        assert_eq!(out.ok(), "reply 5\n", "{}", out.stderr());
        assert!(
            out.stderr().contains("refused a key not named x1"),
            "{}",
            out.stderr()
        );
        let out = run(w, &a, &flags, "python3 sign.py allowed.pub");
        assert_eq!(out.ok(), "reply 14\n", "{}", out.stderr());
        let out = run(w, &a, &["--ssh-agent=raw"], "python3 sign.py other.pub");
        assert_eq!(out.ok(), "reply 14\n", "{}", out.stderr());
        // A malformed message (a length past the 256 KiB bound) ends the connection.
        let out = run(w, &a, &flags, "python3 sign.py allowed.pub huge");
        assert_eq!(out.ok(), "closed\n", "{}", out.stderr());
        let out = run(w, &a, &["--ssh-agent=raw"], &sign_script("other.pub"));
        assert_eq!(out.ok(), "signed\n");
        let v = verify(w, &w.project.join("other.pub"));
        assert!(v.contains("Good \"file\" signature"), "{v}");

        // Named by comment instead of fingerprint.
        let out = run(
            w,
            &a,
            &["--ssh-agent", "--ssh-key", "other"],
            "ssh-add -l; ssh-keygen -Y sign -f other.pub -n file msg >/dev/null 2>&1 && echo signed",
        );
        let got = out.ok();
        assert!(got.contains(&other) && !got.contains(&allowed), "{got}");
        assert!(got.ends_with("signed\n"), "{got}");

        // No key named: refused before anything starts, with what to name.
        let out = run(w, &a, &["--ssh-agent"], "true");
        assert_eq!(out.code(), 125);
        assert!(out.stderr().contains("--ssh-key"), "{}", out.stderr());
        // Nothing of the filter is left in the runtime directory.
        let left: Vec<_> = w
            .listing()
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("/.run/agentbox/ssh-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    });
}

#[test]
fn adding_removing_and_locking_are_refused() {
    each_user(|w| {
        let a = agent(w);
        let (allowed, other) = keys(w, &a);
        let before = held(w, &a);
        assert!(before.contains(&allowed) && before.contains(&other));
        let askpass = "SSH_ASKPASS=./ask SSH_ASKPASS_REQUIRE=force";
        let ops = [
            ("add", "ssh-add third"),
            ("remove", "ssh-add -d allowed.pub"),
            ("remove-all", "ssh-add -D"),
            ("lock", &*format!("{askpass} ssh-add -x")),
        ];
        let flags = ["--ssh-agent", "--ssh-key", allowed.as_str()];
        for (name, op) in ops {
            let out = run(
                w,
                &a,
                &flags,
                &format!("{op} </dev/null >/dev/null 2>&1; echo $?"),
            );
            assert_ne!(out.ok(), "0\n", "{name} was not refused");
            assert!(out.stderr().contains("refused"), "{name}: {}", out.stderr());
            // The user's agent is as it was, and still unlocked.
            assert_eq!(held(w, &a), before, "{name}");
        }
        // Controls, through the raw socket: each operation reaches the agent.
        let raw = |op: &str| {
            let out = run(
                w,
                &a,
                &["--ssh-agent=raw"],
                &format!("{op} </dev/null >/dev/null 2>&1; echo $?"),
            );
            assert_eq!(out.ok(), "0\n", "{op}: {}", out.stderr());
        };
        raw(&format!("{askpass} ssh-add -x"));
        assert!(
            !held(w, &a).contains(&allowed),
            "the lock did not reach the agent"
        );
        raw(&format!("{askpass} ssh-add -X"));
        raw("ssh-add third");
        assert!(held(w, &a).contains("third"));
        raw("ssh-add -d allowed.pub");
        assert!(!held(w, &a).contains(&allowed));
        raw("ssh-add -D");
        assert!(!held(w, &a).contains(&other));
    });
}

/// `agentbox test`'s own probe: the filter refuses to lock the agent (PASS); the raw socket
/// lets the sandbox lock it (LEAK, and the probe unlocks it again).
#[test]
fn the_escape_suite_shows_the_filter_refusing_what_raw_allows() {
    each_user(|w| {
        let a = agent(w);
        let (allowed, _) = keys(w, &a);
        let probe = |flags: &[&str]| -> String {
            let mut args = vec!["test", "--json"];
            args.extend_from_slice(flags);
            let out = Out(w
                .cmd(&args.iter().map(OsStr::new).collect::<Vec<_>>())
                .env("SSH_AUTH_SOCK", &a.sock)
                .output()
                .unwrap());
            let doc: serde_json::Value = serde_json::from_slice(&out.0.stdout)
                .unwrap_or_else(|e| panic!("{e}: {}", out.stderr()));
            let row = doc["probes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["id"] == "ssh-agent-lock")
                .cloned()
                .unwrap();
            row["result"].as_str().unwrap().to_owned()
        };
        assert_eq!(probe(&["--ssh-agent", "--ssh-key", &allowed]), "PASS");
        assert_eq!(probe(&["--ssh-agent=raw"]), "LEAK");
        // The probe undid its lock: the agent still lists its keys.
        assert!(held(w, &a).contains(&allowed));
    });
}

/// `--ssh-confirm`: each signature is asked on the host through $SSH_ASKPASS (here a script
/// that logs the question and answers from a file); a no is a refusal, listing asks nothing.
#[test]
fn signatures_are_confirmed_on_the_host() {
    each_user(|w| {
        let a = agent(w);
        let (allowed, _) = keys(w, &a);
        let ask = w.write(
            "home/ask.sh",
            "#!/bin/sh\necho \"$SSH_ASKPASS_PROMPT: $1\" >> \"$(dirname \"$0\")/asked.log\"\n\
             grep -q yes \"$(dirname \"$0\")/answer\"\n",
        );
        std::fs::set_permissions(&ask, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::fs::write(w.project.join("sign.py"), SIGN_PY).unwrap();
        let flags = [
            "--ssh-agent",
            "--ssh-key",
            allowed.as_str(),
            "--ssh-confirm",
        ];
        let run_asking = |script: &str| {
            let mut args: Vec<&OsStr> = vec![OsStr::new("run")];
            args.extend(flags.iter().map(OsStr::new));
            args.extend(["--", "sh", "-c", script].map(OsStr::new));
            Out(w
                .cmd(&args)
                .env("SSH_AUTH_SOCK", &a.sock)
                .env("SSH_ASKPASS", &ask)
                .output()
                .unwrap())
        };
        let asked = || std::fs::read_to_string(w.home.join("asked.log")).unwrap_or_default();
        w.write("home/answer", "yes\n");
        assert_eq!(run_asking("python3 sign.py allowed.pub").ok(), "reply 14\n");
        assert_eq!(asked().lines().count(), 1, "{}", asked());
        assert!(asked().starts_with("confirm: agentbox: "), "{}", asked());
        assert!(asked().contains(&allowed), "{}", asked());
        w.write("home/answer", "no\n");
        let out = run_asking("python3 sign.py allowed.pub; ssh-add -l >/dev/null");
        assert_eq!(out.ok(), "reply 5\n");
        assert!(
            out.stderr().contains("refused not confirmed x1"),
            "{}",
            out.stderr()
        );
        // Two questions in all: listing asked nothing.
        assert_eq!(asked().lines().count(), 2, "{}", asked());
        // No program to ask with: refused before the run.
        let out = Out(w
            .cmd(
                &[&["run"][..], &flags[..], &["--", "true"]]
                    .concat()
                    .iter()
                    .map(OsStr::new)
                    .collect::<Vec<_>>(),
            )
            .env("SSH_AUTH_SOCK", &a.sock)
            .output()
            .unwrap());
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(out.stderr().contains("SSH_ASKPASS"), "{}", out.stderr());
    });
}

/// Made on the host: a session-bind for a made-up session with the "other" key as the
/// server's host key (the user's agent signs the session identifier with it, as a server
/// would), saved for the sandbox to send.
const MKBIND_PY: &str = r#"
import base64, json, os, socket, struct, sys
def string(b): return struct.pack(">I", len(b)) + b
def ask(s, body):
    s.sendall(string(body))
    n = struct.unpack(">I", s.recv(4))[0]; r = b""
    while len(r) < n: r += s.recv(n - len(r))
    return r
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
host = base64.b64decode(open(sys.argv[2]).read().split()[1])
sid = os.urandom(32)
r = ask(s, bytes([13]) + string(host) + string(sid) + struct.pack(">I", 0))
assert r[0] == 14, r
sig = r[5:5 + struct.unpack(">I", r[1:5])[0]]
json.dump({k: base64.b64encode(v).decode() for k, v in
           {"host": host, "sid": sid, "sig": sig}.items()}, open(sys.argv[3], "w"))
"#;

/// Inside: binds a connection to that session, asks for a signature of data that starts with
/// its identifier (user authentication) and of data that does not; then, on a connection never
/// bound, the first again. Prints the four answers' types.
const BOUND_PY: &str = r#"
import base64, json, os, socket, struct, sys
def string(b): return struct.pack(">I", len(b)) + b
def ask(s, body):
    s.sendall(string(body))
    n = struct.unpack(">I", s.recv(4))[0]; r = b""
    while len(r) < n: r += s.recv(n - len(r))
    return r[0]
b = {k: base64.b64decode(v) for k, v in json.load(open("bind.json")).items()}
key = base64.b64decode(open("allowed.pub").read().split()[1])
def sign(s, data): return ask(s, bytes([13]) + string(key) + string(data) + struct.pack(">I", 0))
s = socket.socket(socket.AF_UNIX); s.connect(os.environ["SSH_AUTH_SOCK"])
bind = bytes([27]) + string(b"session-bind@openssh.com") + string(b["host"]) + string(b["sid"]) \
    + string(b["sig"]) + b"\0"
auth = string(b["sid"]) + b"\x32userauth"
out = [ask(s, bind), sign(s, auth), sign(s, string(b"another session") + b"\x32")]
t = socket.socket(socket.AF_UNIX); t.connect(os.environ["SSH_AUTH_SOCK"])
out.append(sign(t, auth))
print(" ".join(map(str, out)))
"#;

/// `--ssh-host`: signatures only for user authentication in a session bound to a named
/// server (session-bind, checked by the user's agent), by fingerprint or by its name in
/// known_hosts. Control: without `--ssh-host` all four sign.
#[test]
fn signatures_only_for_the_named_hosts() {
    each_user(|w| {
        let a = agent(w);
        let (allowed, other) = keys(w, &a);
        w.write("home/mkbind.py", MKBIND_PY);
        let bind = w.project.join("bind.json");
        w.host_sh(&format!(
            "python3 ../../mkbind.py {} ~/keys/other.pub {}",
            a.sock.display(),
            bind.display()
        ))
        .ok();
        w.chown_all();
        std::fs::write(w.project.join("bound.py"), BOUND_PY).unwrap();
        let other_pub = std::fs::read_to_string(w.home.join("keys/other.pub")).unwrap();
        let b64 = other_pub.split_whitespace().nth(1).unwrap();
        w.write(
            "home/.ssh/known_hosts",
            &format!("testhost ssh-ed25519 {b64}\n"),
        );
        let go = |hosts: &[&str]| {
            let mut flags = vec!["--ssh-agent", "--ssh-key", allowed.as_str()];
            for h in hosts {
                flags.extend(["--ssh-host", h]);
            }
            run(w, &a, &flags, "python3 bound.py")
        };
        // Bind accepted (6), the login signed (14), other data refused (5); unbound: 5.
        assert_eq!(go(&[&other]).ok(), "6 14 5 5\n");
        let out = go(&["testhost"]);
        assert_eq!(out.ok(), "6 14 5 5\n");
        assert!(
            out.stderr().contains("not for a named host x2"),
            "{}",
            out.stderr()
        );
        // Another server named: the bind itself is refused, and so is everything after.
        let unrelated = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(go(&[unrelated]).ok(), "5 5 5 5\n");
        // Control: no host named, every signature of the named key is made.
        assert_eq!(go(&[]).ok(), "6 14 14 14\n");
        // A name known_hosts does not have: refused before the run.
        let out = go(&["nowhere.example"]);
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(out.stderr().contains("known_hosts"), "{}", out.stderr());
    });
}

/// Several requests in one write, answered in order; then, each on its own connection, the
/// named key's blob with a byte after it (another key to the filter), a request whose
/// fields end before its length does, and an empty message. Prints each reply's type.
const PIPELINE_PY: &str = r#"
import base64, os, socket, struct, sys
def string(b): return struct.pack(">I", len(b)) + b
def blob(f): return base64.b64decode(open(f).read().split()[1])
def sign(b): return bytes([13]) + string(b) + string(b"data") + struct.pack(">I", 0)
def conn():
    s = socket.socket(socket.AF_UNIX); s.connect(os.environ["SSH_AUTH_SOCK"]); return s
def reply(s):
    head = b""
    while len(head) < 4:
        d = s.recv(4 - len(head))
        if not d: return "closed"
        head += d
    n = struct.unpack(">I", head)[0]; body = b""
    while len(body) < n: body += s.recv(n - len(body))
    return str(body[0])
a, o = blob("allowed.pub"), blob("other.pub")
s = conn()
s.sendall(string(bytes([11])) + string(sign(a)) + string(sign(o)) + string(sign(a)))
print(" ".join(reply(s) for _ in range(4)))
if len(sys.argv) > 1: sys.exit()
for msg in [string(sign(a + b"\0")), string(sign(a)[:-2]) , struct.pack(">I", 0)]:
    s = conn(); s.sendall(msg); print(reply(s))
"#;

#[test]
fn pipelined_and_malformed_requests() {
    each_user(|w| {
        let a = agent(w);
        let (allowed, _) = keys(w, &a);
        std::fs::write(w.project.join("pipe.py"), PIPELINE_PY).unwrap();
        let out = run(
            w,
            &a,
            &["--ssh-agent", "--ssh-key", &allowed],
            "python3 pipe.py",
        );
        assert_eq!(
            out.ok(),
            "12 14 5 14\n5\nclosed\nclosed\n",
            "{}",
            out.stderr()
        );
        // The control: the user's agent itself signs the pipelined requests for both keys.
        let out = run(w, &a, &["--ssh-agent=raw"], "python3 pipe.py only");
        assert_eq!(out.ok(), "12 14 14 14\n", "{}", out.stderr());
    });
}
