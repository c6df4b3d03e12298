//! `--port`'s part of the plan: the host's socket alone, read-only, where the helper inside
//! connects; the line saying what is published (a warning beyond loopback); the helper's
//! command line in front of the shim. Pure.

use std::ffi::OsString;
use std::path::Path;

use super::{Builder, Op};
use crate::inside::{PORTS_INSIDE, SELF_INSIDE};
use crate::ports::Publish;

/// The plan's part: the host's socket alone, read-only, where the helper connects; the line
/// saying what is published; a warning for an address beyond loopback.
pub(super) fn plan(ports: &[Publish], socket: Option<&Path>, b: &mut Builder) {
    let Some(socket) = socket.filter(|_| !ports.is_empty()) else {
        return;
    };
    b.push(
        Op::RoBindAt {
            src: socket.to_owned(),
            dest: PORTS_INSIDE.into(),
        },
        "--port: agentbox's socket (alone, read-only) that carries the published ports' \
         connections in; it reaches only the sandbox's own loopback ports",
    );
    let list: Vec<String> = ports.iter().map(ToString::to_string).collect();
    b.notes.push(format!(
        "--port: {} published: whatever can connect there on the host talks to the server the \
         agent runs on that port inside (and to nothing else)",
        list.join(", ")
    ));
    for p in ports.iter().filter(|p| !p.loopback()) {
        b.warnings.push(format!(
            "--port {}: not a loopback address: other machines on your network can reach the \
             agent's server",
            p.host_addr()
        ));
    }
}

/// `agentbox __ports [--tty] --port N... --`, in front of the shim.
pub(super) fn helper_argv(ports: &[Publish], interactive: bool) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![SELF_INSIDE.into(), "__ports".into()];
    if interactive {
        v.push("--tty".into());
    }
    let mut inside: Vec<u16> = ports.iter().map(|p| p.port).collect();
    inside.sort_unstable();
    inside.dedup();
    for p in inside {
        v.push("--port".into());
        v.push(p.to_string().into());
    }
    v.push("--".into());
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::parse_all;

    fn builder() -> Builder {
        Builder {
            steps: Vec::new(),
            warnings: Vec::new(),
            notes: Vec::new(),
            prep: Vec::new(),
        }
    }

    #[test]
    fn the_socket_is_bound_alone_read_only_and_beyond_loopback_is_warned() {
        let sock = Path::new("/run/user/1/agentbox/ports-9/ports.sock");
        let mut b = builder();
        plan(&parse_all(&["3000".into()]).unwrap(), Some(sock), &mut b);
        let ops: Vec<&Op> = b.steps.iter().map(|s| &s.op).collect();
        assert_eq!(
            ops,
            [&Op::RoBindAt {
                src: sock.into(),
                dest: PORTS_INSIDE.into()
            }]
        );
        assert!(b.warnings.is_empty() && b.notes.len() == 1, "{:?}", b.notes);
        assert!(b.notes[0].contains("127.0.0.1:3000 -> 3000"));
        let mut b = builder();
        let wide = parse_all(&["0.0.0.0:8080:3000".into(), "[::1]:3001".into()]).unwrap();
        plan(&wide, Some(sock), &mut b);
        assert_eq!(b.warnings.len(), 1, "{:?}", b.warnings);
        assert!(b.warnings[0].contains("0.0.0.0:8080"));
        // No port, nothing planned.
        let mut b = builder();
        plan(&[], Some(sock), &mut b);
        assert!(b.steps.is_empty() && b.notes.is_empty());
    }

    #[test]
    fn the_helper_gets_each_inside_port_once() {
        let ports = parse_all(&["8080:3000".into(), "3000".into(), "22".into()]).unwrap();
        let argv = helper_argv(&ports, true);
        let words: Vec<&str> = argv.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            words,
            [
                crate::inside::SELF_INSIDE,
                "__ports",
                "--tty",
                "--port",
                "22",
                "--port",
                "3000",
                "--"
            ]
        );
    }
}
