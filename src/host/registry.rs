//! `--allow-registry NAME`: asks the package tool on the host which registry it is configured
//! to use (its own config and defaults), and turns its answer into allow patterns. No registry
//! is named here: where the tool cannot say, the answer is a note pointing at `--learn`.
//!
//! Running a tool on the host is host I/O, and the project (a writable root) must not choose
//! what it says: each tool runs from `/` (not the project, whose `.npmrc`, `go.mod` toolchain
//! line or venv would count), with a scrubbed environment (PATH without the untrusted areas,
//! HOME, XDG_CONFIG_HOME and the tool's own variables), stdin closed, a few seconds at most,
//! and only a tool whose executable lies outside the untrusted areas. cargo is not run: its
//! registry settings are read from `$CARGO_HOME/config.toml`, never from the project's.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::error::Fail;
use crate::hostenv::Env;
use crate::net::rules::Pattern;

/// A tool that takes longer has not answered.
const TOOL_TIMEOUT: Duration = Duration::from_secs(5);
/// What is read of a tool's answer.
const MAX_OUTPUT: u64 = 1 << 20;

/// The ecosystems `--allow-registry` knows.
pub const NAMES: [&str; 4] = ["npm", "pypi", "go", "cargo"];

/// What one `--allow-registry NAME` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    pub name: String,
    /// Patterns to allow (`host` or `host:port`).
    pub hosts: Vec<String>,
    /// For the user: what said so, or why nothing could be said.
    pub note: String,
}

/// The pattern for a URL's host and port (`None` for what is not an http(s) URL with a host).
pub fn host_of(url: &str) -> Option<String> {
    let url = url.trim().trim_matches(['\'', '"']);
    let url = url
        .strip_prefix("sparse+")
        .or_else(|| url.strip_prefix("registry+"))
        .unwrap_or(url);
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let p = Pattern::parse(authority).ok()?;
    match p.port {
        Some(port) if port == default => Pattern::parse(authority.rsplit_once(':')?.0)
            .ok()
            .map(|p| p.text),
        _ => Some(p.text),
    }
}

/// Which tool to ask, and how, for each name.
pub fn probe(names: &[String], env: &Env, untrusted: &[PathBuf]) -> Result<Vec<Registry>> {
    let mut out = Vec::new();
    for name in names {
        let tool = Tool { env, untrusted };
        let r = match name.as_str() {
            "npm" => tool.npm(),
            "pypi" | "pip" => tool.pip(),
            "go" => tool.go(),
            "cargo" => cargo(env, untrusted),
            other => {
                return Err(Fail::hint(
                    format!("--allow-registry {other}: not a registry agentbox knows"),
                    format!("one of: {}", NAMES.join(", ")),
                )
                .into());
            }
        };
        out.push(Registry {
            name: name.clone(),
            ..r
        });
    }
    Ok(out)
}

fn unsaid(name: &str, why: &str) -> Registry {
    Registry {
        name: name.to_owned(),
        hosts: Vec::new(),
        note: format!(
            "--allow-registry {name}: {why}; run once with --learn to see the hosts it uses, \
             then `agentbox allow HOST`"
        ),
    }
}

fn found(name: &str, hosts: Vec<String>, said: &str) -> Registry {
    let mut hosts = hosts;
    hosts.sort();
    hosts.dedup();
    if hosts.is_empty() {
        return unsaid(name, &format!("{said} named no http(s) host"));
    }
    Registry {
        name: name.to_owned(),
        note: format!(
            "--allow-registry {name}: {said}: allowing {}",
            hosts.join(", ")
        ),
        hosts,
    }
}

struct Tool<'a> {
    env: &'a Env,
    untrusted: &'a [PathBuf],
}

