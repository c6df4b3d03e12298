//! Host facts for toolchains (`crate::toolchain`'s data): which managers exist in the home or
//! where their variables say, what of each to show read-only, the credential files in there to
//! mask, the variables and PATH entries their launchers need, and agentbox's own package
//! caches for the tools found. Reads, never writes (the caches are made by the launcher,
//! through `hostfs`).
//!
//! A toolchain that lies in a writable root, or in agentbox's data directory (written by
//! earlier runs), is attacker-controlled: it is never shown as a toolchain (THE RULE).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::{SYSTEM_PATHS, User};
use crate::broad::too_broad_to_show;
use crate::inside::CACHE_INSIDE;
use crate::secrets::Kind;
use crate::toolchain::{CACHES, TOOLCHAINS, Toolchain};

/// How many entries of a followed bin directory are shown (with a note beyond that).
const MAX_FOLLOWED: usize = 512;

/// What the toolchains in the home add to the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tools {
    /// Shown read-only: (where it really is, where it appears, why).
    pub shown: Vec<(PathBuf, PathBuf, String)>,
    /// Files under what is shown that stay unreadable (credentials), with why.
    pub masked: Vec<(PathBuf, Kind, String)>,
    /// Variables set inside: (name, value, why).
    pub env: Vec<(OsString, OsString, &'static str)>,
    /// Directories appended to PATH inside (the host's PATH lacks them).
    pub path: Vec<PathBuf>,
    /// agentbox's own caches for the tools found.
    pub caches: Vec<CacheUse>,
    /// What was left out, and why.
    pub notes: Vec<String>,
}

/// One of agentbox's caches in use in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheUse {
    pub name: String,
    /// `DATA/agentbox/cache/NAME` on the host.
    pub host: PathBuf,
    /// Where it appears inside.
    pub inside: PathBuf,
    /// The tool's variables and the directories (inside) they point at.
    pub vars: Vec<(OsString, PathBuf)>,
    /// Its directories appended to PATH inside (where the tool installs programs).
    pub path: Vec<PathBuf>,
    pub about: String,
}

/// `DATA/agentbox/cache`: every cache agentbox keeps, one directory per tool.
pub fn cache_base(user: &User) -> PathBuf {
    user.env.data_home(&user.home).join("agentbox/cache")
}

impl Tools {
    /// The toolchains found for `user`; `untrusted`: the writable roots and the places earlier
    /// runs wrote (a toolchain there is not trusted).
    pub fn probe(user: &User, untrusted: &[PathBuf]) -> Tools {
        let mut t = Tools::default();
        let host_path = user.env.path_dirs();
        for tc in TOOLCHAINS {
            let Some((root, named)) = root_of(tc, user) else {
                continue;
            };
            t.add(tc, user, untrusted, &host_path, &root, &named);
        }
        // A mask where nothing is shown would only make an empty mount point.
        let shown: Vec<PathBuf> = t.shown.iter().map(|s| s.1.clone()).collect();
        t.masked
            .retain(|(m, _, _)| shown.iter().any(|s| m.starts_with(s)));
        t.caches = caches(user, &t.path);
        t
    }

