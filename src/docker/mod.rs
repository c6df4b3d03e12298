//! `--docker`'s filter: the sandbox gets a socket served by agentbox (on the host, in the
//! supervising process) in front of the Docker daemon's, which refuses (403, with a JSON body
//! `{"message": "agentbox: ..."}`) what turns a container into the host, and passes everything
//! else on byte for byte. This file is the policy, pure: which endpoint a request is, and
//! whether a body may pass. `http` frames HTTP/1.1, `serve` does the sockets.
//!
//! Refused: containers created privileged, with added capabilities, devices (or device
//! requests and cgroup rules), the host's network, pid, ipc, uts, user or cgroup namespace (or
//! another container's, unless the sandbox created it), security options other than
//! `no-new-privileges`, `label=level:`, `seccomp=builtin` and `apparmor=docker-default` (an
//! inline seccomp profile can allow everything, `label=type:spc_t` is unconfined), masked or
//! read-only paths overridden, volumes from containers it did not create, bind mounts whose
//! source (symlinks resolved on the host) is outside the project and the `--rw` paths, and
//! mounts of the Docker socket; volumes with driver options (the local driver's
//! `o=bind,device=/` is a bind of any host path); exec, attach, file copies, exports, commits,
//! logs, inspection and renaming of containers the sandbox did not create (their files,
//! output and environment are the user's; renamed, one could take a name the sandbox's had;
//! linked, its environment is the new container's),
//! and privileged execs; builds on the host's network; plugins; swarm services. HostConfig's
//! fields are checked at the top of a create body too (daemons before 25.0 read them there).
//! The daemon decodes JSON keys without regard to case: the checks do too, and a key that is
//! not ASCII is refused (Go folds some non-ASCII letters onto ASCII ones).
//!
//! Not closed: a bind source in the project is checked when the container is created and when
//! it starts (by any reference: one that is not exactly the sandbox's checks all its
//! containers' sources); the agent could swap a directory for a symlink between that check
//! and the daemon's mount, or before a restart the daemon makes on its own (a restart
//! policy). Containers reach the network through the daemon, whatever `--net` says, and
//! BuildKit's sessions (`/grpc`) pass unchecked (a build step may ask for the host's network).

pub mod http;
pub mod serve;

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

/// The largest request body agentbox reads to check (a container's create body is a few KiB).
pub const MAX_CHECKED_BODY: usize = 1 << 20;

/// This run's Docker filter: where it listens (bound inside by the plan), the daemon's socket,
/// and the host paths containers may bind (canonical).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub socket: PathBuf,
    pub upstream: PathBuf,
    pub roots: Vec<PathBuf>,
}

/// What the daemon told the sandbox it created: the only containers it may exec into, with
/// the bind sources each was created with (checked again at every start).
#[derive(Debug, Default)]
pub struct Owned {
    containers: HashMap<String, Vec<String>>,
    execs: HashSet<String>,
}

impl Owned {
    pub fn add_container(&mut self, id_or_name: &str) {
        self.add_container_with(id_or_name, Vec::new());
    }

    pub fn add_container_with(&mut self, id_or_name: &str, sources: Vec<String>) {
        self.containers
            .insert(id_or_name.trim_start_matches('/').to_owned(), sources);
    }

    pub fn add_exec(&mut self, id: &str) {
        self.execs.insert(id.to_owned());
    }

    /// Only the full id or the name given at create: a prefix could be another container's
    /// name (the daemon looks names up before id prefixes).
    pub fn container(&self, reference: &str) -> bool {
        self.containers
            .contains_key(reference.trim_start_matches('/'))
    }

    /// The bind sources a start of `reference` mounts. A reference that is none of the
    /// sandbox's full ids or names (an id prefix, a name its container was renamed to) may
    /// still be one of its containers: then every one of its containers' sources.
    fn sources(&self, reference: &str) -> Vec<&String> {
        match self.containers.get(reference.trim_start_matches('/')) {
            Some(own) => own.iter().collect(),
            None => self.containers.values().flatten().collect(),
        }
    }

    pub fn exec(&self, id: &str) -> bool {
        self.execs.contains(id)
    }
}

