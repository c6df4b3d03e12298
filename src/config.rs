//! Config files: the user's (`$XDG_CONFIG_HOME/agentbox/config.toml`: defaults, and settings
//! per profile) and the project's (`.agentbox.toml` at the project root). A project file may
//! only tighten the sandbox until the user trusts it with `agentbox trust`, which records its
//! hash; any change makes it untrusted again. Errors name the file, line and column; unknown
//! keys are errors. `read` reads the files (the only I/O of resolving); `resolve`, where the
//! flags, the files and the profile meet, is pure.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::cli::{NetArg, SandboxArgs};
use crate::error::Fail;
use crate::hostenv::Env;

/// The settings a config file may hold (all optional; lists add to what is there).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub net: Option<String>,
    #[serde(default)]
    pub allow_domains: Vec<String>,
    #[serde(default)]
    pub deny_domains: Vec<String>,
    pub allow_telemetry: Option<bool>,
    #[serde(default)]
    pub hide: Vec<String>,
    #[serde(default)]
    pub unhide: Vec<String>,
    #[serde(default)]
    pub ro: Vec<String>,
    #[serde(default)]
    pub rw: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    pub memory: Option<String>,
    pub pids: Option<u64>,
    pub allow_debug: Option<bool>,
    pub allow_nested: Option<bool>,
    pub ssh_agent: Option<bool>,
    pub docker: Option<bool>,
    /// `false`: as `--no-toolchains`.
    pub toolchains: Option<bool>,
    /// `[profile.NAME]` of the user's own only: the profile (built-in, or another of the
    /// user's) it is based on [default: "generic"]. Checked by `check::user`.
    pub extends: Option<String>,
    /// `[profile.NAME]` only: command names (basenames) that select this profile.
    #[serde(default)]
    pub commands: Vec<String>,
    /// `[profile.NAME]` of the user's own only: its line in `agentbox profiles`.
    pub about: Option<String>,
    /// Allowed names that may reach private addresses (a company mirror, split DNS), as
    /// `--allow-private-host`.
    #[serde(default)]
    pub allow_private_hosts: Vec<String>,
    /// Registries to allow as the tools on the host name them, as `--allow-registry`.
    #[serde(default)]
    pub allow_registries: Vec<String>,
    /// `broker = false`: the credential broker off, as `--no-broker` (ignored in an untrusted
    /// project file: the broker is what keeps other keys off the API hosts).
    pub broker: Option<bool>,
    /// `[[profile.NAME.credential]]` (or `[[defaults.credential]]`): more keys for the
    /// credential broker (var, header, bearer, base_url_var, upstream); a project file's only
    /// once trusted (it would choose where the user's key goes).
    #[serde(default)]
    pub credential: Vec<crate::net::broker::Credential>,
    /// The ssh-agent keys `--ssh-agent` lets the sandbox list and sign with: fingerprints
    /// (`SHA256:...`) or comments. Added to `--ssh-key`.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// `true`: as `--gpu`.
    pub gpu: Option<bool>,
    /// `true`: every signature `--ssh-agent` would make is first confirmed on the host,
    /// through `$SSH_ASKPASS`.
    pub ssh_confirm: Option<bool>,
    /// The servers `--ssh-agent` signs for (names in `known_hosts`, or `SHA256:` host key
    /// fingerprints). Added to `--ssh-host`.
    #[serde(default)]
    pub ssh_hosts: Vec<String>,
    /// Ports the agent listens on, published on the host as `--port` says them
    /// (`["3000", "8080:3000"]`); a project file's only once trusted.
    #[serde(default)]
    pub ports: Vec<String>,
}

/// The user's config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    #[serde(default)]
    pub defaults: Settings,
    /// `[profile.NAME]` tables.
    #[serde(default)]
    pub profile: BTreeMap<String, Settings>,
}

pub const PROJECT_FILE: &str = ".agentbox.toml";

/// `$XDG_CONFIG_HOME/agentbox` (or `~/.config/agentbox`).
pub fn dir(env: &Env) -> Result<PathBuf> {
    Ok(env.config_home(env.home()?).join("agentbox"))
}

mod check;
pub mod profiles;

/// "file:line:column: message", from a TOML error.
fn located(file: &Path, text: &str, err: &toml::de::Error) -> anyhow::Error {
    let (line, col) = match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            (line, col)
        }
        None => (1, 1),
    };
    Fail::hint(
        format!("{}:{line}:{col}: {}", file.display(), err.message().trim()),
        "see \"Config files\" in README.md for the keys and their types",
    )
    .into()
}

fn parse<T: for<'de> Deserialize<'de>>(file: &Path, text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| located(file, text, &e))
}

