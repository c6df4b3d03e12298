//! `agentbox allow HOST...`: adds hosts to `allow_domains` (or `allow_private_hosts`) in the
//! user's config file (`[defaults]` or `[profile.NAME]`) or the project's `.agentbox.toml`,
//! keeping the file's comments and layout (toml_edit), and prints what changed. Idempotent: a
//! host a pattern of the list already names is not added again. Every host is checked with
//! the parser `--allow-domain` uses, before anything is written.
//!
//! The project's file is in the project, a writable root of every run: it is read without
//! following a symlink and written through `hostfs`, and it needs `agentbox trust` again
//! before it may loosen anything (this command never trusts it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use toml_edit::{Array, DocumentMut, Item, Table, Value};

use crate::config;
use crate::error::Fail;
use crate::hostenv::Env;
use crate::hostfs::{self, Untrusted};
use crate::net::rules::{IP_NOT_LISTED, NOT_LISTED, Pattern};
use crate::text::printable;

/// A config file or a `--net-log` larger than this is refused (a record of a long session is
/// far smaller; anything bigger is not what the user meant).
const MAX_FILE: u64 = 16 << 20;

/// Where the hosts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// `[defaults]` of the user's file.
    Defaults,
    /// `[profile.NAME]` of the user's file.
    Profile(String),
    /// The top level of the project's `.agentbox.toml`.
    Project,
}

/// Which key of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    AllowDomains,
    AllowPrivateHosts,
}

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::AllowDomains => "allow_domains",
            Key::AllowPrivateHosts => "allow_private_hosts",
        }
    }
}

/// The hosts `--from-learn FILE` takes from a `--net-log` record: those refused for want of a
/// pattern, as patterns (host, or host:port off 80/443). Lines that are not a decision are
/// skipped; the record is the sandbox's doing, so each host is checked again by the caller.
pub fn from_log(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["allowed"] == false)
        .filter(|e| e["reason"] == NOT_LISTED || e["reason"] == IP_NOT_LISTED)
        .filter_map(|e| {
            let host = e["host"].as_str()?;
            let port = u16::try_from(e["port"].as_u64()?).ok()?;
            Some(crate::net::hint::pattern_of(host, port))
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Adds `hosts` to `key` of `place` in the document `text`. Returns the new text and the
/// hosts it added (none: the text is returned unchanged).
pub fn edit(
    text: &str,
    place: &Place,
    key: Key,
    hosts: &[Pattern],
) -> Result<(String, Vec<String>)> {
    let mut doc: DocumentMut = text.parse().context("parsing the file as TOML")?;
    let table = table_of(&mut doc, place)?;
    let list = match table.get_mut(key.name()) {
        Some(item) => item
            .as_array_mut()
            .with_context(|| format!("{} is not a list", key.name()))?,
        None => {
            table.insert(key.name(), Item::Value(Value::Array(Array::new())));
            table
                .get_mut(key.name())
                .and_then(Item::as_array_mut)
                .context("the new list")?
        }
    };
    let present: Vec<Pattern> = list
        .iter()
        .filter_map(|v| v.as_str())
        .filter_map(|s| Pattern::parse(s).ok())
        .collect();
    let mut added = Vec::new();
    for h in hosts {
        let known = present.iter().any(|p| p.host == h.host && p.port == h.port);
        if !known && !added.contains(&h.text) {
            list.push(h.text.as_str());
            added.push(h.text.clone());
        }
    }
    if added.is_empty() {
        return Ok((text.to_owned(), added));
    }
    Ok((doc.to_string(), added))
}

/// The table `place` names, made (as a `[header]` table) where missing.
fn table_of<'a>(doc: &'a mut DocumentMut, place: &Place) -> Result<&'a mut Table> {
    let root = doc.as_table_mut();
    let (outer, inner) = match place {
        Place::Project => return Ok(root),
        Place::Defaults => ("defaults", None),
        Place::Profile(name) => ("profile", Some(name.as_str())),
    };
    let mut t = sub(root, outer, inner.is_some())?;
    if let Some(name) = inner {
        t = sub(t, name, false)?;
    }
    Ok(t)
}