impl Tool<'_> {
    fn npm(&self) -> Registry {
        let Some(text) = self.ask("npm", &["config", "list", "--json"], &["npm_config_"]) else {
            return unsaid("npm", "npm did not answer `npm config list`");
        };
        let Ok(serde_json::Value::Object(cfg)) = serde_json::from_str(&text) else {
            return unsaid("npm", "npm's `config list --json` was not JSON");
        };
        // The default registry and every scope's (`@scope:registry`); tarballs come from
        // the registry's own host unless a package says otherwise.
        let hosts = cfg
            .iter()
            .filter(|(k, _)| *k == "registry" || k.ends_with(":registry"))
            .filter_map(|(_, v)| v.as_str().and_then(host_of))
            .collect();
        found("npm", hosts, "npm's configured registries")
    }

    fn pip(&self) -> Registry {
        let listed = self
            .ask("python3", &["-m", "pip", "config", "list"], &["PIP_"])
            .unwrap_or_default();
        // `global.index-url='URL'`, `:env:.extra-index-url='URL URL'`, ...
        let urls: Vec<String> = listed
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.ends_with(".index-url") || k.ends_with(".extra-index-url"))
            .flat_map(|(_, v)| v.trim_matches(['\'', '"']).split_whitespace())
            .filter_map(host_of)
            .collect();
        if !urls.is_empty() {
            return found("pypi", urls, "pip's configured index");
        }
        // Nothing configured: pip's own default index and the host it serves files from.
        let script = "from pip._internal.models.index import PyPI\n\
                      print(PyPI.url)\nprint('https://' + PyPI.file_storage_domain + '/')\n";
        match self.ask("python3", &["-c", script], &["PIP_"]) {
            Some(text) => found(
                "pypi",
                text.lines().filter_map(host_of).collect(),
                "pip's default index and file host",
            ),
            None => unsaid("pypi", "python3 -m pip did not say which index it uses"),
        }
    }

    fn go(&self) -> Registry {
        let vars = ["GOPROXY", "GOSUMDB"];
        let mut args = vec!["env", "-json"];
        args.extend(vars);
        let Some(text) = self.ask("go", &args, &["GO"]) else {
            return unsaid("go", "go did not answer `go env`");
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            return unsaid("go", "`go env -json` was not JSON");
        };
        let proxy = v["GOPROXY"].as_str().unwrap_or("");
        let mut hosts: Vec<String> = proxy.split([',', '|']).filter_map(host_of).collect();
        // GOSUMDB is "off", "NAME[+KEY]" (served at https://NAME) or "NAME[+KEY] URL".
        let sumdb = v["GOSUMDB"].as_str().unwrap_or("off");
        if sumdb != "off" {
            let mut words = sumdb.split_whitespace();
            let name = words.next().unwrap_or("");
            let url = match words.next() {
                Some(u) => u.to_owned(),
                None => format!("https://{}/", name.split('+').next().unwrap_or("")),
            };
            hosts.extend(host_of(&url));
        }
        let mut r = found("go", hosts, "go env GOPROXY and GOSUMDB");
        if proxy.split([',', '|']).any(|p| p == "direct") {
            r.note.push_str(
                " (GOPROXY includes `direct`: modules fetched from their own hosts are not \
                 included; --learn shows them)",
            );
        }
        r
    }

    /// `program args`, from `/`, with the scrubbed environment plus the variables starting
    /// with one of `prefixes`; its stdout, where it exits 0 in time.
    fn ask(&self, program: &str, args: &[&str], prefixes: &[&str]) -> Option<String> {
        // Judged and used where they really are: a PATH entry spelled through a symlink
        // (`~/src` a link to `/data/src`) into a writable root is that writable root.
        let path: Vec<PathBuf> = self
            .env
            .path_dirs()
            .iter()
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .filter(|d| !self.is_untrusted(d))
            .collect();
        let found = path.iter().map(|d| d.join(program)).find(|p| p.is_file())?;
        // Run by its real path: a link in a writable root could be pointed elsewhere after
        // this check, and a venv's python run through its link there imports that venv's
        // packages (the project's, on the host).
        let exe = std::fs::canonicalize(found).ok()?;
        if self.is_untrusted(&exe) {
            return None;
        }
        let mut cmd = Command::new(&exe);
        cmd.args(args)
            .current_dir("/")
            .env_clear()
            .env("PATH", std::env::join_paths(&path).ok()?)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in self.env.vars() {
            let name = k.to_string_lossy();
            let keep = ["HOME", "USER", "LANG", "XDG_CONFIG_HOME"].contains(&name.as_ref())
                || prefixes.iter().any(|p| {
                    name.to_ascii_lowercase()
                        .starts_with(&p.to_ascii_lowercase())
                });
            // A variable naming a file where the sandbox writes (a per-directory
            // PIP_CONFIG_FILE, npm_config_userconfig or GOENV in the project) would let the
            // agent choose the answer: left out.
            let names_untrusted = || {
                std::env::split_paths(v)
                    .filter(|p| p.is_absolute())
                    .filter_map(|p| crate::host::resolved(&p))
                    .any(|p| self.is_untrusted(&p))
            };
            if keep && !names_untrusted() {
                cmd.env(OsString::from(k), v);
            }
        }
        run_bounded(cmd)
    }

    fn is_untrusted(&self, p: &Path) -> bool {
        self.untrusted.iter().any(|u| p.starts_with(u))
    }
}

/// Runs `cmd`, killing it past `TOOL_TIMEOUT`; its stdout where it exited 0.
fn run_bounded(mut cmd: Command) -> Option<String> {
    let mut child = cmd.spawn().ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stdout).take(MAX_OUTPUT).read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    status.filter(|s| s.success())?;
    let buf = reader.join().ok()?;
    String::from_utf8(buf).ok()
}

/// `--allow-registry` applied: asks the tools (none of them in a writable root of this run or
/// in agentbox's own data, where agent homes are), adds what they said to the filter, and
/// returns the notes to show.
pub fn allow(
    policy: &mut crate::policy::Policy,
    facts: &crate::host::HostFacts,
) -> Result<Vec<String>> {
    if policy.filter.registries.is_empty() {
        return Ok(Vec::new());
    }
    let untrusted = crate::host::untrusted(&facts.user, &facts.project);
    let found = probe(&policy.filter.registries, &facts.user.env, &untrusted)?;
    let mut notes = Vec::new();
    for r in found {
        policy.filter.add_allowed(&r.hosts)?;
        notes.push(r.note);
    }
    // A registry on its own port makes the relay capture that port too: not publishable.
    policy.check_ports()?;
    Ok(notes)
}