/// Checks `text` as the user's config file (`agentbox allow`, before it writes).
pub fn check_user(file: &Path, text: &str) -> Result<UserConfig> {
    parse(file, text)
}

/// Checks `text` as a project's file (`agentbox allow --project`, before it writes).
pub fn check_settings(file: &Path, text: &str) -> Result<Settings> {
    parse(file, text)
}

/// `dir` is agentbox's config directory (`dir(home)`).
pub fn load_user(dir: &Path) -> Result<UserConfig> {
    let file = dir.join("config.toml");
    match fs::read_to_string(&file) {
        Ok(text) => {
            let user = parse(&file, &text)?;
            check::user(&file, &text, &user)?;
            Ok(user)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UserConfig::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// The project file, and whether the user trusts this exact content.
pub struct ProjectConfig {
    pub file: PathBuf,
    pub settings: Settings,
    pub trusted: bool,
    /// It was trusted once, and has changed since.
    pub changed: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the trust of a project's file is recorded: one file per project path.
fn trust_record(dir: &Path, project: &Path) -> PathBuf {
    let key = hex(&Sha256::digest(project.as_os_str().as_encoded_bytes()));
    dir.join("trusted").join(key)
}

/// A project's file larger than this is refused (it is a few lines of settings).
pub const MAX_PROJECT_FILE: u64 = 1 << 20;

pub fn load_project(dir: &Path, project: &Path) -> Result<Option<ProjectConfig>> {
    let file = project.join(PROJECT_FILE);
    // In the project, where a run could have left a FIFO (a plain read would hang here, and
    // in the proxy's live pick-up) or a link to something endless.
    let bytes = match crate::hostfs::read_regular(&file, true, MAX_PROJECT_FILE)? {
        Some(b) => b,
        None => return Ok(None),
    };
    let text = String::from_utf8(bytes.clone())
        .map_err(|_| Fail::hint(format!("{}: not UTF-8", file.display()), "save it as UTF-8"))?;
    let settings = parse(&file, &text)?;
    check::project(&file, &text)?;
    let hash = hex(&Sha256::digest(&bytes));
    let record = fs::read_to_string(trust_record(dir, project)).ok();
    let trusted = record
        .as_deref()
        .is_some_and(|r| r.split_whitespace().next() == Some(&hash));
    Ok(Some(ProjectConfig {
        changed: record.is_some() && !trusted,
        file,
        settings,
        trusted,
    }))
}

/// Records the project's file as it is now, without showing it (`projectfile::trust` shows
/// it first, and records the very bytes shown): for tests.
#[cfg(test)]
pub fn trust(dir: &Path, project: &Path) -> Result<PathBuf> {
    let file = project.join(PROJECT_FILE);
    let bytes = fs::read(&file).map_err(|e| {
        Fail::hint(
            format!("{}: {e}", file.display()),
            "run agentbox trust in a project that has a .agentbox.toml",
        )
    })?;
    parse_project(&file, &bytes)?;
    trust_bytes(dir, project, &bytes)?;
    Ok(file)
}

/// The project's file from its bytes, checked as `load_project` does.
pub fn parse_project(file: &Path, bytes: &[u8]) -> Result<Settings> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Fail::hint(format!("{}: not UTF-8", file.display()), "save it as UTF-8"))?;
    let settings = parse(file, text)?;
    check::project(file, text)?;
    Ok(settings)
}

/// `agentbox trust`: records the hash of `bytes`, the project's file as the user saw it.
pub fn trust_bytes(dir: &Path, project: &Path, bytes: &[u8]) -> Result<()> {
    let record = trust_record(dir, project);
    let line = format!("{} {}\n", hex(&Sha256::digest(bytes)), project.display());
    // The project is a writable root of its runs, and could hold agentbox's own directory:
    // no symlink there may send the record elsewhere.
    let areas = crate::hostfs::Untrusted::new([dir.to_owned(), project.to_owned()]);
    crate::hostfs::write_file(&record, line.as_bytes(), &areas)
}

/// How open a network mode is, to tell tightening from loosening.
fn openness(net: Option<NetArg>) -> u8 {
    match net {
        Some(NetArg::None) => 0,
        Some(NetArg::Filtered) => 1,
        Some(NetArg::Host) => 2,
        None => 0,
    }
}

fn net_arg(s: &str, file: &str) -> Result<NetArg> {
    match s {
        "none" => Ok(NetArg::None),
        "filtered" => Ok(NetArg::Filtered),
        "host" => Ok(NetArg::Host),
        other => Err(Fail::hint(
            format!("{file}: net = {other:?}: expected \"none\", \"filtered\" or \"host\""),
            "net = \"filtered\"",
        )
        .into()),
    }
}

fn expand(p: &str, home: &Path) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None => PathBuf::from(p),
    }
}