    fn add(
        &mut self,
        tc: &Toolchain,
        user: &User,
        untrusted: &[PathBuf],
        host_path: &[PathBuf],
        root: &Path,
        named: &str,
    ) {
        let home = &user.home;
        let Ok(real) = fs::canonicalize(root) else {
            return;
        };
        if !real.is_dir() {
            return;
        }
        if let Some(why) = distrusted(&real, home, untrusted) {
            self.notes.push(format!(
                "toolchain {} ({}) not shown: {why}",
                tc.name,
                printable(&real)
            ));
            return;
        }
        // Named with `..`: shown where it really is (a mount point is never spelled so).
        let canonical_root;
        let root = match root.components().any(|c| c == Component::ParentDir) {
            true => {
                canonical_root = real.clone();
                canonical_root.as_path()
            }
            false => root,
        };
        // Already visible with the system (/usr, /opt), where it is named: only its variables
        // and PATH. (`~/.pyenv` a link to `/opt/pyenv` is shown at `~/.pyenv`.)
        let visible = in_system(&real) && in_system(root);
        let why = format!("toolchain {} ({named}), read-only", tc.name);
        // A general bin: it may hold anything, so it is scanned like a project first.
        if !visible
            && tc.follow
            && !self.mask_secrets(&real, root, &format!("{} in {named}", tc.name))
        {
            return;
        }
        if !visible {
            for rel in tc.show {
                for p in expand(root, rel) {
                    self.show(&p, home, untrusted, &why);
                }
            }
            for rel in tc.checked {
                let p = root.join(rel);
                if !p.is_file() {
                    continue;
                }
                match names_a_credential(&p) {
                    false => {
                        self.show(&p, home, untrusted, &why);
                    }
                    true => self.notes.push(format!(
                        "{} not shown: it may hold a credential (a token or password)",
                        printable(&p)
                    )),
                }
            }
            for rel in tc.hide {
                for p in expand(root, rel) {
                    let Ok(meta) = fs::symlink_metadata(&p) else {
                        continue;
                    };
                    let why = format!("{}: a credential, never shown", tc.name);
                    self.masked.push((p, Kind::of(meta.file_type()), why));
                }
            }
            if tc.follow {
                self.follow(root, home, untrusted, &why);
            }
        }
        for rel in tc.home_files {
            let p = home.join(rel);
            if p.is_file() {
                self.show(&p, home, untrusted, &why);
            }
        }
        for rel in tc.path {
            for p in expand(root, rel) {
                if p.is_dir() && !host_path.contains(&p) && !self.path.contains(&p) {
                    self.path.push(p);
                }
            }
        }
        if tc.set_var
            && let Some(var) = tc.var
        {
            self.env.push((
                var.into(),
                root.as_os_str().to_owned(),
                "a toolchain's root, where its launchers look for it",
            ));
        }
        for var in tc.pass {
            if let Some(v) = user.var(OsStr::new(var)) {
                self.env.push((
                    (*var).into(),
                    v.to_owned(),
                    "the host's choice of toolchain",
                ));
            }
        }
    }

    /// Scans `real` (canonical), to be shown at `at`, as a project is scanned, and masks the
    /// secrets found; `false` (with a note) when it cannot be scanned, and then it is not shown.
    fn mask_secrets(&mut self, real: &Path, at: &Path, what: &str) -> bool {
        match crate::secrets::Matcher::new(true, &[], &[])
            .and_then(|m| crate::secrets::scan(real, &m))
        {
            Ok(report) => {
                self.masked.extend(report.secrets.into_iter().map(|f| {
                    let rel = f.path.strip_prefix(real).unwrap_or(&f.path).to_owned();
                    (at.join(rel), f.kind, format!("{what}: {}", f.why))
                }));
                true
            }
            Err(e) => {
                self.notes
                    .push(format!("{} ({what}) not shown: {e:#}", printable(at)));
                false
            }
        }
    }

    /// Shows `p` (as named) read-only from where it really is, unless that is too broad or
    /// not trusted. Whether it is visible now (shown, or visible anyway).
    fn show(&mut self, p: &Path, home: &Path, untrusted: &[PathBuf], why: &str) -> bool {
        let Ok(real) = fs::canonicalize(p) else {
            return false;
        };
        if let Some(bad) = distrusted(&real, home, untrusted) {
            self.notes
                .push(format!("{} not shown: {bad}", printable(p)));
            return false;
        }
        if (in_system(&real) && in_system(p))
            || self.shown.iter().any(|(_, dest, _)| p.starts_with(dest))
        {
            return true;
        }
        self.shown.push((real, p.to_owned(), why.to_owned()));
        true
    }

    /// The entries of a general bin, one by one: its executables and links (anything else in
    /// it, a note with a token, stays hidden), where the links lead and the interpreters the
    /// `#!` lines name, when those are in the home (a pipx venv, a native installer's versions).
    fn follow(&mut self, root: &Path, home: &Path, untrusted: &[PathBuf], why: &str) {
        let Ok(dir) = fs::read_dir(root) else {
            return;
        };
        let mut entries: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        entries.sort();
        if entries.len() > MAX_FOLLOWED {
            self.notes.push(format!(
                "{}: only its first {MAX_FOLLOWED} entries are shown",
                printable(root)
            ));
            entries.truncate(MAX_FOLLOWED);
        }
        let mut targets = Vec::new();
        for entry in entries {
            // Only commands: what runs is an executable regular file (a link to anything else
            // would show that thing, a directory or a key, under a command's name).
            let Some(real) = fs::canonicalize(&entry).ok().filter(|r| executable(r)) else {
                continue;
            };
            // One the sandbox could have written is neither shown nor followed: its `#!` line
            // would pick any file of the home to show (a key, named as its interpreter).
            if !self.show(&entry, home, untrusted, why) {
                continue;
            }
            let interp = interpreter(&real).and_then(|i| fs::canonicalize(i).ok());
            targets.extend(interp.filter(|i| executable(i)));
            targets.push(real);
        }
        for real in targets {
            if real.starts_with(home) && !real.starts_with(root) {
                let package = package_of(&real, home);
                // A package directory is the user's, not a toolchain's known layout: what it
                // holds besides the program (a .env, a key) is masked as in a project.
                if package.is_dir() && !self.mask_secrets(&package, &package, why) {
                    continue;
                }
                self.show(&package, home, untrusted, why);
            }
        }
    }
}

