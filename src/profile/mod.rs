//! Agent profiles: what each agent needs inside the sandbox (its state, kept in a home of its
//! own; its runtime; the variables that carry its keys; the hosts it talks to, with telemetry
//! and update hosts apart), chosen by the command's name. Built-in ones are data
//! (`builtin.rs`); config files adjust them (`config.rs`). Pure: no I/O.

mod builtin;

use std::ffi::OsStr;
use std::path::Path;

use serde::Serialize;

pub use crate::net::broker::{Credential, CredentialSpec};
use crate::rules::RunsLater;

/// A built-in profile, as data.
pub struct Builtin {
    pub name: &'static str,
    pub about: &'static str,
    /// Command names (basenames) that select it.
    pub commands: &'static [&'static str],
    /// Home-relative paths the agent writes (a trailing `/` marks a directory). They live in
    /// agentbox's home for this agent, which persists between runs.
    pub state: &'static [&'static str],
    /// Home-relative paths from the real home the agent reads (read-only).
    pub runtime: &'static [&'static str],
    /// Variables passed through when set on the host (its keys and endpoints).
    pub env: &'static [&'static str],
    /// Variables set while telemetry is off (the default).
    pub quiet: &'static [(&'static str, &'static str)],
    /// Variables always set (self-update off: the agent's own binary is read-only inside).
    pub always: &'static [(&'static str, &'static str)],
    /// Hosts it needs to work (its API, login).
    pub domains: &'static [&'static str],
    /// Telemetry, error reporting and update hosts: allowed only with --allow-telemetry.
    pub telemetry: &'static [&'static str],
    /// Whether it runs its own sandbox (nested user namespaces).
    pub nested: bool,
    pub notes: &'static [&'static str],
    /// Project files this agent obeys or runs when started in a project: its settings, hooks,
    /// MCP servers, commands, and the instruction files it reads. Every profile's list applies
    /// in every run (the host may start any agent in this project later), like `RUNS_LATER`.
    pub project: &'static [RunsLater],
    /// The keys the credential broker holds for it (`net::broker`), when set on the host.
    pub credentials: &'static [CredentialSpec],
}

/// A profile with the user's config applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub name: String,
    pub about: String,
    pub commands: Vec<String>,
    pub state: Vec<String>,
    pub runtime: Vec<String>,
    pub env: Vec<String>,
    pub quiet: Vec<(String, String)>,
    pub always: Vec<(String, String)>,
    pub domains: Vec<String>,
    pub telemetry: Vec<String>,
    pub nested: bool,
    pub notes: Vec<String>,
    /// For a profile of the user's own: the built-in profile it is based on.
    pub base: Option<String>,
    pub credentials: Vec<Credential>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

impl From<&Builtin> for Profile {
    fn from(b: &Builtin) -> Profile {
        Profile {
            name: b.name.to_owned(),
            about: b.about.to_owned(),
            commands: strings(b.commands),
            state: strings(b.state),
            runtime: strings(b.runtime),
            env: strings(b.env),
            quiet: pairs(b.quiet),
            always: pairs(b.always),
            domains: strings(b.domains),
            telemetry: strings(b.telemetry),
            nested: b.nested,
            notes: strings(b.notes),
            base: None,
            credentials: b.credentials.iter().map(Credential::from).collect(),
        }
    }
}

impl Profile {
    /// An agent profile (anything but `generic`) has state and a network it needs.
    pub fn is_agent(&self) -> bool {
        let base = self.base.as_deref().unwrap_or(&self.name);
        !base.is_empty() && base != "generic"
    }

    /// The built-in profile this one is, or is based on.
    pub fn builtin_name(&self) -> &str {
        self.base.as_deref().unwrap_or(&self.name)
    }
}

/// The project files of every built-in profile (see `Builtin::project`).
pub fn project_files() -> impl Iterator<Item = &'static RunsLater> {
    builtin::PROFILES.iter().flat_map(|b| b.project.iter())
}

/// The project files of one built-in profile (empty for an unknown name).
pub fn project_files_of(name: &str) -> &'static [RunsLater] {
    builtin::PROFILES
        .iter()
        .find(|b| b.name == name)
        .map_or(&[], |b| b.project)
}

/// Every built-in profile name, in display order.
pub fn names() -> Vec<&'static str> {
    builtin::PROFILES.iter().map(|b| b.name).collect()
}

pub fn builtin(name: &str) -> Option<Profile> {
    builtin::PROFILES
        .iter()
        .find(|b| b.name == name)
        .map(Profile::from)
}

/// The profile to use: `--no-profile` (generic), `--profile NAME`, else by the command.
/// (With the user's own profiles: `config::profiles::choose`.)
pub fn choose(
    explicit: Option<&str>,
    none: bool,
    command: &OsStr,
) -> Result<Profile, crate::error::Fail> {
    match (none, explicit) {
        // No profile at all: not even command exposure.
        (true, _) => Ok(Profile::default()),
        (false, Some(name)) => builtin(name).ok_or_else(|| {
            crate::error::Fail::hint(
                format!("no profile named {name:?}"),
                format!("one of: {}", names().join(", ")),
            )
        }),
        (false, None) => Ok(for_command(command)),
    }
}