/// Applies `s` under the flags: lists are added before the flags' own, single values only
/// where no flag set them.
fn layer(args: &mut SandboxArgs, s: &Settings, home: &Path, file: &str) -> Result<()> {
    if args.net.is_none()
        && !args.allow_net
        && let Some(n) = &s.net
    {
        args.net = Some(net_arg(n, file)?);
    }
    let front = |v: &mut Vec<String>, add: &[String]| {
        v.splice(0..0, add.iter().cloned());
    };
    front(&mut args.allow_domain, &s.allow_domains);
    front(&mut args.deny_domain, &s.deny_domains);
    front(&mut args.allow_private_host, &s.allow_private_hosts);
    front(&mut args.allow_registry, &s.allow_registries);
    front(&mut args.hide, &s.hide);
    front(&mut args.unhide, &s.unhide);
    args.ro.splice(0..0, s.ro.iter().map(|p| expand(p, home)));
    args.rw.splice(0..0, s.rw.iter().map(|p| expand(p, home)));
    args.env.splice(0..0, s.env.iter().map(Into::into));
    args.allow_telemetry |= s.allow_telemetry.unwrap_or(false);
    args.allow_debug |= s.allow_debug.unwrap_or(false);
    args.allow_nested |= s.allow_nested.unwrap_or(false);
    if args.ssh_agent.is_none() && s.ssh_agent == Some(true) {
        args.ssh_agent = Some(crate::cli::SshAgentArg::Filtered);
    }
    front(&mut args.ssh_key, &s.ssh_keys);
    front(&mut args.ssh_host, &s.ssh_hosts);
    front(&mut args.port, &s.ports);
    if args.docker.is_none() && s.docker == Some(true) {
        args.docker = Some(crate::cli::DockerArg::Filtered);
    }
    args.no_toolchains |= s.toolchains == Some(false);
    args.no_broker |= s.broker == Some(false);
    args.credentials.extend(s.credential.iter().cloned());
    args.gpu |= s.gpu == Some(true);
    args.ssh_confirm |= s.ssh_confirm == Some(true);
    if args.memory.is_none()
        && let Some(m) = &s.memory
    {
        args.memory = Some(
            crate::limits::parse_size(m)
                .map_err(|e| Fail::hint(format!("{file}: memory: {e}"), "memory = \"4G\""))?,
        );
    }
    if args.pids.is_none() {
        args.pids = s.pids;
    }
    Ok(())
}