/// cargo's registries from the user's own cargo config (never the project's): the source
/// that replaces the default one, and named registries; and their variables.
fn cargo(env: &Env, untrusted: &[PathBuf]) -> Registry {
    let home = match (env.var("CARGO_HOME"), env.home()) {
        (Some(h), _) => PathBuf::from(h),
        (None, Ok(h)) => h.join(".cargo"),
        (None, Err(_)) => return unsaid("cargo", "no home to find cargo's config in"),
    };
    // A CARGO_HOME in the project (set per directory, as direnv does) holds what the agent
    // wrote: its registries are not the user's.
    let files: Vec<PathBuf> = ["config.toml", "config"]
        .iter()
        .filter_map(|f| std::fs::canonicalize(home.join(f)).ok())
        .collect();
    if let Some(f) = files
        .iter()
        .find(|f| untrusted.iter().any(|u| f.starts_with(u)))
    {
        return unsaid(
            "cargo",
            &format!(
                "cargo's config {} is where the sandbox can write, so it is not read",
                crate::text::printable(f.as_os_str())
            ),
        );
    }
    let text = files
        .iter()
        .find_map(|f| {
            crate::hostfs::read_regular(f, false, MAX_OUTPUT)
                .ok()
                .flatten()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let cfg: toml::Table = toml::from_str(&text).unwrap_or_default();
    let mut urls: Vec<String> = Vec::new();
    let table = |k: &str| cfg.get(k).and_then(toml::Value::as_table).cloned();
    if let Some(sources) = table("source") {
        for s in sources.values().filter_map(toml::Value::as_table) {
            urls.extend(
                s.get("registry")
                    .and_then(toml::Value::as_str)
                    .map(str::to_owned),
            );
        }
    }
    if let Some(regs) = table("registries") {
        for r in regs.values().filter_map(toml::Value::as_table) {
            urls.extend(
                r.get("index")
                    .and_then(toml::Value::as_str)
                    .map(str::to_owned),
            );
        }
    }
    for (k, v) in env.vars() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_REGISTRIES_") && k.ends_with("_INDEX") {
            urls.push(v.to_string_lossy().into_owned());
        }
    }
    let hosts: Vec<String> = urls.iter().filter_map(|u| host_of(u)).collect();
    if hosts.is_empty() {
        return unsaid(
            "cargo",
            "cargo's config names no registry (cargo cannot print its built-in one)",
        );
    }
    let mut r = found("cargo", hosts, "cargo's configured registries");
    r.note.push_str(
        " (a registry's download host is in its index, which is not read here; --learn shows it)",
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_patterns() {
        for (url, want) in [
            ("https://r.example/", Some("r.example")),
            ("http://127.0.0.1:4873/", Some("127.0.0.1:4873")),
            ("http://r.example:80/x", Some("r.example")),
            (
                "'https://user:pw@R.Example:8443/simple'",
                Some("R.Example:8443"),
            ),
            ("sparse+https://index.example/", Some("index.example")),
            ("direct", None),
            ("off", None),
            ("file:///srv/mirror", None),
            ("https://*/", None),
        ] {
            assert_eq!(host_of(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn cargo_reads_the_users_config_only() {
        let home = tempfile::tempdir().unwrap();
        let env = Env::new(
            vec![
                ("HOME".into(), home.path().into()),
                (
                    "CARGO_REGISTRIES_MINE_INDEX".into(),
                    "sparse+https://mine.example/index/".into(),
                ),
            ],
            Path::new("/"),
        );
        std::fs::create_dir_all(home.path().join(".cargo")).unwrap();
        std::fs::write(
            home.path().join(".cargo/config.toml"),
            "[source.crates-io]\nreplace-with = \"m\"\n[source.m]\nregistry = \"sparse+http://127.0.0.1:7878/\"\n",
        )
        .unwrap();
        let r = cargo(&env, &[]);
        assert_eq!(r.hosts, ["127.0.0.1:7878", "mine.example"]);
        // The same config where the sandbox writes: not read.
        let real = std::fs::canonicalize(home.path()).unwrap();
        let r = cargo(&env, &[real]);
        assert!(
            r.hosts.is_empty() && r.note.contains("not read"),
            "{}",
            r.note
        );
        let empty = Env::new(vec![("HOME".into(), "/nonexistent".into())], Path::new("/"));
        let r = cargo(&empty, &[]);
        assert!(
            r.hosts.is_empty() && r.note.contains("--learn"),
            "{}",
            r.note
        );
    }

    #[test]
    fn an_unknown_name_is_refused() {
        let env = Env::new(vec![], Path::new("/"));
        assert!(probe(&["maven2".into()], &env, &[]).is_err());
    }
}
