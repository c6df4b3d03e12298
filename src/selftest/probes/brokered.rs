//! Probes of the brokered host capabilities: with `--ssh-agent` and `--docker` the sandbox's
//! socket is agentbox's filter, which refuses what the raw socket (`=raw`) would let through.
//! Without the option there is nothing to reach, which counts as blocked too.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::*;

pub(super) fn probes() -> Vec<Probe> {
    let class = "brokered";
    vec![
        p(
            "ssh-agent-lock",
            class,
            Blocked,
            "locking the ssh-agent the sandbox sees is refused",
            |_| ssh_agent_lock(),
        ),
        p(
            "docker-privileged",
            class,
            Blocked,
            "creating a privileged container is refused before the daemon sees it",
            |_| docker_privileged(),
        ),
    ]
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn ask(s: &mut UnixStream, body: &[u8]) -> std::io::Result<u8> {
    s.write_all(&frame(body))?;
    let mut head = [0u8; 5];
    s.read_exact(&mut head)?;
    let n = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    // The rest of the answer is not needed.
    let mut rest = vec![0u8; n.saturating_sub(1).min(1 << 16)];
    s.read_exact(&mut rest)?;
    Ok(head[4])
}

/// SSH_AGENTC_LOCK with a password of its own. The raw agent accepts it, and is unlocked with
/// the same password at once: the user's agent is locked for a round trip.
fn ssh_agent_lock() -> Obs {
    let Some(sock) = std::env::var_os("SSH_AUTH_SOCK") else {
        return blocked("no ssh-agent handed over");
    };
    let Ok(mut s) = UnixStream::connect(&sock) else {
        return blocked("the agent socket does not answer");
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let password = format!("agentbox-probe-{}", std::process::id());
    let mut lock = vec![crate::sshagent::LOCK];
    lock.extend(frame(password.as_bytes()));
    match ask(&mut s, &lock) {
        Ok(crate::sshagent::FAILURE) => blocked("SSH_AGENT_FAILURE"),
        Ok(answer) => {
            let mut unlock = vec![crate::sshagent::UNLOCK];
            unlock.extend(frame(password.as_bytes()));
            let undone = ask(&mut s, &unlock).is_ok();
            allowed(format!(
                "the agent answered {answer}: locked (unlocked again: {undone})"
            ))
        }
        Err(e) => blocked(format!("no answer: {e}")),
    }
}

/// A create with `Privileged` for an image that does not exist: the filter answers 403 with its
/// own message; the raw daemon answers 404 (no such image) and creates nothing.
fn docker_privileged() -> Obs {
    let Some(host) = std::env::var("DOCKER_HOST").ok() else {
        return blocked("no Docker socket handed over");
    };
    let Some(path) = host.strip_prefix("unix://") else {
        return blocked("DOCKER_HOST is not a UNIX socket");
    };
    let Ok(mut s) = UnixStream::connect(path) else {
        return blocked("the Docker socket does not answer");
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let body = r#"{"Image":"agentbox-probe-no-such-image:0","HostConfig":{"Privileged":true}}"#;
    let req = format!(
        "POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = s.write_all(req.as_bytes()) {
        return blocked(format!("not sent: {e}"));
    }
    let mut answer = Vec::new();
    let _ = s.take(1 << 16).read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status = text.split_whitespace().nth(1).unwrap_or("none").to_owned();
    match text.contains("\"agentbox: ") {
        true => blocked(format!("{status} from agentbox's filter")),
        false => allowed(format!("the daemon answered {status}")),
    }
}