/// The part of an untrusted project file that only tightens: more hidden paths, more denied
/// domains, a stricter network, limits. The rest is returned by name, to say it was ignored.
pub(crate) fn tightening(s: &Settings, current: Option<NetArg>) -> (Settings, Vec<&'static str>) {
    let mut ignored = Vec::new();
    let mut keep = Settings {
        hide: s.hide.clone(),
        deny_domains: s.deny_domains.clone(),
        memory: s.memory.clone(),
        pids: s.pids,
        toolchains: s.toolchains.filter(|t| !t),
        ..Settings::default()
    };
    if let Some(n) = &s.net {
        let stricter = net_arg(n, "").is_ok_and(|a| openness(Some(a)) <= openness(current));
        if stricter {
            keep.net = Some(n.clone());
        } else {
            ignored.push("net");
        }
    }
    let loosening: [(&'static str, bool); 17] = [
        ("allow_domains", !s.allow_domains.is_empty()),
        ("allow_registries", !s.allow_registries.is_empty()),
        ("allow_private_hosts", !s.allow_private_hosts.is_empty()),
        ("unhide", !s.unhide.is_empty()),
        ("ro", !s.ro.is_empty()),
        ("rw", !s.rw.is_empty()),
        ("env", !s.env.is_empty()),
        ("allow_telemetry", s.allow_telemetry == Some(true)),
        ("allow_debug", s.allow_debug == Some(true)),
        ("allow_nested", s.allow_nested == Some(true)),
        (
            "ssh_agent/docker",
            s.ssh_agent == Some(true) || s.docker == Some(true),
        ),
        ("broker", s.broker == Some(false)),
        ("credential", !s.credential.is_empty()),
        ("ssh_keys", !s.ssh_keys.is_empty()),
        ("ssh_hosts", !s.ssh_hosts.is_empty()),
        ("gpu", s.gpu == Some(true)),
        ("ports", !s.ports.is_empty()),
    ];
    ignored.extend(loosening.iter().filter(|(_, set)| *set).map(|(k, _)| *k));
    (keep, ignored)
}

/// What the configuration files say, as read: the input of `resolve` besides the flags.
pub struct Files {
    /// The home directory as given, for `~/` in the files' paths.
    pub home: PathBuf,
    pub user: UserConfig,
    /// The project's file, when there is one (and the project exists).
    pub project: Option<ProjectConfig>,
}

/// Reads the user's config file and, given a project directory, the project's file with its
/// trust. `project` is the directory as given (`--project`, else the current directory).
pub fn read(env: &Env, project: Option<&Path>) -> Result<Files> {
    let config_dir = dir(env)?;
    let user = load_user(&config_dir)?;
    let project = match project.map(fs::canonicalize) {
        Some(Ok(p)) => load_project(&config_dir, &p)?,
        // HostFacts reports a missing project with its hint.
        Some(Err(_)) | None => None,
    };
    Ok(Files {
        home: env.home()?.to_owned(),
        user,
        project,
    })
}

/// The files `run` and `test` read: the user's, and the project's in `--project` or the
/// current directory.
pub fn read_for(args: &SandboxArgs, env: &Env) -> Result<Files> {
    let project = match &args.project {
        Some(p) => p.clone(),
        None => env.cwd()?.to_owned(),
    };
    read(env, Some(&project))
}

/// From flags to a checked policy, the one place where the options meet: picks the profile,
/// layers the files under the flags, checks the result. Pure. Returns the policy and
/// warnings to show.
pub fn resolve(
    mut args: SandboxArgs,
    command: Vec<std::ffi::OsString>,
    bind_self: bool,
    files: &Files,
) -> Result<(crate::policy::Policy, Vec<String>)> {
    let first = command.first().cloned().unwrap_or_default();
    let profile = profiles::choose(
        args.profile.as_deref(),
        args.no_profile,
        &first,
        &files.user.profile,
    )?;
    let warnings = merge(
        &mut args,
        &files.user,
        &profile.name,
        files.project.as_ref(),
        &files.home,
    )?;
    let policy = crate::policy::Policy::new(args, command, bind_self, profile)?;
    Ok((policy, warnings))
}

/// Puts the config layers under the command-line flags: user defaults, then the user's
/// settings for this profile, then the project file (only what tightens, unless trusted).
/// Returns warnings to show.
pub fn merge(
    args: &mut SandboxArgs,
    user: &UserConfig,
    profile: &str,
    project: Option<&ProjectConfig>,
    home: &Path,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let user_file = "config.toml";
    if let Some(p) = project {
        let name = p.file.display().to_string();
        if p.trusted {
            layer(args, &p.settings, home, &name)?;
        } else {
            // What the user set, as the layers below will apply it: the profile's chain first.
            let mine: Vec<&Settings> = profiles::chain(profile, &user.profile)
                .iter()
                .filter_map(|n| user.profile.get(n))
                .chain([&user.defaults])
                .collect();
            let user_net = mine
                .iter()
                .find_map(|s| s.net.as_deref().and_then(|n| net_arg(n, "").ok()));
            let (mut keep, mut ignored) = tightening(&p.settings, args.net.or(user_net));
            // A limit counts only where it is lower than the one the user set: layered first,
            // a higher one would replace the user's.
            let size =
                |m: &Option<String>| m.as_deref().and_then(|m| crate::limits::parse_size(m).ok());
            let user_memory = args.memory.or(mine.iter().find_map(|s| size(&s.memory)));
            if let (Some(theirs), Some(ours)) = (size(&keep.memory), user_memory)
                && theirs > ours
            {
                keep.memory = None;
                ignored.push("memory");
            }
            let user_pids = args.pids.or(mine.iter().find_map(|s| s.pids));
            if let (Some(theirs), Some(ours)) = (keep.pids, user_pids)
                && theirs > ours
            {
                keep.pids = None;
                ignored.push("pids");
            }
            layer(args, &keep, home, &name)?;
            if !ignored.is_empty() {
                let why = if p.changed {
                    "it changed since you trusted it"
                } else {
                    "it is not trusted"
                };
                warnings.push(format!(
                    "{name}: ignoring {} ({why}; a project file may only tighten the sandbox \
                     until you review it and run `agentbox trust`)",
                    ignored.join(", ")
                ));
            }
        }
    }
    // A profile of the user's own, then each one its `extends` leads through.
    for name in profiles::chain(profile, &user.profile) {
        if let Some(s) = user.profile.get(&name) {
            layer(args, s, home, user_file)?;
        }
    }
    layer(args, &user.defaults, home, user_file)?;
    Ok(warnings)
}

#[cfg(test)]
mod tests;