/// Whether `real` is an executable regular file (a command, or an interpreter for one).
fn executable(real: &Path) -> bool {
    fs::metadata(real).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The toolchain's root as the user names it (the variable, else the first default that
/// exists), and how it was named.
fn root_of(tc: &Toolchain, user: &User) -> Option<(PathBuf, String)> {
    if let Some(var) = tc.var
        && let Some(v) = user.var(OsStr::new(var)).filter(|v| !v.is_empty())
    {
        // GOPATH is a list: its first entry is where `go install` puts binaries.
        let first = std::env::split_paths(v).next()?;
        return first.is_absolute().then(|| (first, format!("${var}")));
    }
    tc.default
        .iter()
        .map(|d| (user.home.join(d), format!("~/{d}")))
        .find(|(p, _)| p.exists())
}

/// Whether `p` is in the system directories the sandbox shows anyway.
fn in_system(p: &Path) -> bool {
    SYSTEM_PATHS.iter().any(|s| p.starts_with(s))
}

/// Why a toolchain path cannot be trusted or shown, if so.
fn distrusted(real: &Path, home: &Path, untrusted: &[PathBuf]) -> Option<String> {
    if untrusted.iter().any(|u| real.starts_with(u)) {
        return Some(
            "it is where the sandbox can write (a writable root or agentbox's data), so the \
             agent could have changed it"
                .to_owned(),
        );
    }
    too_broad_to_show(real, home).map(str::to_owned)
}

/// `root/rel`, each `*` component matching every name there (sorted), existing paths only.
fn expand(root: &Path, rel: &str) -> Vec<PathBuf> {
    let mut at = vec![root.to_owned()];
    for c in rel.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for base in &at {
            if c == "*" {
                let Ok(rd) = fs::read_dir(base) else { continue };
                let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
                names.sort();
                next.extend(names);
            } else {
                next.push(base.join(c));
            }
        }
        at = next;
    }
    at.into_iter()
        .filter(|p| fs::symlink_metadata(p).is_ok())
        .collect()
}

/// What to show of a file in the home so that it runs: its package (the directory above a
/// `bin`, or its own directory), or the file alone where that would be the home's first level.
fn package_of(real: &Path, home: &Path) -> PathBuf {
    let parent = real.parent().unwrap_or(real);
    let package = match parent.file_name() {
        Some(n) if n == "bin" => parent.parent().unwrap_or(parent),
        _ => parent,
    };
    let deep = package
        .strip_prefix(home)
        .is_ok_and(|rest| rest.components().count() >= 2);
    match deep {
        true => package.to_owned(),
        false => real.to_owned(),
    }
}

/// The absolute interpreter a `#!` line names (not through `env`: a name is looked up on
/// PATH, which is shown or not on its own).
fn interpreter(file: &Path) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let n = fs::File::open(file).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let first = line
        .split(|b| b.is_ascii_whitespace())
        .find(|w| !w.is_empty())?;
    let p = PathBuf::from(OsStr::from_bytes(first));
    p.is_absolute().then_some(p)
}

/// Whether a configuration file may hold a credential: any of the words registries use for
/// one. Read whole up to 1 MiB; a larger one, or one that cannot be read, counts as holding one.
fn names_a_credential(p: &Path) -> bool {
    let mut text = Vec::new();
    let read = fs::File::open(p).and_then(|f| f.take(1 << 20).read_to_end(&mut text));
    if read.is_err() || text.len() >= 1 << 20 {
        return true;
    }
    let lower = String::from_utf8_lossy(&text).to_lowercase();
    ["token", "password", "_auth", "secret", "credential"]
        .iter()
        .any(|w| lower.contains(w))
        || lower.split("://").skip(1).any(url_with_password)
}

/// Whether the text after a `://` starts with a URL that carries a password
/// (`user:pass@host`, as in a proxy or registry URL in cargo's config).
fn url_with_password(rest: &str) -> bool {
    let authority = rest
        .split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '/' | '?' | '#'))
        .next()
        .unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'))
}

