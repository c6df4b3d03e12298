//! Raw command-line flags (clap derive). The doc comments are the help text. No logic lives here:
//! `policy.rs` turns these into a checked `Policy`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Run AI coding agents in a bubblewrap sandbox: the project writable, the system read-only, the
/// home empty, secrets masked, the environment scrubbed and the network off.
#[derive(Debug, Parser)]
// A flag given twice (by an alias and by hand, say) is not an error: the last one counts.
#[command(
    name = "agentbox",
    version,
    propagate_version = true,
    args_override_self = true
)]
pub struct Cli {
    /// Show each decision: every bwrap option and its reason, before starting.
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,

    /// Do not print notes (warnings and errors still show).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run COMMAND inside the sandbox.
    Run(RunArgs),
    /// Prove the sandbox holds: run the escape probes inside exactly the sandbox `run` with
    /// the same options would build, and report each one.
    Test(TestArgs),
    /// Check this machine for what agentbox needs, with the exact fix for each problem.
    /// Exits non-zero when something blocks `agentbox run`.
    Doctor {
        /// Print the results as one JSON document.
        #[arg(long)]
        json: bool,
        /// Check this bwrap instead of the one found on PATH.
        #[arg(long, value_name = "PATH")]
        bwrap: Option<PathBuf>,
    },
    /// List the agent profiles, whether each agent is installed, and their main settings.
    Profiles,
    /// Show a profile.
    Profile {
        #[command(subcommand)]
        action: ProfileAction,
    },
    /// Trust the project's .agentbox.toml as it is now (until it changes), so that it may
    /// loosen the sandbox too. Review it first.
    Trust {
        /// The project [default: the git checkout's top level, else the current directory].
        #[arg(long, value_name = "DIR")]
        project: Option<PathBuf>,
        /// Record it without asking (it is still shown first): for scripts.
        #[arg(long, short)]
        yes: bool,
    },
    /// Write a commented .agentbox.toml for the project (what was found in it, suggestions
    /// commented out), for you to review and `agentbox trust`. Never over an existing one.
    Init {
        /// The project [default: the git checkout's top level, else the current directory].
        #[arg(long, value_name = "DIR")]
        project: Option<PathBuf>,
    },
    /// Copy an agent's existing login (the files its profile names) from your home into the
    /// agent's home in agentbox, once.
    ImportLogin {
        /// The profile: claude, codex, gemini, ... (or one of yours based on one).
        profile: String,
        /// Replace a login already in the agent's home.
        #[arg(long)]
        force: bool,
    },
    /// Allow HOSTs in every later filtered run, and in the running ones from their next request:
    /// adds them to allow_domains in your config file ([defaults], or [profile.NAME]), or in
    /// the project's .agentbox.toml (which then needs `agentbox trust` again).
    Allow {
        /// api.example.com, *.example.com or host:port, as --allow-domain takes them.
        #[arg(value_name = "HOST", required_unless_present = "from_learn")]
        hosts: Vec<String>,
        /// Into [profile.NAME] of your config file instead of [defaults].
        #[arg(long, value_name = "NAME", conflicts_with = "project")]
        profile: Option<String>,
        /// Into the .agentbox.toml of the project in the current directory.
        #[arg(long)]
        project: bool,
        /// Also the hosts a `--net-log FILE` record shows refused for want of a pattern
        /// (record one with `agentbox run --learn --net-log FILE -- COMMAND`).
        #[arg(long, value_name = "FILE")]
        from_learn: Option<PathBuf>,
        /// Add to allow_private_hosts instead: these names may reach private addresses.
        #[arg(long)]
        private: bool,
    },
    /// Print shell aliases that run the installed agents through agentbox
    /// (eval "$(agentbox shell-init bash)" in ~/.bashrc).
    ShellInit { shell: InitShell },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    Man,
    /// List agentbox's own package caches (cargo, npm, pip, go...: shared by every run, never
    /// your own) with their sizes; `clean` removes them.
    Cache {
        #[command(subcommand)]
        action: Option<CacheAction>,
    },
    /// (internal) The probe runner, started inside the sandbox by `agentbox test`.
    #[command(name = "__probe", hide = true)]
    Probe {
        /// The probe context, as JSON.
        ctx: String,
        /// Run only this probe, in this process (each probe gets its own process, so one that
        /// changes its namespaces or personality cannot colour the next).
        #[arg(long)]
        only: Option<String>,
    },
    /// (internal) Inside the sandbox: on a terminal restore Ctrl-C, apply Landlock, then
    /// become COMMAND.
    #[command(name = "__exec", hide = true)]
    Exec {
        /// On a terminal: give Ctrl-C back to the command (bwrap had to ignore it).
        #[arg(long)]
        tty: bool,
        /// Apply Landlock: writes only beneath the --write paths.
        #[arg(long)]
        landlock: bool,
        /// A path the command may write beneath (with --landlock).
        #[arg(long, value_name = "PATH")]
        write: Vec<PathBuf>,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// (internal) The filtered network's relay: the sandbox's first process.
    #[command(name = "__relay", hide = true)]
    Relay {
        ctx: String,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// (internal) Inside the sandbox: carry `--port`'s connections to the sandbox's loopback
    /// ports while COMMAND runs.
    #[command(name = "__ports", hide = true)]
    Ports {
        #[arg(long)]
        tty: bool,
        #[arg(long = "port")]
        ports: Vec<u16>,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// (internal) A process that sleeps, detached, for the leftover probe.
    #[command(name = "__sleeper", hide = true)]
    Sleeper { marker: String },
}

#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Remove agentbox's package caches (all of them, or the NAMEs given); each is made again,
    /// empty, by the next run that needs it.
    Clean { names: Vec<String> },
}

#[derive(Debug, Subcommand)]
pub enum ProfileAction {
    /// Print the fully resolved profile (after your config file).
    Show { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitShell {
    Bash,
    Zsh,
    Fish,
}

/// `--ssh-agent[=MODE]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SshAgentArg {
    /// Only the named keys, only listing and signing, through agentbox's filter.
    Filtered,
    /// The agent's socket itself: every key it holds, every operation.
    Raw,
}

/// `--docker[=MODE]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DockerArg {
    /// Through agentbox's filter.
    Filtered,
    /// The daemon's socket itself: root on the host.
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetArg {
    /// No network at all: the sandbox has its own empty network namespace.
    None,
    /// Only the hosts --allow-domain names, through agentbox's proxy (HTTP, HTTPS, SOCKS5;
    /// clients that ignore proxy settings are captured too).
    Filtered,
    /// The host's network, unfiltered.
    Host,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub sandbox: SandboxArgs,

    /// Print the bwrap command as a commented shell script and exit, changing nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// With --dry-run: show the filesystem the agent would see, as a tree, instead.
    #[arg(long)]
    pub tree: bool,

    /// Also write the exit audit (files the agent created or changed that your tools run
    /// later) to FILE as JSON, even when nothing changed.
    #[arg(long, value_name = "FILE")]
    pub audit_json: Option<PathBuf>,

    /// (internal, for `agentbox test`) The command is agentbox itself, which every run binds
    /// read-only at /run/agentbox/agentbox.
    #[arg(long, hide = true)]
    pub bind_self: bool,

    /// The command to run, with its arguments. A word before it that starts with `-` is an
    /// agentbox option (an unknown one is an error, never the command): a command that starts
    /// with `-` goes after a literal `--`.
    #[arg(required = true, trailing_var_arg = true)]
    #[arg(value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub sandbox: SandboxArgs,

    /// Print the results as one JSON document (for CI).
    #[arg(long)]
    pub json: bool,
}

/// The options that shape the sandbox, shared by `run` and `test`.
/// `Default` is the same as no flag given (`profile show` resolves from it).
#[derive(Debug, Default, Args)]
pub struct SandboxArgs {
    /// Use this agent profile [default: chosen by the command's name, else "generic"].
    #[arg(long, value_name = "NAME", conflicts_with = "no_profile")]
    pub profile: Option<String>,

    /// Use no profile: the bare defaults (no toolchains from the home either).
    #[arg(long)]
    pub no_profile: bool,

    /// Also allow the agent's telemetry, error-reporting and update hosts.
    #[arg(long)]
    pub allow_telemetry: bool,

    /// Let the sandbox list and sign with the keys of your ssh-agent that --ssh-key (or
    /// `ssh_keys` in config) names, through agentbox's filter (no adding, removing or locking),
    /// and show ~/.ssh/known_hosts read-only, for git over SSH. `--ssh-agent=raw` hands over
    /// the agent's socket itself: every key, every operation.
    #[arg(
        long,
        value_name = "MODE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "filtered"
    )]
    pub ssh_agent: Option<SshAgentArg>,

    /// A key of your ssh-agent the sandbox may use with --ssh-agent: its fingerprint
    /// (SHA256:..., as `ssh-add -l` prints it) or its comment (repeatable).
    #[arg(long, value_name = "KEY")]
    pub ssh_key: Vec<String>,

    /// With --ssh-agent: sign only for this server (repeatable), by name (its key from
    /// ~/.ssh/known_hosts) or host key fingerprint, as `ssh` tells the agent; nothing else.
    #[arg(long, value_name = "HOST")]
    pub ssh_host: Vec<String>,

    /// With --ssh-agent: ask before each signature, on the host, through $SSH_ASKPASS.
    #[arg(long)]
    pub ssh_confirm: bool,

    /// Give the sandbox a Docker socket served by agentbox, which refuses what would turn a
    /// container into the host (privileged, host namespaces, devices, binds outside the
    /// project...). `--docker=raw` hands over the daemon's socket itself: root on the host.
    #[arg(
        long,
        value_name = "MODE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "filtered"
    )]
    pub docker: Option<DockerArg>,

    /// Show the GPU device nodes (NVIDIA /dev/nvidia*, /dev/dri, AMD's /dev/kfd) and the sysfs
    /// entries their drivers read. The GPU driver in the kernel becomes reachable.
    #[arg(long)]
    pub gpu: bool,

    /// The directory the agent may write [default: the current directory].
    #[arg(long, value_name = "DIR")]
    pub project: Option<PathBuf>,

    /// Accept a project directory (or --rw path) that is /, $HOME, an ancestor of $HOME or a
    /// system directory, and a --ro path that is /, $HOME, an ancestor of it, /proc, /sys,
    /// /dev, /run or /tmp. The whole of it becomes writable (or visible) to the agent.
    #[arg(long)]
    pub allow_broad_project: bool,

    /// Network mode.
    #[arg(long, value_enum, value_name = "MODE")]
    pub net: Option<NetArg>,

    /// Share the host network (short for --net host).
    #[arg(long, conflicts_with = "net")]
    pub allow_net: bool,

    /// Allow connections to PATTERN: api.example.com, *.example.com (subdomains), or with a
    /// port (host:port, 127.0.0.1:8080); ports 80 and 443 otherwise. Implies --net filtered.
    #[arg(long, value_name = "PATTERN")]
    pub allow_domain: Vec<String>,

    /// Let HOST (a name, allowed too) reach private addresses: a company mirror, split DNS.
    /// Others resolving to a private address stay refused (DNS rebinding).
    #[arg(long, value_name = "HOST")]
    pub allow_private_host: Vec<String>,

    /// Allow the registry NAME (npm, pypi, go, cargo) is configured to use, as the tool on the
    /// host says it (its own config and defaults). Implies --net filtered.
    #[arg(long, value_name = "NAME")]
    pub allow_registry: Vec<String>,

    /// Refuse PATTERN even where an --allow-domain covers it.
    #[arg(long, value_name = "PATTERN")]
    pub deny_domain: Vec<String>,

    /// Append every network decision to FILE as a JSON line.
    #[arg(long, value_name = "FILE")]
    pub net_log: Option<PathBuf>,

    /// Record every host the sandbox asks for and print an allowlist for them at exit.
    /// Implies --net filtered.
    #[arg(long)]
    pub learn: bool,

    /// (testing) Resolve NAME to IP in the proxy without DNS, trusted.
    #[arg(long, value_name = "NAME=IP", hide = true)]
    pub test_resolve: Vec<String>,

    /// Mask secret files (.env, keys, credential files) in the project [default: on].
    #[arg(long, overrides_with = "no_hide_env")]
    pub hide_env: bool,

    /// Do not mask secret files in the project.
    #[arg(long, overrides_with = "hide_env")]
    pub no_hide_env: bool,

    /// Also mask files or directories matching GLOB (a name at any depth, or a path with '/').
    #[arg(long, value_name = "GLOB")]
    pub hide: Vec<String>,

    /// Do not mask files or directories matching GLOB, even if a secret pattern matches them.
    #[arg(long, value_name = "GLOB")]
    pub unhide: Vec<String>,

    /// Make PATH visible read-only at the same place (repeatable).
    #[arg(long, value_name = "PATH")]
    pub ro: Vec<PathBuf>,

    /// Make PATH visible read-write at the same place (repeatable).
    #[arg(long, value_name = "PATH")]
    pub rw: Vec<PathBuf>,

    /// Pass the host variable NAME, or set NAME=VALUE, inside the sandbox (repeatable).
    #[arg(long, value_name = "NAME[=VALUE]")]
    pub env: Vec<OsString>,

    /// Use this bwrap executable instead of the one found on PATH.
    #[arg(long, value_name = "PATH")]
    pub bwrap: Option<PathBuf>,

    /// Allow ptrace, process_vm_readv/writev and perf_event_open (debuggers, profilers): the
    /// agent can then read and steer the memory of every process in the sandbox.
    #[arg(long)]
    pub allow_debug: bool,

    /// Allow user namespaces and mounts inside (for agents that run their own sandbox, such
    /// as Codex): more kernel attack surface is reachable.
    #[arg(long)]
    pub allow_nested: bool,

    /// Limit the sandbox's total memory (e.g. 4G, 512M; bytes without a suffix), through a
    /// cgroup. agentbox then stays as the sandbox's parent to remove the cgroup afterwards.
    #[arg(long, value_name = "SIZE", value_parser = crate::limits::parse_size)]
    pub memory: Option<u64>,

    /// Limit how many processes and threads the sandbox may have at once (a fork bomb stops
    /// there), through a cgroup.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub pids: Option<u64>,

    /// Do not show the toolchains in your home (rustup, pyenv, nvm...) nor set up agentbox's
    /// package caches for them.
    #[arg(long)]
    pub no_toolchains: bool,
    /// Turn the credential broker off: the profile's API keys are then not passed at all
    /// (pass one with --env NAME), and their API hosts take any key, the agent's own too.
    #[arg(long)]
    pub no_broker: bool,

    /// Credentials the config files add for the broker (`[[profile.NAME.credential]]`).
    #[arg(skip)]
    pub credentials: Vec<crate::net::broker::Credential>,

    /// Publish a port the agent listens on inside to the host: `3000` (127.0.0.1:3000 on the
    /// host), `8080:3000` (host port 8080), `127.0.0.2:3000`; another address than loopback
    /// exposes the agent's server to your network (repeatable). The network stays as it is.
    #[arg(long, value_name = "[HOST:]PORT[:PORT]")]
    pub port: Vec<String>,
}

