//! `--docker`: agentbox's filter in front of a stand-in Docker API (a small python3 server on a
//! UNIX socket that records every request it gets; no Docker daemon is needed). Each refused
//! shape gets a 403 with agentbox's message and never reaches the daemon, while the same
//! request through `--docker=raw` (the control) does; allowed requests arrive byte for byte;
//! a Testcontainers-like sequence on one keep-alive connection works, exec's raw stream too.

use std::ffi::OsStr;
use std::path::PathBuf;

use crate::harness::{Killed, Out, World, each_user, wait_until};

/// The stand-in daemon: answers like Docker's API and appends each request to `log` as one
/// JSON line (method, path, body in base64).
const DAEMON_PY: &str = r#"
import base64, json, os, socketserver, sys
from http.server import BaseHTTPRequestHandler
sock, log = sys.argv[1], sys.argv[2]
CID = "c" * 64
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                n = int(self.rfile.readline().split(b";")[0], 16)
                if n == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(n); self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))
    def send(self, code, body=b"", ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def handle_any(self):
        body = self.body()
        with open(log, "a") as f:
            f.write(json.dumps({"m": self.command, "p": self.path,
                                "b": base64.b64encode(body).decode()}) + "\n")
        p = self.path.split("?")[0]
        if p.endswith("/_ping"): return self.send(200, b"OK", "text/plain")
        if p.endswith("/version"): return self.send(200, b'{"ApiVersion":"1.43"}')
        if p.endswith("/images/create"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in [b'{"status":"pulling"}\n', b'{"status":"done"}\n']:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        if p.endswith("/containers/create"):
            return self.send(201, json.dumps({"Id": CID, "Warnings": []}).encode())
        if p.endswith("/exec"): return self.send(201, b'{"Id":"' + b"e" * 64 + b'"}')
        if "/exec/" in p and p.endswith("/start") and b'"Detach":true' in body:
            return self.send(200)
        if "/exec/" in p and p.endswith("/start"):
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n")
            self.wfile.flush()
            data = self.rfile.read()
            self.wfile.write(b"out:" + data)
            self.close_connection = True
            return
        if p.endswith("/start"): return self.send(204)
        if p.endswith("/logs") and "mux=1" in self.path:
            # As the daemon answers logs (API 1.42+): the stream's type, chunked, and the
            # connection stays HTTP.
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.docker.multiplexed-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            part = b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(part), part))
            return
        if p.endswith("/logs"): return self.send(200, b"hello from the container\n", "text/plain")
        if p.endswith("/wait"): return self.send(200, b'{"StatusCode":0}')
        if self.command == "DELETE": return self.send(204)
        return self.send(200, b"{}")
    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any
class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
S(sock, H).serve_forever()
"#;

/// The Testcontainers-like client: one keep-alive connection for the calls, as Go's client
/// keeps one, and a raw socket for exec's hijacked stream (stdin half-closed, output read).
const CLIENT_PY: &str = r#"
import http.client, json, os, socket
path = os.environ["DOCKER_HOST"][len("unix://"):]
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(path)
c = C("docker")
def call(m, p, body=None):
    h = {"Content-Type": "application/json"} if body is not None else {}
    c.request(m, "/v1.43" + p, body=json.dumps(body) if body is not None else None, headers=h)
    r = c.getresponse(); data = r.read()
    print(m, p.split("?")[0], r.status)
    return data
call("GET", "/_ping"); call("GET", "/version")
call("POST", "/images/create?fromImage=alpine&tag=3")
cid = json.loads(call("POST", "/containers/create?name=tc", {"Image": "alpine:3",
    "HostConfig": {"Binds": [os.getcwd() + ":/src"], "PortBindings": {}}}))["Id"]
call("POST", "/containers/%s/start" % cid)
print(call("GET", "/containers/%s/logs?stdout=1" % cid).decode().strip())
eid = json.loads(call("POST", "/containers/%s/exec" % cid, {"Cmd": ["cat"], "AttachStdin": True}))["Id"]
s = socket.socket(socket.AF_UNIX); s.connect(path)
s.sendall(("POST /v1.43/exec/%s/start HTTP/1.1\r\nHost: d\r\n"
           "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}" % eid).encode())
s.sendall(b"stdin data")
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    d = s.recv(65536)
    if not d: break
    got += d