fn sub<'a>(t: &'a mut Table, key: &str, implicit: bool) -> Result<&'a mut Table> {
    if !t.contains_key(key) {
        let mut new = Table::new();
        new.set_implicit(implicit);
        t.insert(key, Item::Table(new));
    }
    match t.get_mut(key) {
        Some(Item::Table(t)) => Ok(t),
        _ => bail!(Fail::hint(
            format!("[{key}] is not a table in the file"),
            "write it as a [table] section"
        )),
    }
}

/// Reads `path` without following a symlink at it: a regular file of at most `MAX_FILE`
/// bytes, as UTF-8, or `None` where there is none.
pub fn read_plain(path: &Path) -> Result<Option<String>> {
    match hostfs::read_regular(path, false, MAX_FILE)? {
        Some(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            Fail::hint(format!("{}: not UTF-8", path.display()), "save it as UTF-8").into()
        }),
        None => Ok(None),
    }
}

/// The lines of `new` that differ from `old`: what is between their common start and end.
fn changed_lines(old: &str, new: &str) -> Vec<String> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let mut out: Vec<String> = a[head..a.len() - tail]
        .iter()
        .map(|l| format!("- {l}"))
        .collect();
    out.extend(b[head..b.len() - tail].iter().map(|l| format!("+ {l}")));
    out
}

/// What the command line asked for.
pub struct Request {
    pub hosts: Vec<String>,
    pub from_learn: Option<PathBuf>,
    pub profile: Option<String>,
    /// The project directory, for `--project`.
    pub project: Option<PathBuf>,
    pub key: Key,
}

