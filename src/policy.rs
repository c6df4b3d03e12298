//! The checked configuration: what the user asked for, validated, as plain data. Built from the
//! raw flags (and, later, config files and profiles). It touches nothing on the host; rules that
//! need host facts (is this path $HOME?) live in `broad.rs`, asked by `host` and the planner.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::cli::{NetArg, SandboxArgs};
use crate::error::Fail;
use crate::profile::Profile;
use crate::seccomp;

/// How the sandbox reaches the network. A filtered mode (allowlist proxy) slots in here later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// A fresh, empty network namespace: no interfaces but a down loopback.
    None,
    /// The host's network namespace, unfiltered.
    Host,
    /// An empty network namespace whose only way out is agentbox's proxy, by allowlist.
    Filtered,
}

pub use crate::net::rules::NetFilter;

/// Whether the secrets found in the project and on the system are masked (`--no-hide-env`
/// shows them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    Hidden,
    Shown,
}

/// The home the sandbox gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Home {
    /// An empty tmpfs, gone at exit.
    Empty,
    /// The agent's own persistent home (`DATA/agentbox/home/PROFILE`), for agent profiles.
    Agent,
}

/// A project that is the home, `/`, or a directory above the home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadProject {
    Refused,
    /// `--allow-broad-project`.
    Allowed,
}

/// A host socket handed to the sandbox on purpose, with everything it gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handed {
    /// `--ssh-agent`: signing with the user's keys (not the keys themselves).
    SshAgent,
    /// `--docker`: the Docker daemon, which is root on the host.
    Docker,
}

/// Whether the toolchains in the home are shown (read-only) with agentbox's caches for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchains {
    Shown,
    /// `--no-toolchains` (or `toolchains = false`): the home stays empty of them.
    Off,
}

/// Whether an extra bind is writable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraBind {
    pub path: PathBuf,
    pub access: Access,
}

/// A variable the user passes in with `--env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvPass {
    /// `--env NAME`: the host's value, if it has one.
    Inherit(OsString),
    /// `--env NAME=VALUE`.
    Set(OsString, OsString),
    /// A profile's variable: the host's value when there is one, silently nothing otherwise.
    IfSet(OsString),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// As given; `HostFacts` canonicalises it.
    pub project: Option<PathBuf>,
    pub broad_project: BroadProject,
    pub net: NetMode,
    pub filter: NetFilter,
    pub secrets: Secrets,
    pub hide: Vec<String>,
    pub unhide: Vec<String>,
    pub extra: Vec<ExtraBind>,
    pub env: Vec<EnvPass>,
    pub bwrap: Option<PathBuf>,
    /// What the seccomp filter lets through beyond the default.
    pub allow: seccomp::Allow,
    /// Bind agentbox itself inside (the probe runner of `agentbox test`).
    pub bind_self: bool,
    pub limits: crate::limits::Limits,
    /// The agent profile in force (`generic` for other commands and with --no-profile).
    pub profile: Profile,
    pub home: Home,
    /// The host sockets handed over (`--ssh-agent`, `--docker`).
    pub handed: Vec<Handed>,
    /// What the profile wants the user to know.
    pub notes: Vec<String>,
    pub command: Vec<OsString>,
    /// Where to write the exit audit as JSON (`--audit-json`), besides stderr.
    pub audit_json: Option<PathBuf>,
    pub toolchains: Toolchains,
    /// The profile's keys the credential broker holds when the host sets them (empty with
    /// `--no-broker` or without the filtered network, whose relay serves the broker).
    pub credentials: Vec<crate::profile::Credential>,
    /// `--ssh-agent` (filtered): the keys the sandbox may use. `None` with `--ssh-agent=raw`
    /// (or without `--ssh-agent`).
    pub ssh_filter: Option<crate::sshagent::KeyFilter>,
    /// `--docker` through agentbox's filter (`false` with `--docker=raw` or without `--docker`).
    pub docker_filtered: bool,
    /// `--gpu`: the GPU device nodes and the sysfs entries their drivers read.
    pub gpu: bool,
    /// `--port`: the agent's ports published on the host.
    pub ports: Vec<crate::ports::Publish>,
}