/// `agentbox __relay CTX -- COMMAND...`, the exact form the plan writes (`bwrap::network`),
/// as clap would read it: the relay's process skips clap's parser, whose pages it would keep
/// for the whole run. `None` for anything else, which clap then reads.
pub fn relay_argv(args: impl IntoIterator<Item = OsString>) -> Option<(String, Vec<OsString>)> {
    let mut args = args.into_iter().skip(1);
    if args.next()? != "__relay" {
        return None;
    }
    let ctx = args.next()?.into_string().ok()?;
    if args.next()? != "--" {
        return None;
    }
    let command: Vec<OsString> = args.collect();
    (!command.is_empty()).then_some((ctx, command))
}

/// An unknown option before the command, in agentbox's words (exit 125 with a hint), instead
/// of clap's usage text: `--allow-domains x -- true` must never run `--allow-domains`.
pub fn unknown_option(e: &clap::Error) -> Option<crate::error::Fail> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let text = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    let arg = text(ContextKind::InvalidArg)?;
    let hint = match text(ContextKind::SuggestedArg) {
        Some(s) => format!("did you mean `{s}`?"),
        None => "see `agentbox run --help` for the options".to_owned(),
    };
    Some(crate::error::Fail::hint(
        format!("unknown option `{arg}` (a command that starts with `-` goes after `--`)"),
        hint,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    /// The plan's form gives what clap gives; every other form is left to clap.
    #[test]
    fn relay_argv_reads_the_plans_form_as_clap_does() {
        let argv = os(&[
            "agentbox",
            "__relay",
            "{\"a\":1}",
            "--",
            "cmd",
            "--x",
            "-y",
            "--",
        ]);
        let Command::Relay { ctx, command } = Cli::try_parse_from(&argv).unwrap().command else {
            panic!("clap did not read __relay");
        };
        assert_eq!(relay_argv(argv), Some((ctx, command)));
        for other in [
            &["agentbox", "__relay", "{}"][..],
            &["agentbox", "__relay", "{}", "--"],
            &["agentbox", "__relay", "{}", "cmd"],
            &["agentbox", "-q", "__relay", "{}", "--", "cmd"],
            &["agentbox", "run", "--", "__relay", "{}", "--", "cmd"],
            &["agentbox", "__exec", "--", "cmd"],
            &["agentbox"],
        ] {
            assert_eq!(relay_argv(os(other)), None, "{other:?}");
        }
        use std::os::unix::ffi::OsStringExt;
        let bad = vec![
            OsString::from("agentbox"),
            OsString::from("__relay"),
            OsString::from_vec(vec![0xff]),
            OsString::from("--"),
            OsString::from("cmd"),
        ];
        assert_eq!(relay_argv(bad), None);
    }
}
