//! Toolchains in the home, as data (`builtin.rs`), like agent profiles: for each language
//! manager, where it lives, what of it to show read-only, which files in it never to show
//! (credentials), what to add to PATH and which variables its launchers need; and the package
//! caches agentbox keeps for each tool instead of the host's own. Pure: no I/O (the host
//! probe, `host::toolchain`, reads this and looks).

mod builtin;

pub use builtin::{CACHES, TOOLCHAINS};

/// A toolchain manager found in the home (or where its variable says).
pub struct Toolchain {
    pub name: &'static str,
    /// The variable naming its root on the host; when set, it wins over `default`.
    pub var: Option<&'static str>,
    /// Where its root is when the variable is unset, relative to the home (first found wins).
    pub default: &'static [&'static str],
    /// What of the root to show, read-only (`""`: all of it). A component may be `*`.
    pub show: &'static [&'static str],
    /// Files in the root shown only when they name no credential (configuration that may
    /// hold a token: cargo's `config.toml`).
    pub checked: &'static [&'static str],
    /// Files under what is shown that are never shown (credentials, registry configs with
    /// tokens), masked when they exist. A component may be `*`.
    pub hide: &'static [&'static str],
    /// Directories of the root added at the end of PATH when the host's PATH lacks them
    /// (`""`: the root itself). A component may be `*`.
    pub path: &'static [&'static str],
    /// Whether `var` is set inside to the root (the launcher finds its root by it).
    pub set_var: bool,
    /// Home-relative files shown read-only when they exist (a global version file).
    pub home_files: &'static [&'static str],
    /// Host variables passed in when set (they name a toolchain, never a secret).
    pub pass: &'static [&'static str],
    /// A general bin (`~/.local/bin`): its executables and links are shown one by one, and
    /// their targets and the interpreters their `#!` lines name when those live in the home
    /// (links into pipx venvs and the like).
    pub follow: bool,
}

/// A package cache of agentbox's own for one tool, shared by every run and profile, in
/// agentbox's data directory (`DATA/agentbox/cache/NAME`), never the host's.
pub struct Cache {
    pub name: &'static str,
    /// The commands that use it: the cache is set up when one of them is found.
    pub commands: &'static [&'static str],
    /// The tool's own variables, each pointed at a directory of the cache (`""`: the cache).
    pub vars: &'static [(&'static str, &'static str)],
    /// Directories of the cache added at the end of PATH: where the tool installs programs
    /// (`cargo install`, `go install`), so what the agent installs runs in later runs too.
    pub path: &'static [&'static str],
    pub about: &'static str,
}

/// Whether `rel` (one of the relative paths above) is plain: no absolute path, no `..`.
pub fn plain(rel: &str) -> bool {
    !rel.starts_with('/') && rel.split('/').all(|c| c != ".." && c != ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_data_is_well_formed() {
        for t in TOOLCHAINS {
            let all = t
                .default
                .iter()
                .chain(t.show)
                .chain(t.checked)
                .chain(t.hide)
                .chain(t.path)
                .chain(t.home_files);
            for rel in all {
                assert!(plain(rel), "{}: {rel}", t.name);
            }
            assert!(t.var.is_some() || !t.default.is_empty(), "{}", t.name);
            assert!(!t.set_var || t.var.is_some(), "{}", t.name);
            assert!(!t.show.is_empty() || t.follow, "{}", t.name);
        }
        let mut names: Vec<&str> = CACHES.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CACHES.len());
        for c in CACHES {
            assert!(!c.commands.is_empty() && !c.vars.is_empty(), "{}", c.name);
            assert!(
                c.name.chars().all(|ch| ch.is_ascii_lowercase()),
                "{}",
                c.name
            );
            for (var, rel) in c.vars {
                assert!(plain(rel) && !var.is_empty(), "{}", c.name);
            }
            assert!(
                c.path.iter().all(|p| plain(p) && !p.is_empty()),
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn credentials_are_never_in_what_is_shown_by_name() {
        // cargo shows its bin directory and (checked) config, never its credentials file.
        let cargo = TOOLCHAINS.iter().find(|t| t.name == "cargo").unwrap();
        assert!(!cargo.show.contains(&""));
        assert!(cargo.show.iter().all(|s| !s.contains("credentials")));
    }
}
