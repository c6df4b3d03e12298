//! The host side of `--docker` for one run: a private directory (`docker-PID`, 0700, in
//! agentbox's runtime directory; removed at the end, and a leftover of a SIGKILLed run by the
//! next one), the socket in it that the plan binds inside, and a thread per connection, each
//! with its own connection to the daemon. Requests are read one at a time: the filter decides,
//! then the request and the daemon's answer pass as sent; an attach, an exec start or an
//! upgraded connection becomes a raw stream both ways after its request.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Result;

use super::http::{self, Framing};
use super::{MAX_CHECKED_BODY, Owned, Proxy, Route, check, checks_body, resolve_on_host, route};
use crate::hostfs::Untrusted;
use crate::rundir::SocketServer;

pub const SOCKET: &str = "docker.sock";
const MAX_CONNECTIONS: usize = 128;

/// This run's socket: `docker-PID/docker.sock` in `runtime`.
pub fn socket_path(runtime: &Path) -> PathBuf {
    runtime
        .join(format!("docker-{}", std::process::id()))
        .join(SOCKET)
}

struct Shared {
    proxy: Proxy,
    owned: Mutex<Owned>,
    refused: Mutex<BTreeMap<String, u64>>,
}

pub struct Running {
    server: SocketServer,
    shared: Arc<Shared>,
}