print(got.split(b"\r\n\r\n", 1)[1].decode())
call("POST", "/containers/%s/wait" % cid)
call("DELETE", "/containers/%s?force=1" % cid)
"#;

/// On one keep-alive connection: a container, an exec in it started detached (the daemon
/// answers in HTTP, the connection stays HTTP), then a privileged create. Prints the statuses.
const DETACHED_PY: &str = r#"
import http.client, json, os, socket
path = os.environ["DOCKER_HOST"][len("unix://"):]
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(path)
c = C("docker")
def call(p, body):
    c.request("POST", "/v1.43" + p, body=json.dumps(body, separators=(",", ":")),
              headers={"Content-Type": "application/json"})
    r = c.getresponse(); data = r.read(); print(r.status)
    return data
cid = json.loads(call("/containers/create", {"Image": "a"}))["Id"]
eid = json.loads(call("/containers/%s/exec" % cid, {"Cmd": ["true"]}))["Id"]
call("/exec/%s/start" % eid, {"Detach": True})
call("/containers/create", {"Image": "a", "HostConfig": {"Privileged": True}})
"#;

/// On one keep-alive connection: a container, its logs (a stream's content type, but framed
/// HTTP), then a privileged create. Prints the statuses.
const LOGS_PY: &str = r#"
import http.client, json, os, socket
path = os.environ["DOCKER_HOST"][len("unix://"):]
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(path)
c = C("docker")
def call(m, p, body=None):
    c.request(m, "/v1.43" + p, body=json.dumps(body) if body is not None else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse(); data = r.read(); print(r.status)
    return data
cid = json.loads(call("POST", "/containers/create", {"Image": "a"}))["Id"]
call("GET", "/containers/%s/logs?stdout=1&mux=1" % cid)
call("POST", "/containers/create", {"Image": "a", "HostConfig": {"Privileged": True}})
"#;

struct Daemon {
    _child: Killed,
    sock: PathBuf,
    log: PathBuf,
}

fn daemon(w: &World) -> Daemon {
    let script = w.write("home/daemon.py", DAEMON_PY);
    let sock = w.home.join("docker.sock");
    let log = w.home.join("requests.log");
    let child = w
        .program(OsStr::new("python3"))
        .arg(&script)
        .arg(&sock)
        .arg(&log)
        .spawn()
        .unwrap();
    wait_until("the stand-in daemon", || sock.exists());
    Daemon {
        _child: Killed(child),
        sock,
        log,
    }
}

impl Daemon {
    /// The requests the daemon got: (method, path, body).
    fn requests(&self) -> Vec<(String, String, Vec<u8>)> {
        use base64::Engine;
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let b = base64::engine::general_purpose::STANDARD
                    .decode(v["b"].as_str().unwrap())
                    .unwrap();
                (
                    v["m"].as_str().unwrap().to_owned(),
                    v["p"].as_str().unwrap().to_owned(),
                    b,
                )
            })
            .collect()
    }

    fn clear(&self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

fn run(w: &World, d: &Daemon, mode: &str, script: &str) -> Out {
    let flag = format!("--docker{mode}");
    Out(w
        .cmd(&["run", &flag, "--", "sh", "-c", script].map(OsStr::new))
        .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
        .output()
        .unwrap())
}

/// `curl` inside: POST the file `body` to `path`, print the status and the answer.
fn post(path: &str, body: &str) -> String {
    format!(
        "curl -sS --unix-socket \"${{DOCKER_HOST#unix://}}\" -o out.txt -w '%{{http_code}} ' \
         -H 'Content-Type: application/json' --data-binary @{body} http://d/v1.43{path}; \
         cat out.txt; echo\n"
    )
}

#[test]
fn refused_shapes_never_reach_the_daemon() {
    each_user(|w| {
        let d = daemon(w);
        std::os::unix::fs::symlink("/", w.project.join("root-link")).unwrap();
        let p = w.project.to_str().unwrap();
        let shapes = [
            r#"{"HostConfig":{"Privileged":true}}"#.to_owned(),
            r#"{"HostConfig":{"privileged":true}}"#.to_owned(),
            r#"{"HostConfig":{"CapAdd":["SYS_ADMIN"]}}"#.to_owned(),
            r#"{"HostConfig":{"NetworkMode":"host"}}"#.to_owned(),
            r#"{"HostConfig":{"PidMode":"host"}}"#.to_owned(),
            r#"{"HostConfig":{"Devices":[{"PathOnHost":"/dev/sda"}]}}"#.to_owned(),
            r#"{"HostConfig":{"SecurityOpt":["seccomp=unconfined"]}}"#.to_owned(),
            r#"{"HostConfig":{"Binds":["/etc:/e"]}}"#.to_owned(),
            format!(r#"{{"HostConfig":{{"Binds":["{p}/root-link/etc:/e"]}}}}"#),
            format!(
                r#"{{"HostConfig":{{"Binds":["{}:/var/run/docker.sock"]}}}}"#,
                d.sock.display()
            ),
            r#"{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/","Target":"/h"}]}}"#.to_owned(),
        ];
        let mut script = String::new();
        for (i, s) in shapes.iter().enumerate() {
            w.write(&format!("home/src/project/b{i}.json"), s);
            script.push_str(&post("/containers/create", &format!("b{i}.json")));
        }
        let out = run(w, &d, "", &script);
        let lines: Vec<String> = out.ok().lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), shapes.len(), "{lines:?}\n{}", out.stderr());
        for (line, shape) in lines.iter().zip(&shapes) {
            assert!(
                line.starts_with("403 {\"message\":\"agentbox: "),
                "{shape}: {line}"
            );
        }
        assert!(d.requests().is_empty(), "{:?}", d.requests());
        assert!(
            out.stderr().contains("--docker: refused"),
            "{}",
            out.stderr()
        );
        // Control: the raw socket passes every one of them to the daemon.
        let out = run(w, &d, "=raw", &script);
        assert!(out.ok().lines().all(|l| l.starts_with("201 ")));
        assert_eq!(d.requests().len(), shapes.len());
        d.clear();

        // The absolute form of the target, which Go's server routes by its path.
        let absolute = "curl -sS --unix-socket \"${DOCKER_HOST#unix://}\" -o /dev/null \
                        -w '%{http_code}\\n' -H 'Content-Type: application/json' \
                        --data-binary @b0.json \
                        --request-target http://d/v1.43/containers/create http://d/";
        assert_eq!(run(w, &d, "", absolute).ok(), "403\n");
        assert!(d.requests().is_empty());
        assert_eq!(run(w, &d, "=raw", absolute).ok(), "201\n");
        d.clear();

        // Exec into a container the sandbox did not create: refused; control: raw passes.
        let exec = "curl -sS --unix-socket \"${DOCKER_HOST#unix://}\" -o /dev/null \
                    -w '%{http_code}\\n' -H 'Content-Type: application/json' -d '{\"Cmd\":[\"sh\"]}' \
                    http://d/v1.43/containers/somebody-elses/exec";
        assert_eq!(run(w, &d, "", exec).ok(), "403\n");
        assert!(d.requests().is_empty());
        assert_eq!(run(w, &d, "=raw", exec).ok(), "201\n");
        d.clear();
        // Reading another container (its environment in inspect, its logs, its files).
        let read = "for p in json logs?stdout=1 'archive?path=/etc' export; do \
                    curl -sS --unix-socket \"${DOCKER_HOST#unix://}\" -o /dev/null \
                    -w '%{http_code} ' \"http://d/v1.43/containers/somebody-elses/$p\"; done; echo";
        assert_eq!(run(w, &d, "", read).ok(), "403 403 403 403 \n");
        assert!(d.requests().is_empty());
        assert_eq!(run(w, &d, "=raw", read).ok(), "200 200 200 200 \n");
        d.clear();

        // A bind source in the project swapped for a symlink to / after the create: the
        // start is refused (the control: the same start before the swap passes).
        let p = w.project.to_str().unwrap();
        w.write(
            "home/src/project/bind.json",
            &format!(r#"{{"HostConfig":{{"Binds":["{p}/sub:/s"]}}}}"#),
        );
        let start = format!(
            "curl -sS --unix-socket \"${{DOCKER_HOST#unix://}}\" -o /dev/null -w '%{{http_code}}\\n' \
             -X POST http://d/v1.43/containers/{}/start",
            "c".repeat(64)
        );
        let script = format!(
            "mkdir sub; {} {start}; rm -r sub; ln -s / sub; {start}",
            post("/containers/create", "bind.json")
        );
        let got = run(w, &d, "", &script).ok();
        let codes: Vec<&str> = got.lines().map(|l| &l[..3]).collect();
        assert_eq!(codes, ["201", "204", "403"], "{got}");
    });
}

#[test]
fn allowed_requests_pass_byte_for_byte_and_a_testcontainers_sequence_works() {
    each_user(|w| {
        let d = daemon(w);
        let p = w.project.to_str().unwrap().to_owned();
        // Odd spacing and key order, a bind in the project, a named volume: as sent.
        let body = format!(
            "{{ \"Image\":\"alpine\",\n  \"HostConfig\": {{\"Binds\": [\"{p}/sub:/src:ro\", \"cache:/c\"], \
             \"NetworkMode\":\"bridge\"}} ,\"Labels\":{{\"x\":\"\\u00e9\"}}}}"
        );
        w.write("home/src/project/ok.json", &body);
        let chunked = format!(
            "curl -sS --unix-socket \"${{DOCKER_HOST#unix://}}\" -o /dev/null -w '%{{http_code}}\\n' \
             -H 'Transfer-Encoding: chunked' -H 'Content-Type: application/json' \
             --data-binary @ok.json http://d/v1.43/containers/create; {}",
            post("/containers/create", "ok.json")
        );
        let out = run(w, &d, "", &chunked);
        let got = out.ok();
        assert!(got.starts_with("201\n201 "), "{got}\n{}", out.stderr());
        let reqs = d.requests();
        assert_eq!(reqs.len(), 2, "{reqs:?}");
        for (m, path, b) in &reqs {
            assert_eq!(
                (m.as_str(), path.as_str()),
                ("POST", "/v1.43/containers/create")
            );
            assert_eq!(String::from_utf8_lossy(b), body);
        }
        d.clear();

        // The sequence, on one connection, with exec's stream.
        w.write("home/src/project/client.py", CLIENT_PY);
        let out = run(w, &d, "", "python3 client.py");
        let got = out.ok();
        let want = [
            "GET /_ping 200",
            "GET /version 200",
            "POST /images/create 200",
            "POST /containers/create 201",
            &format!("POST /containers/{}/start 204", "c".repeat(64)),
            &format!("GET /containers/{}/logs 200", "c".repeat(64)),
            "hello from the container",
            &format!("POST /containers/{}/exec 201", "c".repeat(64)),
            "out:stdin data",
            &format!("POST /containers/{}/wait 200", "c".repeat(64)),
            &format!("DELETE /containers/{} 204", "c".repeat(64)),
        ];
        assert_eq!(got.lines().collect::<Vec<_>>(), want, "{}", out.stderr());
        let paths: Vec<String> = d.requests().into_iter().map(|r| r.1).collect();
        assert_eq!(paths.len(), 10, "{paths:?}");
    });
}

#[test]
fn a_connection_the_daemon_did_not_hijack_stays_checked() {
    each_user(|w| {
        let d = daemon(w);
        w.write("home/src/project/detached.py", DETACHED_PY);
        let out = run(w, &d, "", "python3 detached.py");
        assert_eq!(out.ok(), "201\n201\n200\n403\n", "{}", out.stderr());
        assert_eq!(d.requests().len(), 3);
        d.clear();
        // Control: through the raw socket the fourth request reaches the daemon.
        assert_eq!(
            run(w, &d, "=raw", "python3 detached.py").ok(),
            "201\n201\n200\n201\n"
        );
        assert_eq!(d.requests().len(), 4);
    });
}

/// `agentbox test`'s own probe: a privileged create is refused by the filter (PASS) and
/// reaches the daemon through the raw socket (LEAK).
#[test]
fn the_escape_suite_shows_the_filter_refusing_what_raw_allows() {
    each_user(|w| {
        let d = daemon(w);
        let probe = |mode: &str| -> String {
            let flag = format!("--docker{mode}");
            let out = Out(w
                .cmd(&["test", "--json", &flag].map(OsStr::new))
                .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
                .output()
                .unwrap());
            let doc: serde_json::Value = serde_json::from_slice(&out.0.stdout)
                .unwrap_or_else(|e| panic!("{e}: {}", out.stderr()));
            let row = doc["probes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["id"] == "docker-privileged")
                .cloned()
                .unwrap();
            row["result"].as_str().unwrap().to_owned()
        };
        assert_eq!(probe(""), "PASS");
        assert!(d.requests().is_empty());
        assert_eq!(probe("=raw"), "LEAK");
        assert_eq!(d.requests().len(), 1);
    });
}

/// Shapes found in review: a body with HostConfig's fields at its top (read there by daemons
/// before 25.0), an inline seccomp profile that allows everything, a create whose second
/// `name` was recorded as the sandbox's (the daemon uses the first) and an exec into the
/// container with that name, a rename of another container, a link to another container
/// (its environment). The control: `=raw` passes all.
#[test]
fn review_shapes_are_refused_and_reach_the_daemon_raw() {
    each_user(|w| {
        let d = daemon(w);
        w.write(
            "home/src/project/top.json",
            r#"{"Image":"a","Privileged":true}"#,
        );
        w.write(
            "home/src/project/seccomp.json",
            r#"{"Image":"a","HostConfig":{"SecurityOpt":["seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"]}}"#,
        );
        w.write("home/src/project/plain.json", r#"{"Image":"a"}"#);
        w.write(
            "home/src/project/link.json",
            r#"{"Image":"a","HostConfig":{"Links":["theirs:db"]}}"#,
        );
        w.write("home/src/project/exec.json", r#"{"Cmd":["sh"]}"#);
        let status = |path: &str, body: &str| {
            format!(
                "curl -sS --unix-socket \"${{DOCKER_HOST#unix://}}\" -o /dev/null \
                 -w '%{{http_code}}\\n' -H 'Content-Type: application/json' \
                 --data-binary @{body} 'http://d/v1.43{path}'\n"
            )
        };
        let script = [
            status("/containers/create", "top.json"),
            status("/containers/create", "seccomp.json"),
            status("/containers/create?name=mine&name=theirs", "plain.json"),
            status("/containers/theirs/exec", "exec.json"),
            status("/containers/theirs/rename?name=mine", "plain.json"),
            status("/containers/create", "link.json"),
        ]
        .concat();
        let out = run(w, &d, "", &script);
        let codes = out.ok();
        let codes: Vec<&str> = codes.lines().collect();
        assert_eq!(
            codes,
            ["403", "403", "201", "403", "403", "403"],
            "{}",
            out.stderr()
        );
        // Only the plain create reached the daemon.
        let got = d.requests();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].1.contains("name=mine&name=theirs"), "{got:?}");
        d.clear();
        let out = run(w, &d, "=raw", &script);
        let codes = out.ok();
        let codes: Vec<&str> = codes.lines().collect();
        assert_eq!(codes, ["201", "201", "201", "201", "200", "201"]);
        assert_eq!(d.requests().len(), 6);
    });
}

/// The daemon answers logs with a stream's content type but in HTTP (chunked), and keeps
/// reading requests: the filter must not take that for a hijacked connection and pass the
/// next request (a privileged create) unchecked. The control: `=raw` passes it.
#[test]
fn logs_in_a_streams_type_do_not_end_the_checks() {
    each_user(|w| {
        let d = daemon(w);
        w.write("home/src/project/logs.py", LOGS_PY);
        let out = run(w, &d, "", "python3 logs.py");
        assert_eq!(out.ok(), "201\n200\n403\n", "{}", out.stderr());
        let out = run(w, &d, "=raw", "python3 logs.py");
        assert_eq!(out.ok(), "201\n200\n201\n");
    });
}

/// A bind source swapped for a symlink to / after the create, the container then started by
/// an id prefix (which the daemon resolves too): refused; the control: `=raw` starts it.
#[test]
fn a_start_by_id_prefix_checks_the_bind_sources_again() {
    each_user(|w| {
        let d = daemon(w);
        let p = w.project.to_str().unwrap();
        w.write(
            "home/src/project/bind.json",
            &format!(r#"{{"Image":"a","HostConfig":{{"Binds":["{p}/sub:/s"]}}}}"#),
        );
        let script = "mkdir sub; \
            curl -sS --unix-socket \"${DOCKER_HOST#unix://}\" -o /dev/null -w '%{http_code}\\n' \
            -H 'Content-Type: application/json' --data-binary @bind.json \
            http://d/v1.43/containers/create; rm -r sub; ln -s / sub; \
            curl -sS --unix-socket \"${DOCKER_HOST#unix://}\" -o /dev/null -w '%{http_code}\\n' \
            -X POST http://d/v1.43/containers/cccc/start";
        assert_eq!(run(w, &d, "", script).ok(), "201\n403\n");
        assert_eq!(run(w, &d, "=raw", script).ok(), "201\n204\n");
    });
}