/// The caches for the tools found on the host's PATH or in a toolchain's PATH entries.
fn caches(user: &User, extra_path: &[PathBuf]) -> Vec<CacheUse> {
    let base = cache_base(user);
    let found = |cmd: &str| {
        user.env.which(cmd).is_some() || extra_path.iter().any(|d| d.join(cmd).is_file())
    };
    CACHES
        .iter()
        .filter(|c| c.commands.iter().any(|cmd| found(cmd)))
        .map(|c| {
            let inside = Path::new(CACHE_INSIDE).join(c.name);
            CacheUse {
                name: c.name.to_owned(),
                host: base.join(c.name),
                vars: c
                    .vars
                    .iter()
                    .map(|(v, rel)| {
                        let dir = match rel.is_empty() {
                            true => inside.clone(),
                            false => inside.join(rel),
                        };
                        ((*v).into(), dir)
                    })
                    .collect(),
                path: c.path.iter().map(|p| inside.join(p)).collect(),
                inside,
                about: c.about.to_owned(),
            }
        })
        .collect()
}

fn printable(p: &Path) -> String {
    crate::text::printable(p.as_os_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostenv::Env;
    use std::os::unix::fs::symlink;

    fn exe(p: &Path, body: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn user(home: &Path, vars: &[(&str, &str)]) -> User {
        let mut env: Vec<(OsString, OsString)> = vec![("HOME".into(), home.into())];
        if !vars.iter().any(|(k, _)| *k == "PATH") {
            env.push(("PATH".into(), "/usr/bin:/bin".into()));
        }
        env.extend(vars.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        User {
            home: home.to_owned(),
            env: Env::new(env, home),
            ..User::fixture("/")
        }
    }

    fn dests(t: &Tools) -> Vec<PathBuf> {
        t.shown.iter().map(|s| s.1.clone()).collect()
    }

    #[test]
    fn a_config_with_a_password_in_a_url_names_a_credential() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("config.toml");
        let with = |text: &str| {
            fs::write(&f, text).unwrap();
            names_a_credential(&f)
        };
        assert!(with(
            "[http]\nproxy = \"http://me:hunter2@proxy.example:8080\"\n"
        ));
        assert!(with(
            "[source.m]\nregistry = \"sparse+https://u:p@m.example/index/\"\n"
        ));
        assert!(!with("[http]\nproxy = \"http://proxy.example:8080\"\n"));
        assert!(!with(
            "[source.m]\nregistry = \"https://m.example/a@b:c\"\n"
        ));
        assert!(!with("[build]\njobs = 4\n"));
    }

    #[test]
    fn the_homes_toolchains_are_found_with_their_variables() {
        let d = tempfile::tempdir().unwrap();
        let home = fs::canonicalize(d.path()).unwrap();
        fs::create_dir_all(home.join(".rustup/toolchains")).unwrap();
        exe(&home.join(".cargo/bin/cargo"), "");
        fs::write(home.join(".cargo/credentials.toml"), "token = \"x\"").unwrap();
        fs::write(home.join(".cargo/config.toml"), "[net]\nretry = 2\n").unwrap();
        fs::create_dir_all(home.join(".cargo/registry/src")).unwrap();
        fs::create_dir_all(home.join(".pyenv/shims")).unwrap();
        fs::create_dir_all(home.join(".nvm/versions/node/v1/etc")).unwrap();
        fs::write(home.join(".nvm/versions/node/v1/etc/npmrc"), "_authToken=x").unwrap();
        let t = Tools::probe(&user(&home, &[]), &[]);
        let shown = dests(&t);
        for want in [
            ".rustup",
            ".cargo/bin",
            ".cargo/config.toml",
            ".pyenv",
            ".nvm/versions",
        ] {
            assert!(shown.contains(&home.join(want)), "{want}: {shown:?}");
        }
        // Never the cargo home itself: its credentials and the host's registry stay out.
        assert!(!shown.contains(&home.join(".cargo")));
        assert!(
            t.masked
                .iter()
                .any(|m| m.0 == home.join(".nvm/versions/node/v1/etc/npmrc"))
        );
        let env: Vec<(&OsStr, &OsStr)> = t
            .env
            .iter()
            .map(|(k, v, _)| (k.as_os_str(), v.as_os_str()))
            .collect();
        let rustup = home.join(".rustup");
        assert!(env.contains(&(OsStr::new("RUSTUP_HOME"), rustup.as_os_str())));
        assert!(!env.iter().any(|(k, _)| *k == "CARGO_HOME"));
        // PATH gains the directories the host's PATH lacks, after it.
        assert!(t.path.contains(&home.join(".cargo/bin")));
        assert!(t.path.contains(&home.join(".pyenv/shims")));
        // A config that names a token is left out, with a note.
        fs::write(
            home.join(".cargo/config.toml"),
            "[registry]\ntoken = \"x\"\n",
        )
        .unwrap();
        let t = Tools::probe(&user(&home, &[]), &[]);
        assert!(!dests(&t).contains(&home.join(".cargo/config.toml")));
        assert!(t.notes.iter().any(|n| n.contains("config.toml not shown")));
    }

    #[test]
    fn the_users_variables_win_and_untrusted_places_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(d.path()).unwrap();
        let home = base.join("home");
        let elsewhere = base.join("opt-pyenv");
        fs::create_dir_all(home.join(".pyenv")).unwrap();
        fs::create_dir_all(elsewhere.join("shims")).unwrap();
        let u = user(&home, &[("PYENV_ROOT", elsewhere.to_str().unwrap())]);
        let t = Tools::probe(&u, &[]);
        assert_eq!(dests(&t), std::slice::from_ref(&elsewhere));
        // The same root in a writable root (or agentbox's data) is not shown.
        let t = Tools::probe(&u, std::slice::from_ref(&base));
        assert!(t.shown.is_empty() && t.env.is_empty() && t.path.is_empty());
        assert!(t.notes[0].contains("not shown"), "{:?}", t.notes);
        // A root in the home that leads into the system directories is shown where it is named.
        let linked = base.join("home2");
        fs::create_dir_all(&linked).unwrap();
        symlink("/usr/lib", linked.join(".pyenv")).unwrap();
        let t = Tools::probe(&user(&linked, &[]), &[]);
        assert_eq!(t.shown[0].0, PathBuf::from("/usr/lib"));
        assert_eq!(t.shown[0].1, linked.join(".pyenv"));
        // Nor one that is the home itself.
        let u = user(&home, &[("PYENV_ROOT", home.to_str().unwrap())]);
        let t = Tools::probe(&u, &[]);
        assert!(t.shown.is_empty(), "{:?}", t.shown);
    }

    #[test]
    fn a_general_bin_is_shown_entry_by_entry_with_what_it_runs() {
        let d = tempfile::tempdir().unwrap();
        let home = fs::canonicalize(d.path()).unwrap();
        let bin = home.join(".local/bin");
        exe(&bin.join("tool"), "#!/bin/sh\n");
        fs::write(bin.join("notes.txt"), "TOKEN=abc").unwrap();
        exe(&bin.join(".env"), "S=1");
        // A pipx-style venv: the script runs the venv's python, both in the home.
        let venv = home.join(".local/share/pipx/venvs/black");
        exe(&venv.join("bin/python"), "");
        exe(
            &venv.join("bin/black"),
            &format!("#!{}\n", venv.join("bin/python").display()),
        );
        symlink(venv.join("bin/black"), bin.join("black")).unwrap();
        let t = Tools::probe(&user(&home, &[]), &[]);
        let shown = dests(&t);
        assert!(shown.contains(&bin.join("tool")) && shown.contains(&bin.join("black")));
        assert!(shown.contains(&venv), "{shown:?}");
        assert!(!shown.contains(&bin) && !shown.contains(&bin.join("notes.txt")));
        // An executable under a secret's name is masked over its bind.
        assert!(t.masked.iter().any(|m| m.0 == bin.join(".env")), "{t:?}");
        // The link is shown from where it leads.
        let black = t.shown.iter().find(|s| s.1 == bin.join("black")).unwrap();
        assert_eq!(black.0, venv.join("bin/black"));
    }

    #[test]
    fn caches_follow_the_tools_found() {
        let d = tempfile::tempdir().unwrap();
        let home = fs::canonicalize(d.path()).unwrap();
        exe(&home.join("bin/go"), "");
        let u = user(&home, &[("PATH", home.join("bin").to_str().unwrap())]);
        let c = caches(&u, &[]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].host, home.join(".local/share/agentbox/cache/go"));
        let vars: Vec<_> = c[0]
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            vars,
            [
                (
                    "GOMODCACHE".into(),
                    PathBuf::from("/var/cache/agentbox/go/mod")
                ),
                (
                    "GOCACHE".into(),
                    PathBuf::from("/var/cache/agentbox/go/build")
                ),
                ("GOBIN".into(), PathBuf::from("/var/cache/agentbox/go/bin")),
            ]
        );
        assert_eq!(c[0].path, [PathBuf::from("/var/cache/agentbox/go/bin")]);
    }
}