/// The run's Docker filter, started, when the plan binds one (`proxy`).
pub fn for_run(proxy: Option<Proxy>, uid: u32, areas: &Untrusted) -> Result<Option<Running>> {
    proxy.map(|p| start(p, uid, areas)).transpose()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

pub fn start(proxy: Proxy, uid: u32, areas: &Untrusted) -> Result<Running> {
    let socket = proxy.socket.clone();
    let shared = Arc::new(Shared {
        proxy,
        owned: Mutex::default(),
        refused: Mutex::default(),
    });
    let conn_shared = shared.clone();
    let server = SocketServer::start(
        &socket,
        "docker-",
        "docker",
        MAX_CONNECTIONS,
        uid,
        areas,
        move |conn| {
            let _ = serve(conn, &conn_shared);
        },
    )?;
    Ok(Running { server, shared })
}

impl Running {
    /// Stops accepting, removes the directory and says what was refused.
    pub fn finish(mut self) {
        self.server.stop();
        let refused = lock(&self.shared.refused);
        if !refused.is_empty() {
            let parts: Vec<String> = refused.iter().map(|(w, n)| format!("{w} x{n}")).collect();
            let line = format!("agentbox: --docker: refused {}", parts.join("; "));
            eprintln!("{}", crate::text::terminal(&line));
        }
    }
}

/// Serves one sandbox connection until it ends, breaks HTTP, or becomes a raw stream.
fn serve(client: UnixStream, shared: &Shared) -> std::io::Result<()> {
    let mut client_w = client.try_clone()?;
    let mut client_r = BufReader::new(client);
    let up = UnixStream::connect(&shared.proxy.upstream)?;
    let mut up_w = up.try_clone()?;
    let mut up_r = BufReader::new(up);
    let refuse = |w: &mut UnixStream, status: u16, why: &str| -> std::io::Result<()> {
        *lock(&shared.refused).entry(why.to_owned()).or_default() += 1;
        w.write_all(&http::refusal(status, why))
    };
    let mut sources = Vec::new();
    while let Some(head) = http::read_head(&mut client_r)? {
        let req = match http::parse_request(&head) {
            Ok(r) => r,
            Err(e) => return refuse(&mut client_w, 400, &e.to_string()),
        };
        let route = route(&req.method, &req.target);
        if req.expect_continue {
            // The body is read (and checked) before the daemon sees the request: the client
            // gets its 100 from here, and the daemon's own is not passed on.
            client_w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        if checks_body(&route) {
            let (raw, payload) = match http::read_body(&mut client_r, req.framing, MAX_CHECKED_BODY)
            {
                Ok(b) => b,
                // The body was not read to its end: the connection cannot go on.
                Err(e) => return refuse(&mut client_w, 413, &e.to_string()),
            };
            let json = match payload.iter().all(u8::is_ascii_whitespace) {
                true => None,
                false => match serde_json::from_slice::<serde_json::Value>(&payload) {
                    Ok(v) => Some(v),
                    Err(_) => {
                        refuse(&mut client_w, 400, "a body that is not JSON")?;
                        continue;
                    }
                },
            };
            let decided = check(
                &route,
                &req.target,
                json.as_ref(),
                &shared.proxy,
                &lock(&shared.owned),
                &resolve_on_host,
            );
            if let Err(why) = decided {
                refuse(&mut client_w, 403, &why)?;
                continue;
            }
            if route == Route::ContainerCreate {
                sources = json.as_ref().map(super::bind_sources).unwrap_or_default();
            }
            up_w.write_all(&head)?;
            up_w.write_all(&raw)?;
        } else {
            let decided = check(
                &route,
                &req.target,
                None,
                &shared.proxy,
                &lock(&shared.owned),
                &resolve_on_host,
            );
            if let Err(why) = decided {
                // Its body is still unread: answered, then the connection ends.
                refuse(&mut client_w, 403, &why)?;
                return client_w.shutdown(Shutdown::Both);
            }
            up_w.write_all(&head)?;
            http::copy_body(&mut client_r, &mut up_w, req.framing)?;
        }
        up_w.flush()?;
        let (rhead, resp) = loop {
            let Some(rhead) = http::read_head(&mut up_r)? else {
                return Ok(());
            };
            let resp = http::parse_response(&rhead, &req.method)?;
            if !(100..200).contains(&resp.status) || resp.hijacked {
                break (rhead, resp);
            }
        };
        client_w.write_all(&rhead)?;
        // Only when the daemon says the connection has left HTTP: an attach or exec start it
        // answers with an error (or a detached exec start) stays HTTP, and the next request
        // on it is checked like any other.
        if resp.hijacked {
            client_w.flush()?;
            // Only the endpoints that hijack (their checks passed above) get the client's
            // bytes unchecked from here on; any other answers until the daemon closes.
            if !matches!(
                route,
                Route::Attach(_) | Route::ExecStart(_) | Route::Upgraded
            ) {
                std::io::copy(&mut up_r, &mut client_w)?;
                return client_w.shutdown(Shutdown::Both);
            }
            return splice(client_r, client_w, up_r, up_w);
        }
        let records = matches!(route, Route::ContainerCreate | Route::ExecCreate(_));
        if records && resp.status == 201 && resp.framing != Framing::UntilClose {
            let (raw, payload) = http::read_body(&mut up_r, resp.framing, MAX_CHECKED_BODY)?;
            let sources = std::mem::take(&mut sources);
            record(
                &route,
                &req.target,
                &payload,
                sources,
                &mut lock(&shared.owned),
            );
            client_w.write_all(&raw)?;
        } else {
            http::copy_body(&mut up_r, &mut client_w, resp.framing)?;
        }
        client_w.flush()?;
        if resp.framing == Framing::UntilClose {
            return Ok(());
        }
    }
    Ok(())
}

/// The ids (and the name asked for) of what the daemon created for the sandbox.
fn record(route: &Route, target: &str, payload: &[u8], sources: Vec<String>, owned: &mut Owned) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return;
    };
    let Some(id) = v.get("Id").and_then(|i| i.as_str()) else {
        return;
    };
    match route {
        Route::ContainerCreate => {
            if let Some(name) = super::created_name(target) {
                owned.add_container_with(&name, sources.clone());
            }
            owned.add_container_with(id, sources);
        }
        Route::ExecCreate(_) => owned.add_exec(id),
        _ => {}
    }
}

/// Both ways until each side is done; a half-close passes on as a half-close (an attached
/// client ends its stdin so, and waits for the output).
fn splice(
    mut client_r: BufReader<UnixStream>,
    mut client_w: UnixStream,
    mut up_r: BufReader<UnixStream>,
    mut up_w: UnixStream,
) -> std::io::Result<()> {
    let client = client_w.try_clone()?;
    let to_daemon = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_r, &mut up_w);
        let _ = up_w.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut up_r, &mut client_w);
    // The daemon is done: so is the stream, whatever the client still holds open.
    let _ = client.shutdown(Shutdown::Both);
    let _ = to_daemon.join();
    Ok(())
}