/// The endpoints the filter looks at; everything else is `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    ContainerCreate,
    /// Start or restart: the mounts are made then.
    ContainerStart(String),
    ContainerUpdate(String),
    ExecCreate(String),
    ExecStart(String),
    Attach(String),
    ArchivePut(String),
    /// What another container holds: its files (archive, export, commit), its output (logs),
    /// its configuration with its environment (inspect).
    ContainerRead(String),
    /// Renaming: another container renamed to a name the sandbox gave its own would stand
    /// for the sandbox's.
    Rename(String),
    VolumeCreate,
    Build,
    Plugins,
    Swarm,
    /// BuildKit's session and gRPC: upgraded connections, passed on whole.
    Upgraded,
    /// A request target that is not a plain path.
    Unparsable,
    Other,
}

/// The route of `method` `target` (`/v1.43/containers/create?name=x`: version and query
/// dropped). Percent-escapes are decoded and dot segments resolved first, as the daemon's
/// router may do; a target that is not a path (`http://d/...`, which Go's server accepts) is
/// `Unparsable`, refused.
pub fn route(method: &str, target: &str) -> Route {
    if !target.starts_with('/') {
        return Route::Unparsable;
    }
    let path = target.split('?').next().unwrap_or("");
    let path = percent_decode(path);
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    // The daemon's router takes `v` and digits and dots (`/v1/...` too) for the version.
    if parts.first().is_some_and(|p| {
        p.len() > 1 && p.starts_with('v') && p[1..].bytes().all(|b| b.is_ascii_digit() || b == b'.')
    }) {
        parts.remove(0);
    }
    let post = method.eq_ignore_ascii_case("POST");
    let id = |i: usize| parts.get(i).map(|s| s.to_string()).unwrap_or_default();
    match parts.as_slice() {
        ["containers", "create"] if post => Route::ContainerCreate,
        ["containers", _, "start" | "restart"] if post => Route::ContainerStart(id(1)),
        ["containers", _, "update"] if post => Route::ContainerUpdate(id(1)),
        ["containers", _, "exec"] if post => Route::ExecCreate(id(1)),
        ["containers", _, "rename"] if post => Route::Rename(id(1)),
        ["containers", _, "attach"] | ["containers", _, "attach", "ws"] => Route::Attach(id(1)),
        ["containers", _, "archive"] if method.eq_ignore_ascii_case("PUT") => {
            Route::ArchivePut(id(1))
        }
        ["containers", _, "archive" | "export" | "logs" | "json"] => Route::ContainerRead(id(1)),
        ["commit"] if post => Route::ContainerRead(query_value(target, "container")),
        ["exec", _, "start"] if post => Route::ExecStart(id(1)),
        ["volumes", "create"] if post => Route::VolumeCreate,
        ["build"] if post => Route::Build,
        ["plugins", ..] if !method.eq_ignore_ascii_case("GET") => Route::Plugins,
        ["swarm", ..] | ["services", ..] if !method.eq_ignore_ascii_case("GET") => Route::Swarm,
        ["session"] | ["grpc"] => Route::Upgraded,
        _ => Route::Other,
    }
}

/// The name a create request gives its container, as the daemon reads it: the first `name`
/// in the query (keys decoded). A name that looks like a full container id is not one the
/// sandbox may use: the daemon looks a reference up as a full id before as a name, so that
/// name would stand for the other container.
pub fn created_name(target: &str) -> Option<String> {
    let name = query_value(target, "name");
    let name = name.trim_start_matches('/');
    let id_like = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
    (!name.is_empty() && !id_like).then(|| name.to_owned())
}

/// The (decoded) value of `key` in `target`'s query as the daemon reads it (Go's
/// `FormValue`): the first pair with that key, a key without `=` counting as an empty value;
/// a pair with a `;` or a bad escape is skipped, `+` is a space. Empty when absent.
fn query_value(target: &str, key: &str) -> String {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.contains(';'))
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((form_decode(k)?, form_decode(v)?))
        })
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// A query component decoded as Go's `QueryUnescape` does; `None` where Go fails.
fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let digit = |j: usize| (*b.get(j)? as char).to_digit(16);
                out.push((digit(i + 1)? * 16 + digit(i + 2)?) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A refusal: what the 403's message says after "agentbox: ".
pub type Refusal = String;

/// How a bind source is resolved on the host: the canonical path of its deepest existing
/// ancestor with the rest appended (the daemon creates a missing source). `None`: unreadable.
pub type Resolve<'a> = &'a dyn Fn(&Path) -> Option<PathBuf>;

/// The host's resolver.
pub fn resolve_on_host(p: &Path) -> Option<PathBuf> {
    let mut existing = p.to_owned();
    let mut rest = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(c) => {
                let mut out = c;
                out.extend(rest.iter().rev());
                return Some(out);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                rest.push(existing.file_name()?.to_owned());
                existing = existing.parent()?.to_owned();
            }
            Err(_) => return None,
        }
    }
}