pub fn run(req: Request, env: &Env) -> Result<ExitCode> {
    let mut texts = req.hosts.clone();
    if let Some(log) = &req.from_learn {
        let path = env.cwd()?.join(log);
        let text = read_plain(&path)?.ok_or_else(|| {
            Fail::hint(
                format!("{}: no such file", path.display()),
                "record one with `agentbox run --learn --net-log FILE -- COMMAND`",
            )
        })?;
        let found = from_log(&text);
        if found.is_empty() {
            eprintln!(
                "agentbox: {}: no host was refused for want of an allow pattern",
                printable(path.as_os_str())
            );
        }
        texts.extend(found);
    }
    let hosts: Vec<Pattern> = texts
        .iter()
        .map(|h| Pattern::parse(h))
        .collect::<Result<_>>()?;
    if req.key == Key::AllowPrivateHosts {
        // The same check a run makes, before the file holds what every run would refuse.
        crate::net::rules::NetPolicy::default().with_private(&texts)?;
    }
    let config_dir = config::dir(env)?;
    let (file, place, areas) = match (&req.project, &req.profile) {
        (Some(dir), _) => {
            let dir = std::fs::canonicalize(dir)
                .with_context(|| format!("the project {}", dir.display()))?;
            let areas = Untrusted::new([dir.clone(), config_dir.clone()]);
            (dir.join(config::PROJECT_FILE), Place::Project, areas)
        }
        (None, Some(p)) => (
            config_dir.join("config.toml"),
            Place::Profile(p.clone()),
            Untrusted::new([config_dir.clone()]),
        ),
        (None, None) => (
            config_dir.join("config.toml"),
            Place::Defaults,
            Untrusted::new([config_dir.clone()]),
        ),
    };
    let old = read_plain(&file)?.unwrap_or_default();
    let (new, added) = edit(&old, &place, req.key, &hosts)
        .map_err(|e| Fail::hint(format!("{}: {e:#}", file.display()), "fix the file by hand"))?;
    let shown = printable(file.as_os_str());
    if added.is_empty() {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{shown}: already allows {}", texts.join(" "))?;
        return Ok(ExitCode::SUCCESS);
    }
    // The result must still be a config agentbox reads: checked before it replaces the file.
    match place {
        Place::Project => {
            config::check_settings(&file, &new)?;
        }
        _ => {
            config::check_user(&file, &new)?;
        }
    }
    if place != Place::Project {
        hostfs::create_dir_all(&config_dir, 0o700, &areas)?;
    }
    hostfs::write_file(&file, new.as_bytes(), &areas)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{shown}:")?;
    for l in changed_lines(&old, &new) {
        writeln!(out, "  {}", crate::text::printable_str(&l))?;
    }
    if place == Place::Project {
        eprintln!(
            "agentbox: the project file changed: it loosens nothing until you review it and run \
             `agentbox trust`"
        );
    } else {
        eprintln!("agentbox: running filtered sessions pick this up at their next request");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(v: &[&str]) -> Vec<Pattern> {
        v.iter().map(|s| Pattern::parse(s).unwrap()).collect()
    }

    #[test]
    fn adds_once_and_keeps_comments() {
        let old = "# my config\n[defaults]\n# the hosts\nallow_domains = [\"a.example\"] # keep\nnet = \"filtered\"\n";
        let (new, added) = edit(
            old,
            &Place::Defaults,
            Key::AllowDomains,
            &pats(&["b.example", "A.example", "b.example"]),
        )
        .unwrap();
        assert_eq!(added, ["b.example"]);
        assert!(
            new.starts_with("# my config\n[defaults]\n# the hosts\n"),
            "{new}"
        );
        assert!(new.contains("# keep"), "{new}");
        assert!(new.contains("\"a.example\", \"b.example\""), "{new}");
        let (again, added) = edit(
            &new,
            &Place::Defaults,
            Key::AllowDomains,
            &pats(&["b.example"]),
        )
        .unwrap();
        assert!(added.is_empty());
        assert_eq!(again, new);
        assert_eq!(
            changed_lines(old, &new),
            [
                "- allow_domains = [\"a.example\"] # keep",
                "+ allow_domains = [\"a.example\", \"b.example\"] # keep"
            ]
        );
    }

    #[test]
    fn makes_the_table_it_needs() {
        let (new, _) = edit(
            "",
            &Place::Profile("claude".into()),
            Key::AllowDomains,
            &pats(&["x.example:8443"]),
        )
        .unwrap();
        let u: config::UserConfig = toml::from_str(&new).unwrap();
        assert_eq!(u.profile["claude"].allow_domains, ["x.example:8443"]);
        let (new, _) = edit(
            "net = \"none\"\n",
            &Place::Project,
            Key::AllowDomains,
            &pats(&["y.example"]),
        )
        .unwrap();
        let s: config::Settings = toml::from_str(&new).unwrap();
        assert_eq!(s.allow_domains, ["y.example"]);
        // Another port is another pattern.
        let (_, added) = edit(
            &new,
            &Place::Project,
            Key::AllowDomains,
            &pats(&["y.example:8080"]),
        )
        .unwrap();
        assert_eq!(added, ["y.example:8080"]);
        assert!(
            edit(
                "[defaults]\nallow_domains = 3\n",
                &Place::Defaults,
                Key::AllowDomains,
                &pats(&["a.b"])
            )
            .is_err()
        );
        assert!(
            edit(
                "defaults = 3\n",
                &Place::Defaults,
                Key::AllowDomains,
                &pats(&["a.b"])
            )
            .is_err()
        );
    }

    #[test]
    fn learn_record_gives_the_refused_hosts() {
        let log = [
            r#"{"host":"b.example","port":443,"allowed":false,"reason":"not in the allowlist"}"#,
            r#"{"host":"c.example","port":8080,"allowed":false,"reason":"not in the allowlist"}"#,
            r#"{"host":"ok.example","port":443,"allowed":true,"reason":"allowed by --allow-domain ok.example"}"#,
            r#"{"host":"evil.example","port":443,"allowed":false,"reason":"denied by --deny-domain evil.example"}"#,
            r#"{"host":"b.example","port":443,"allowed":false,"reason":"not in the allowlist"}"#,
            "junk",
        ]
        .join("\n");
        assert_eq!(from_log(&log), ["b.example", "c.example:8080"]);
    }
}