impl Policy {
    /// From the sandbox flags (config files already merged in), the command and the profile.
    pub fn new(
        args: SandboxArgs,
        command: Vec<OsString>,
        bind_self: bool,
        profile: Profile,
    ) -> Result<Policy> {
        // An agent profile means the filtered network with the agent's own hosts, unless the
        // user chose a network.
        let explicit_net = args.net.is_some() || args.allow_net;
        let by_profile = profile.is_agent() && !explicit_net;
        let wants_filter = !args.allow_domain.is_empty()
            || !args.allow_private_host.is_empty()
            || !args.allow_registry.is_empty()
            || args.learn
            || by_profile;
        // A chosen network wins here; `validate` refuses the filter's options with another.
        let net = match (args.net, args.allow_net, wants_filter) {
            (Some(NetArg::Filtered), _, _) | (None, false, true) => NetMode::Filtered,
            (Some(NetArg::Host), _, _) | (None, true, _) => NetMode::Host,
            (Some(NetArg::None), _, _) | (None, false, false) => NetMode::None,
        };
        let fixed = args
            .test_resolve
            .iter()
            .map(|s| {
                let (n, ip) = s.split_once('=').context("--test-resolve takes NAME=IP")?;
                Ok((
                    n.to_ascii_lowercase(),
                    ip.parse().context("--test-resolve: bad IP")?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut allow_domain = args.allow_domain;
        let profile_hosts: Vec<String> = profile
            .domains
            .iter()
            .filter(|d| !allow_domain.contains(d))
            .cloned()
            .collect();
        if net == NetMode::Filtered {
            let mut theirs = profile.domains.clone();
            if args.allow_telemetry {
                theirs.extend(profile.telemetry.iter().cloned());
            }
            allow_domain.splice(0..0, theirs);
        }
        let filter = NetFilter {
            rules: crate::net::rules::NetPolicy::new(&allow_domain, &args.deny_domain)?
                .with_private(&args.allow_private_host)?,
            allow: allow_domain,
            deny: args.deny_domain,
            log: args.net_log,
            learn: args.learn,
            fixed,
            sources: None,
            registries: args.allow_registry,
            profile_hosts,
            profile_keys: profile.credentials.iter().map(|c| c.var.clone()).collect(),
        };
        let mut extra: Vec<ExtraBind> = Vec::new();
        extra.extend(args.ro.into_iter().map(|path| ExtraBind {
            path,
            access: Access::ReadOnly,
        }));
        extra.extend(args.rw.into_iter().map(|path| ExtraBind {
            path,
            access: Access::ReadWrite,
        }));
        // A profile's keys never pass as they are: the broker holds them, or (broker off) only
        // an explicit --env passes one.
        // The profile's keys, then the user's config's (`[[profile.NAME.credential]]`).
        let mut all_keys = profile.credentials.clone();
        all_keys.extend(args.credentials.iter().cloned());
        let is_key = |n: &str| all_keys.iter().any(|c| c.var == n);
        let mut env: Vec<EnvPass> = profile
            .env
            .iter()
            .filter(|n| !is_key(n))
            .map(|n| EnvPass::IfSet(n.into()))
            .collect();
        let credentials = match (net, args.no_broker) {
            (NetMode::Filtered, false) => all_keys.clone(),
            _ => Vec::new(),
        };
        let quiet = if args.allow_telemetry {
            &[][..]
        } else {
            &profile.quiet[..]
        };
        for (k, v) in quiet.iter().chain(&profile.always) {
            env.push(EnvPass::Set(k.into(), v.into()));
        }
        for e in &args.env {
            env.push(parse_env(e)?);
        }
        let mut notes: Vec<String> = profile
            .notes
            .iter()
            .map(|n| format!("profile {}: {n}", profile.name))
            .collect();
        if profile.nested && !args.allow_nested {
            notes.push(format!(
                "profile {}: nested user namespaces and mounts are allowed (it runs its own \
                 sandbox); more of the kernel is reachable",
                profile.name
            ));
        }
        if credentials.is_empty() && !all_keys.is_empty() {
            let vars: Vec<&str> = all_keys.iter().map(|c| c.var.as_str()).collect();
            notes.push(format!(
                "credential broker off (--no-broker, or no filtered network): {} not passed; \
                 pass one with --env NAME",
                vars.join(", ")
            ));
        }
        let policy = Policy {
            credentials,
            project: args.project,
            broad_project: match args.allow_broad_project {
                true => BroadProject::Allowed,
                false => BroadProject::Refused,
            },
            net,
            filter,
            secrets: match args.no_hide_env {
                true => Secrets::Shown,
                false => Secrets::Hidden,
            },
            hide: args.hide,
            unhide: args.unhide,
            extra,
            env,
            bwrap: args.bwrap,
            allow: seccomp::Allow {
                debug: args.allow_debug,
                nested: args.allow_nested || profile.nested,
            },
            bind_self,
            limits: crate::limits::Limits {
                memory: args.memory,
                pids: args.pids,
            },
            home: match profile.is_agent() {
                true => Home::Agent,
                false => Home::Empty,
            },
            profile,
            handed: [
                (args.ssh_agent.is_some(), Handed::SshAgent),
                (args.docker.is_some(), Handed::Docker),
            ]
            .into_iter()
            .filter_map(|(on, h)| on.then_some(h))
            .collect(),
            notes,
            command,
            audit_json: None,
            // --no-profile is the bare defaults: nothing of the home, toolchains included.
            toolchains: match args.no_toolchains || args.no_profile {
                true => Toolchains::Off,
                false => Toolchains::Shown,
            },
            ssh_filter: (args.ssh_agent == Some(crate::cli::SshAgentArg::Filtered)).then_some(
                crate::sshagent::KeyFilter {
                    names: args.ssh_key,
                    confirm: args.ssh_confirm,
                    hosts: args.ssh_host,
                },
            ),
            docker_filtered: args.docker == Some(crate::cli::DockerArg::Filtered),
            gpu: args.gpu,
            ports: crate::ports::parse_all(&args.port)?,
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Whether `socket` is handed to the sandbox.
    pub fn hands(&self, socket: Handed) -> bool {
        self.handed.contains(&socket)
    }

    /// The rules between options, one per line, all here. (Two more are clap's, spelled in
    /// `cli.rs` as `conflicts_with`: `--profile`/`--no-profile`, `--net`/`--allow-net`.)
    pub fn validate(&self) -> Result<()> {
        let filtering = !self.filter.allow.is_empty()
            || !self.filter.rules.private.is_empty()
            || self.filter.learn;
        rule(
            self.command.first().is_some_and(|c| !c.is_empty()),
            "no command to run",
            "agentbox run -- COMMAND [ARGS...]",
        )?;
        rule(
            self.net == NetMode::Filtered || !filtering,
            "--allow-domain and --learn filter the network; they cannot go with --net none, \
             --net host or --allow-net",
            "drop --net/--allow-net (or use --net filtered)",
        )?;
        // Every key of the agent is what `=raw` says it hands over; the filter never does
        // that by default.
        rule(
            self.ssh_filter.as_ref().is_none_or(|f| !f.names.is_empty()),
            "--ssh-agent: no key named: the sandbox would get none of your ssh-agent's keys",
            "name the keys it may use: --ssh-key SHA256:... (as `ssh-add -l` lists them) or \
             ssh_keys = [\"SHA256:...\"] in config; --ssh-agent=raw hands over every key",
        )?;
        // With the host's network the agent's server is on the host already, and the helper's
        // 127.0.0.1:PORT would be the host's own (the published port itself among them).
        rule(
            self.ports.is_empty() || self.net != NetMode::Host,
            "--port publishes from the sandbox's own network; with --net host (--allow-net) the \
             agent's servers are on the host's already",
            "drop --port, or use --net filtered or --net none",
        )?;
        self.check_ports()?;
        for glob in self.hide.iter().chain(&self.unhide) {
            crate::secrets::check_glob(glob)?;
        }
        Ok(())
    }

    /// With the filter the relay holds these loopback ports inside (its proxy, its capture of
    /// 80, 443 and each allowed pattern's port): published, host clients would use the
    /// sandbox's way out, never the agent's server (which cannot bind them). Checked again
    /// once the registries' patterns are added (`host::registry::allow`).
    pub fn check_ports(&self) -> Result<()> {
        if self.net != NetMode::Filtered {
            return Ok(());
        }
        let mut held = vec![crate::inside::PROXY_PORT, 80, 443];
        held.extend(self.filter.rules.extra_ports());
        if let Some(p) = self.ports.iter().find(|p| held.contains(&p.port)) {
            return Err(Fail::hint(
                format!(
                    "--port {}: with the network filtered, port {} inside is agentbox's own \
                     (its proxy or its capture of the agent's traffic), not the agent's",
                    p.port, p.port
                ),
                "run the agent's server on another port and publish that one",
            )
            .into());
        }
        Ok(())
    }
}

/// Ok when `holds`, else the refusal with its fix.
fn rule(holds: bool, message: &str, hint: &str) -> Result<()> {
    match holds {
        true => Ok(()),
        false => Err(Fail::hint(message, hint).into()),
    }
}

/// `NAME` or `NAME=VALUE`, with NAME a portable variable name.
fn parse_env(raw: &OsStr) -> Result<EnvPass> {
    let bytes = raw.as_bytes();
    let (name, value) = match bytes.iter().position(|&b| b == b'=') {
        Some(i) => (&bytes[..i], Some(&bytes[i + 1..])),
        None => (bytes, None),
    };
    let valid = !name.is_empty()
        && !name[0].is_ascii_digit()
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(Fail::hint(
            format!("--env {:?}: not a valid variable name", raw),
            "--env NAME or --env NAME=VALUE, NAME made of letters, digits and _",
        )
        .into());
    }
    let name = OsStr::from_bytes(name).to_owned();
    Ok(match value {
        Some(v) => EnvPass::Set(name, OsStr::from_bytes(v).to_owned()),
        None => EnvPass::Inherit(name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn policy(args: &[&str]) -> Result<Policy> {
        let mut argv = vec!["agentbox", "run"];
        argv.extend_from_slice(args);
        let cli = crate::cli::Cli::try_parse_from(argv)?;
        let crate::cli::Command::Run(run) = cli.command else {
            unreachable!()
        };
        let profile = crate::profile::for_command(&run.command[0]);
        Policy::new(run.sandbox, run.command, run.bind_self, profile)
    }

    #[test]
    fn ports_are_parsed_repeatable_and_refused_with_the_hosts_network() {
        let p = policy(&["--port", "3000", "--port", "8080:3000", "--", "true"]).unwrap();
        let hp: Vec<(u16, u16)> = p.ports.iter().map(|p| (p.host_port, p.port)).collect();
        assert_eq!(hp, [(3000, 3000), (8080, 3000)]);
        assert_eq!(p.net, NetMode::None, "--port leaves the network as it was");
        for net in [["--net", "host"].as_slice(), &["--allow-net"]] {
            let mut a = net.to_vec();
            a.extend(["--port", "3000", "--", "true"]);
            let e = policy(&a).unwrap_err();
            assert!(e.downcast_ref::<Fail>().is_some(), "{e:#}");
        }
        assert!(policy(&["--port", "3000:", "--", "true"]).is_err());
        // Filtered, the relay's own ports inside are not the agent's to publish.
        let filtered = |port: &str, extra: &[&str]| {
            let mut a = vec!["--net", "filtered", "--allow-domain", "a.example:8080"];
            a.extend(extra);
            a.extend(["--port", port, "--", "true"]);
            policy(&a)
        };
        assert!(filtered("3000", &[]).is_ok(), "the control");
        for held in ["3128", "8443:443", "80", "8080"] {
            let e = filtered(held, &[]).unwrap_err();
            assert!(e.downcast_ref::<Fail>().is_some(), "{held}: {e:#}");
        }
        // With the network off nothing of agentbox's listens inside.
        assert!(policy(&["--port", "3128", "--", "true"]).is_ok());
    }

    #[test]
    fn ssh_agent_is_filtered_unless_raw_and_needs_named_keys() {
        use crate::sshagent::KeyFilter;
        let named = |names: &[&str]| KeyFilter {
            names: names.iter().map(|s| s.to_string()).collect(),
            confirm: false,
            hosts: vec![],
        };
        let p = policy(&[
            "--ssh-agent",
            "--ssh-key",
            "SHA256:a",
            "--ssh-key",
            "me",
            "x",
        ])
        .unwrap();
        assert!(p.hands(Handed::SshAgent));
        assert_eq!(p.ssh_filter, Some(named(&["SHA256:a", "me"])));
        // `=raw` only with `=`: a bare word after the flag is the command.
        let p = policy(&["--ssh-agent", "--ssh-key", "k", "raw"]).unwrap();
        assert_eq!(
            (p.ssh_filter, p.command),
            (Some(named(&["k"])), vec!["raw".into()])
        );
        let p = policy(&["--ssh-agent=raw", "x"]).unwrap();
        assert!(p.hands(Handed::SshAgent));
        assert_eq!(p.ssh_filter, None);
        let p = policy(&["--ssh-key", "k", "x"]).unwrap();
        assert!(!p.hands(Handed::SshAgent) && p.ssh_filter.is_none());
        // The filter with no key named would hand over nothing, or (worse) everything.
        let e = policy(&["--ssh-agent", "x"]).unwrap_err();
        assert!(format!("{e:#}").contains("no key named"), "{e:#}");
        assert!(policy(&["--ssh-agent=all", "x"]).is_err());
    }

    #[test]
    fn docker_is_filtered_unless_raw() {
        let p = policy(&["--docker", "x"]).unwrap();
        assert!(p.hands(Handed::Docker) && p.docker_filtered);
        let p = policy(&["--docker=raw", "x"]).unwrap();
        assert!(p.hands(Handed::Docker) && !p.docker_filtered);
        let p = policy(&["x"]).unwrap();
        assert!(!p.hands(Handed::Docker) && !p.docker_filtered);
    }

    #[test]
    fn flags_to_policy() {
        let p = policy(&["--", "make", "-j", "2"]).unwrap();
        assert_eq!(p.net, NetMode::None);
        assert_eq!(p.secrets, Secrets::Hidden);
        assert_eq!(p.allow, seccomp::Allow::default());
        assert_eq!(p.command, ["make", "-j", "2"]);
        assert_eq!(p.home, Home::Empty);
        let p = policy(&["--allow-debug", "--allow-nested", "x"]).unwrap();
        assert!(p.allow.debug && p.allow.nested);

        let cases: &[(&[&str], NetMode, bool)] = &[
            (&["--allow-net", "x"], NetMode::Host, true),
            (&["--net", "host", "x"], NetMode::Host, true),
            (&["--net", "none", "x"], NetMode::None, true),
            (&["--no-hide-env", "x"], NetMode::None, false),
            (&["--no-hide-env", "--hide-env", "x"], NetMode::None, true),
            (&["--hide-env", "--no-hide-env", "x"], NetMode::None, false),
        ];
        for (args, net, hide) in cases {
            let p = policy(args).unwrap();
            let secrets = match hide {
                true => Secrets::Hidden,
                false => Secrets::Shown,
            };
            assert_eq!((p.net, p.secrets), (*net, secrets), "{args:?}");
        }
    }

    #[test]
    fn agent_profiles_bring_their_network_env_and_home() {
        let p = policy(&["--", "claude", "-p", "hi"]).unwrap();
        assert_eq!(p.net, NetMode::Filtered);
        assert!(p.filter.allow.contains(&"api.anthropic.com".to_owned()));
        assert!(!p.filter.allow.iter().any(|d| d.contains("statsig")));
        // Its keys are the credential broker's, never passed as they are; its other
        // variables pass.
        assert!(!p.env.contains(&EnvPass::IfSet("ANTHROPIC_API_KEY".into())));
        assert!(p.env.contains(&EnvPass::IfSet("ANTHROPIC_MODEL".into())));
        assert!(p.credentials.iter().any(|c| c.var == "ANTHROPIC_API_KEY"));
        // Off with --no-broker, and without the filtered network (no relay to serve it):
        // then said in a note.
        for args in [&["--no-broker", "claude"][..], &["--allow-net", "claude"]] {
            let p = policy(args).unwrap();
            assert!(p.credentials.is_empty(), "{args:?}");
            assert!(!p.env.contains(&EnvPass::IfSet("ANTHROPIC_API_KEY".into())));
            assert!(p.notes.iter().any(|n| n.contains("credential broker off")));
        }
        // aider's keys too (litellm takes base URLs); its OpenAI base URL still passes.
        let a = policy(&["aider"]).unwrap();
        let c = a.credentials.iter().find(|c| c.var == "OPENAI_API_KEY");
        assert_eq!(c.map(|c| c.base_url_var.as_str()), Some("OPENAI_API_BASE"));
        assert!(!a.env.contains(&EnvPass::IfSet("OPENAI_API_KEY".into())));
        assert!(a.env.contains(&EnvPass::IfSet("OPENAI_API_BASE".into())));
        // An agent whose key cannot be brokered does not get it unless --env asks.
        let c = policy(&["copilot"]).unwrap();
        assert!(c.credentials.is_empty());
        assert!(!c.env.contains(&EnvPass::IfSet("GH_TOKEN".into())));
        let c = policy(&["--env", "GH_TOKEN", "copilot"]).unwrap();
        assert!(c.env.contains(&EnvPass::Inherit("GH_TOKEN".into())));
        assert!(
            p.env
                .contains(&EnvPass::Set("DISABLE_TELEMETRY".into(), "1".into()))
        );
        assert_eq!(p.home, Home::Agent);
        // Telemetry is the user's choice.
        let p = policy(&["--allow-telemetry", "claude"]).unwrap();
        assert!(p.filter.allow.iter().any(|d| d.contains("statsig")));
        assert!(
            !p.env
                .contains(&EnvPass::Set("DISABLE_TELEMETRY".into(), "1".into()))
        );
        // A chosen network wins; the profile's hosts apply only to the filtered one.
        let p = policy(&["--net", "none", "claude"]).unwrap();
        assert_eq!(p.net, NetMode::None);
        assert!(p.filter.allow.is_empty());
        // Codex runs its own sandbox.
        let p = policy(&["codex"]).unwrap();
        assert!(p.allow.nested && !p.notes.is_empty());
    }

    #[test]
    fn env_flags() {
        let p = policy(&["--env", "A", "--env", "B=x=y", "--env", "C=", "true"]).unwrap();
        assert_eq!(
            p.env,
            [
                EnvPass::Inherit("A".into()),
                EnvPass::Set("B".into(), "x=y".into()),
                EnvPass::Set("C".into(), "".into()),
            ]
        );
        for bad in ["", "=x", "1A", "A-B", "A B=1"] {
            assert!(policy(&["--env", bad, "true"]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn extra_binds_keep_access() {
        let p = policy(&["--ro", "/a", "--rw", "/b", "--ro", "/c", "x"]).unwrap();
        let got: Vec<_> = p.extra.iter().map(|e| (e.path.clone(), e.access)).collect();
        assert_eq!(
            got,
            [
                ("/a".into(), Access::ReadOnly),
                ("/c".into(), Access::ReadOnly),
                ("/b".into(), Access::ReadWrite),
            ]
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(policy(&["--allow-net", "--net", "none", "x"]).is_err());
        // The filter's options need the filtered network.
        for net in [&["--net", "none"][..], &["--net", "host"], &["--allow-net"]] {
            for filter in [&["--allow-domain", "a.example"][..], &["--learn"]] {
                let args = [net, filter, &["x"]].concat();
                let err = policy(&args).unwrap_err().to_string();
                assert!(err.contains("cannot go with"), "{args:?}: {err}");
            }
        }
        let p = policy(&["--net", "filtered", "--allow-domain", "a.example", "x"]).unwrap();
        assert_eq!(p.net, NetMode::Filtered);
        assert_eq!(policy(&["--learn", "x"]).unwrap().net, NetMode::Filtered);
        assert!(policy(&["--hide", "a[", "x"]).is_err());
        assert!(policy(&[]).is_err());
    }

    #[test]
    fn agent_flags_are_not_ours() {
        let p = policy(&["claude", "--allow-debug", "--project", "/"]).unwrap();
        assert!(!p.allow.debug);
        assert_eq!(p.project, None);
        assert_eq!(p.command, ["claude", "--allow-debug", "--project", "/"]);
    }
}