/// The fields of `obj` named `name`, in any case (the daemon's decoder ignores case).
fn fields<'a>(obj: &'a Map<String, Value>, name: &str) -> Vec<&'a Value> {
    obj.iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
        .collect()
}

/// Refuses an object with a key that is not ASCII (Go would fold `ſ` onto `s`, `K` onto `k`).
fn ascii_keys(obj: &Map<String, Value>, what: &str) -> Result<(), Refusal> {
    match obj.keys().find(|k| !k.is_ascii()) {
        Some(k) => Err(format!("{what}: a key that is not ASCII ({k:?})")),
        None => Ok(()),
    }
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Bool(false) | Value::Null)
        && !v.as_array().is_some_and(Vec::is_empty)
        && !v.as_object().is_some_and(Map::is_empty)
        && v.as_str() != Some("")
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// A container create body (`POST /containers/create`).
pub fn check_create(
    body: &Value,
    proxy: &Proxy,
    owned: &Owned,
    resolve: Resolve,
) -> Result<(), Refusal> {
    let top = body.as_object().ok_or("the body is not a JSON object")?;
    ascii_keys(top, "container")?;
    // Daemons before 25.0 also read HostConfig's fields at the top of the body (a deprecated
    // embedded HostConfig, used when the body has no `HostConfig`): checked there too.
    check_host_config(top, proxy, owned, resolve)?;
    for hc in fields(top, "HostConfig") {
        let hc = hc.as_object().ok_or("HostConfig is not an object")?;
        check_host_config(hc, proxy, owned, resolve)?;
    }
    Ok(())
}

/// A `HostConfig` (create) or the resources of `POST /containers/{id}/update`.
pub fn check_host_config(
    hc: &Map<String, Value>,
    proxy: &Proxy,
    owned: &Owned,
    resolve: Resolve,
) -> Result<(), Refusal> {
    ascii_keys(hc, "HostConfig")?;
    let flat = |name: &str| -> Vec<&Value> { fields(hc, name) };
    for (name, why) in [
        ("Privileged", "privileged containers are the host"),
        ("CapAdd", "added capabilities"),
        ("Devices", "host devices"),
        ("DeviceRequests", "host devices (GPUs)"),
        ("DeviceCgroupRules", "access to host devices"),
    ] {
        if flat(name).into_iter().any(truthy) {
            return Err(format!("HostConfig.{name}: {why}"));
        }
    }
    // The daemon's defaults mask and protect; any list given (even an empty one, which is
    // what `systempaths=unconfined` sends) replaces them.
    for (name, why) in [
        ("MaskedPaths", "unmasking /proc and /sys paths"),
        ("ReadonlyPaths", "making /proc and /sys paths writable"),
    ] {
        if !flat(name).is_empty() {
            return Err(format!("HostConfig.{name}: {why}"));
        }
    }
    for name in [
        "NetworkMode",
        "PidMode",
        "IpcMode",
        "UTSMode",
        "UsernsMode",
        "CgroupnsMode",
    ] {
        for mode in flat(name).into_iter().flat_map(strings) {
            let m = mode.to_ascii_lowercase();
            if m == "host" {
                return Err(format!("HostConfig.{name}: the host's namespace"));
            }
            if let Some(other) = mode.strip_prefix("container:")
                && !owned.container(other)
            {
                return Err(format!(
                    "HostConfig.{name}: the namespace of a container the sandbox did not create"
                ));
            }
        }
    }
    for opt in flat("SecurityOpt").into_iter().flat_map(strings) {
        if !security_opt_keeps_protections(&opt) {
            return Err(format!(
                "HostConfig.SecurityOpt {opt:?}: a protection switched off or replaced"
            ));
        }
    }
    for from in flat("VolumesFrom").into_iter().flat_map(strings) {
        let id = from.split(':').next().unwrap_or("");
        if !owned.container(id) {
            return Err(
                "HostConfig.VolumesFrom: the mounts of a container the sandbox did not create"
                    .into(),
            );
        }
    }
    // A legacy link puts the linked container's environment in the new one's.
    for link in flat("Links").into_iter().flat_map(strings) {
        let id = link.split(':').next().unwrap_or("");
        if !owned.container(id) {
            return Err(
                "HostConfig.Links: the environment of a container the sandbox did not create"
                    .into(),
            );
        }
    }
    for bind in flat("Binds").into_iter().flat_map(strings) {
        let src = bind.split(':').next().unwrap_or("");
        check_source(src, proxy, resolve).map_err(|e| format!("HostConfig.Binds {bind:?}: {e}"))?;
    }
    for mounts in flat("Mounts") {
        for m in mounts.as_array().ok_or("HostConfig.Mounts is not a list")? {
            check_mount(m, proxy, resolve)?;
        }
    }
    Ok(())
}