/// The profile a command selects by its basename, else `generic`.
pub fn for_command(command: &OsStr) -> Profile {
    let base = Path::new(command)
        .file_name()
        .and_then(|b| b.to_str())
        .unwrap_or("");
    builtin::PROFILES
        .iter()
        .find(|b| b.commands.contains(&base))
        .or_else(|| builtin::PROFILES.iter().find(|b| b.name == "generic"))
        .map(Profile::from)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::rules::Pattern;

    #[test]
    fn commands_select_profiles() {
        assert_eq!(for_command(OsStr::new("claude")).name, "claude");
        assert_eq!(
            for_command(OsStr::new("/usr/local/bin/codex")).name,
            "codex"
        );
        assert_eq!(for_command(OsStr::new("agent")).name, "cursor-agent");
        assert_eq!(for_command(OsStr::new("make")).name, "generic");
        assert!(builtin("gemini").is_some() && builtin("nope").is_none());
        assert_eq!(names().len(), 9);
    }

    #[test]
    fn built_in_data_is_well_formed() {
        for name in names() {
            let p = builtin(name).unwrap();
            for d in p.domains.iter().chain(&p.telemetry) {
                Pattern::parse(d).unwrap_or_else(|e| panic!("{name}: {d}: {e}"));
            }
            for path in p.state.iter().chain(&p.runtime) {
                assert!(
                    !path.starts_with('/') && !path.contains(".."),
                    "{name}: {path}"
                );
            }
            for var in &p.env {
                assert!(
                    var.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                    "{var}"
                );
            }
            // Project files are one or two plain components, as the scan matches them.
            let b = builtin::PROFILES.iter().find(|b| b.name == name).unwrap();
            for r in b.project {
                let parts: Vec<&str> = r.path.split('/').collect();
                assert!(
                    (1..=2).contains(&parts.len())
                        && parts
                            .iter()
                            .all(|c| !c.is_empty() && *c != ".." && *c != "."),
                    "{name}: {}",
                    r.path
                );
            }
            // Telemetry hosts never sit in the list of hosts an agent needs.
            assert!(p.telemetry.iter().all(|t| !p.domains.contains(t)), "{name}");
        }
        assert!(builtin("codex").unwrap().nested);
        // Every agent lists the project files it obeys.
        for b in builtin::PROFILES.iter().filter(|b| b.name != "generic") {
            assert!(!b.project.is_empty(), "{}", b.name);
        }
        assert!(!builtin("claude").unwrap().nested);
    }

    /// Whether a variable's name says it holds a secret.
    fn looks_like_key(var: &str) -> bool {
        ["KEY", "TOKEN", "AUTH", "SECRET", "PASSWORD", "CREDENTIAL"]
            .iter()
            .any(|w| var.contains(w))
    }

    #[test]
    fn the_key_test_recognises_keys() {
        // The test below is only as good as this: each profile's key variables, as they were
        // passed raw before the broker, are keys; its other variables are not.
        for v in [
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "CURSOR_API_KEY",
            "GH_TOKEN",
            "COPILOT_GITHUB_TOKEN",
            "AMP_API_KEY",
        ] {
            assert!(looks_like_key(v), "{v}");
        }
        for v in [
            "ANTHROPIC_MODEL",
            "OPENAI_API_BASE",
            "CODEX_HOME",
            "OPENCODE_CONFIG",
        ] {
            assert!(!looks_like_key(v), "{v}");
        }
    }

    #[test]
    fn every_key_a_profile_passes_is_brokered() {
        let mut keys = 0;
        for b in builtin::PROFILES {
            let brokered: Vec<&str> = b.credentials.iter().map(|c| c.var).collect();
            for var in b.env.iter().filter(|v| looks_like_key(v)) {
                keys += 1;
                assert!(
                    brokered.contains(var),
                    "{}: {var} passes raw: broker it, or drop it from `env` (--env passes it) \
                     and say so in the notes",
                    b.name
                );
            }
            // An agent whose keys are not brokered says so, and how to pass one (--env).
            if b.credentials.is_empty() && b.name != "generic" {
                assert!(
                    b.notes
                        .iter()
                        .any(|n| n.contains("not brokered") && n.contains("--env")),
                    "{}",
                    b.name
                );
            }
            for c in b.credentials {
                // As strict as a user's `[[credential]]`: the checks a config file gets.
                let toml = format!(
                    "var = {:?}\nheader = {:?}\nbearer = {}\nbase_url_var = {:?}\nupstream = {:?}",
                    c.var, c.header, c.bearer, c.base_url_var, c.upstream
                );
                let parsed: Credential =
                    toml::from_str(&toml).unwrap_or_else(|e| panic!("{}: {}: {e}", b.name, c.var));
                assert_eq!(parsed, Credential::from(c), "{}", b.name);
                assert!(c.upstream.starts_with("https://"), "{}: {}", b.name, c.var);
                assert!(!looks_like_key(c.base_url_var), "{}", c.base_url_var);
                // Keys sharing a base-URL variable share a route, whose upstream is the
                // first's: they must agree.
                for d in b
                    .credentials
                    .iter()
                    .filter(|d| d.base_url_var == c.base_url_var)
                {
                    assert_eq!(c.upstream, d.upstream, "{}: {}", b.name, c.base_url_var);
                }
            }
        }
        // Keys were seen: the test looked at something.
        assert!(keys >= 10, "{keys}");
    }
}