/// The security options that leave the daemon's protections as they are; anything else
/// (`unconfined`, `label=disable`, an inline seccomp profile that allows everything, an
/// SELinux type such as `spc_t`, another AppArmor profile, `writable-cgroups`) is refused.
fn security_opt_keeps_protections(opt: &str) -> bool {
    // The daemon splits on the first `=`, or on `:` in the legacy form.
    let (key, value) = opt
        .split_once('=')
        .or_else(|| opt.split_once(':'))
        .unwrap_or((opt, ""));
    match key {
        "no-new-privileges" => true,
        "seccomp" => value == "builtin",
        "apparmor" => value == "docker-default",
        "label" => value.starts_with("level:"),
        _ => false,
    }
}

fn check_mount(m: &Value, proxy: &Proxy, resolve: Resolve) -> Result<(), Refusal> {
    let m = m.as_object().ok_or("a mount is not an object")?;
    ascii_keys(m, "Mounts")?;
    let kinds: Vec<String> = fields(m, "Type").into_iter().flat_map(strings).collect();
    for kind in &kinds {
        match kind.to_ascii_lowercase().as_str() {
            "volume" | "tmpfs" | "bind" => {}
            other => return Err(format!("Mounts: a mount of type {other:?}")),
        }
    }
    for opts in fields(m, "VolumeOptions") {
        let opts = opts.as_object().ok_or("VolumeOptions is not an object")?;
        ascii_keys(opts, "VolumeOptions")?;
        for dc in fields(opts, "DriverConfig") {
            let dc = dc.as_object().ok_or("DriverConfig is not an object")?;
            ascii_keys(dc, "DriverConfig")?;
            if fields(dc, "Options").into_iter().any(truthy) {
                return Err("Mounts: volume driver options (a bind of any host path)".into());
            }
        }
    }
    // A source is a path for a bind, a volume's name otherwise; checked as a path whenever
    // it looks like one, whatever the type says.
    for src in fields(m, "Source").into_iter().flat_map(strings) {
        if kinds.iter().any(|k| k.eq_ignore_ascii_case("bind")) || src.starts_with('/') {
            check_source(&src, proxy, resolve).map_err(|e| format!("Mounts {src:?}: {e}"))?;
        }
    }
    Ok(())
}

/// A bind source: a volume name passes; a path must resolve, on the host, inside the roots,
/// and never to the Docker socket.
fn check_source(src: &str, proxy: &Proxy, resolve: Resolve) -> Result<(), Refusal> {
    if !src.starts_with('/') {
        // `name:/dest` is a named volume; anything else relative is not a path the daemon
        // accepts, but is refused rather than guessed at.
        return match src
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            && !src.is_empty()
        {
            true => Ok(()),
            false => Err("not an absolute path nor a volume name".into()),
        };
    }
    let p = Path::new(src);
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err("a path with ..".into());
    }
    let real = resolve(p).ok_or("its path cannot be resolved")?;
    let socket = resolve(&proxy.upstream).unwrap_or_else(|| proxy.upstream.clone());
    if real == socket || socket.starts_with(&real) {
        return Err("the Docker socket (root on the host)".into());
    }
    match proxy.roots.iter().any(|r| real.starts_with(r)) {
        true => Ok(()),
        false => Err(format!(
            "{} is outside the project and the --rw paths",
            real.display()
        )),
    }
}

/// The path sources of a create body's binds and mounts (after `check_create` passed it).
pub fn bind_sources(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(top) = body.as_object() else {
        return out;
    };
    // The top of the body too: older daemons read HostConfig's fields there.
    let nested = fields(top, "HostConfig")
        .into_iter()
        .filter_map(Value::as_object);
    for hc in std::iter::once(top).chain(nested) {
        for bind in fields(hc, "Binds").into_iter().flat_map(strings) {
            out.extend(bind.split(':').next().map(str::to_owned));
        }
        for m in fields(hc, "Mounts")
            .into_iter()
            .filter_map(Value::as_array)
            .flatten()
        {
            if let Some(m) = m.as_object() {
                out.extend(fields(m, "Source").into_iter().flat_map(strings));
            }
        }
    }
    out.retain(|s| s.starts_with('/'));
    out
}

/// `POST /volumes/create`: driver options would let the local driver bind any host path.
pub fn check_volume(body: &Value) -> Result<(), Refusal> {
    let top = body.as_object().ok_or("the body is not a JSON object")?;
    ascii_keys(top, "volume")?;
    match fields(top, "DriverOpts").into_iter().any(truthy) {
        true => Err("volume driver options (o=bind,device=... is a bind of any host path)".into()),
        false => Ok(()),
    }
}

/// `POST /containers/{id}/exec`: only into the sandbox's containers, never privileged.
pub fn check_exec(id: &str, body: &Value, owned: &Owned) -> Result<(), Refusal> {
    if !owned.container(id) {
        return Err("exec into a container the sandbox did not create".into());
    }
    let top = body.as_object().ok_or("the body is not a JSON object")?;
    ascii_keys(top, "exec")?;
    match fields(top, "Privileged").into_iter().any(truthy) {
        true => Err("a privileged exec".into()),
        false => Ok(()),
    }
}

/// `POST /build?networkmode=host`: the build's containers on the host's network (or on the
/// network of a container the sandbox did not create).
pub fn check_build(target: &str, owned: &Owned) -> Result<(), Refusal> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        if !k.eq_ignore_ascii_case("networkmode") {
            continue;
        }
        if v.eq_ignore_ascii_case("host") {
            return Err("a build on the host's network".into());
        }
        if let Some(other) = v.strip_prefix("container:")
            && !owned.container(other)
        {
            return Err("a build on the network of a container the sandbox did not create".into());
        }
    }
    Ok(())
}

/// The decision on a request whose body (if checked) is `body`. `Ok` passes it on.
pub fn check(
    route: &Route,
    target: &str,
    body: Option<&Value>,
    proxy: &Proxy,
    owned: &Owned,
    resolve: Resolve,
) -> Result<(), Refusal> {
    let empty = Value::Object(Map::new());
    let body = body.unwrap_or(&empty);
    match route {
        Route::ContainerCreate => check_create(body, proxy, owned, resolve),
        Route::ContainerUpdate(_) => {
            let top = body.as_object().ok_or("the body is not a JSON object")?;
            check_host_config(top, proxy, owned, resolve)
        }
        // Old API versions took a HostConfig at start; none is passed on. The bind sources
        // are resolved again: one may have become a symlink since the create.
        Route::ContainerStart(id) => match truthy(body) {
            true => Err("a HostConfig given at start".into()),
            false => owned.sources(id).iter().try_for_each(|s| {
                check_source(s, proxy, resolve)
                    .map_err(|e| format!("a bind of {s:?} at start: {e}"))
            }),
        },
        Route::ExecCreate(id) => check_exec(id, body, owned),
        Route::ExecStart(id) if !owned.exec(id) => Err("an exec the sandbox did not create".into()),
        Route::Attach(id)
        | Route::ArchivePut(id)
        | Route::ContainerRead(id)
        | Route::Rename(id)
            if !owned.container(id) =>
        {
            Err("a container the sandbox did not create".into())
        }
        Route::VolumeCreate => check_volume(body),
        Route::Build => check_build(target, owned),
        Route::Plugins => Err("plugins run as root on the host".into()),
        Route::Swarm => Err("swarm services (their containers escape these checks)".into()),
        Route::Unparsable => Err("a request target that is not a path".into()),
        _ => Ok(()),
    }
}

/// Whether `route`'s body is read and checked before it is passed on.
pub fn checks_body(route: &Route) -> bool {
    matches!(
        route,
        Route::ContainerCreate
            | Route::ContainerUpdate(_)
            | Route::ContainerStart(_)
            | Route::ExecCreate(_)
            | Route::VolumeCreate
    )
}

#[cfg(test)]
mod tests;
