//! The small subcommands around `run`: profiles (built-in and the user's own), profile show,
//! shell-init, completions, man. They only print. (`init` and `trust` are in `projectfile.rs`,
//! `import-login` in `login.rs`.)

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{Cli, InitShell, SandboxArgs};
use crate::config;
use crate::error::Fail;
use crate::hostenv::Env;
use crate::policy::{Access, EnvPass, NetMode};
use crate::profile::{self, Profile};

/// Where a profile's command is installed, if it is.
fn installed(p: &Profile, env: &Env) -> Option<(String, PathBuf)> {
    p.commands
        .iter()
        .find_map(|c| env.which(c).map(|path| (c.clone(), path)))
}

pub fn profiles(env: &Env) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<13} {:<10} {:<40} NETWORK",
        "PROFILE", "INSTALLED", "ABOUT"
    )?;
    // The user's own profiles, after the built-in ones, marked as theirs.
    let user = config::read(env, None)?.user.profile;
    let all = profile::names()
        .into_iter()
        .map(str::to_owned)
        .chain(config::profiles::names(&user));
    for name in all {
        let Some(p) = config::profiles::resolve(&name, &user) else {
            continue;
        };
        let inst = match (p.is_agent(), installed(&p, env)) {
            (false, _) => "-".to_owned(),
            (true, Some(_)) => "yes".to_owned(),
            (true, None) => "no".to_owned(),
        };
        let net = if p.is_agent() {
            format!("filtered: {}", p.domains.join(", "))
        } else {
            "none".to_owned()
        };
        let about = match &p.base {
            Some(_) => format!("(user-defined) {}", p.about),
            None => p.about.clone(),
        };
        writeln!(out, "{:<13} {:<10} {:<40} {net}", p.name, inst, about)?;
    }
    writeln!(
        out,
        "\n`agentbox profile show NAME` prints one in full, with your config applied."
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn profile_show(name: &str, env: &Env) -> Result<ExitCode> {
    // What `agentbox run --profile NAME` would get with the user's config and no flag: the
    // same resolve as `run` (the project's file is left out: it depends on the directory).
    let files = config::read(env, None)?;
    let p = config::profiles::resolve(name, &files.user.profile).ok_or_else(|| {
        let mut all: Vec<String> = profile::names().iter().map(|s| (*s).to_owned()).collect();
        all.extend(config::profiles::names(&files.user.profile));
        Fail::hint(
            format!("no profile named {name:?}"),
            format!("one of: {}", all.join(", ")),
        )
    })?;
    let mine = files.user.profile.contains_key(name);
    let args = SandboxArgs {
        profile: Some(name.to_owned()),
        ..SandboxArgs::default()
    };
    let first = p.commands.first().map_or("true", String::as_str);
    let (policy, _) = config::resolve(args, vec![first.into()], false, &files)?;
    let mut out = std::io::stdout().lock();
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(", ")
        }
    };
    writeln!(out, "profile {} ({})", p.name, p.about)?;
    if let Some(base) = &p.base {
        let chain = config::profiles::chain(&p.name, &files.user.profile);
        writeln!(
            out,
            "  user-defined:   based on {base} ({})",
            chain.join(" -> ")
        )?;
    }
    writeln!(out, "  commands:       {}", list(&p.commands))?;
    match installed(&p, env) {
        Some((c, path)) => writeln!(out, "  installed:      {c} -> {}", path.display())?,
        None if p.is_agent() => writeln!(out, "  installed:      no")?,
        None => {}
    }
    if p.is_agent() {
        let data = env.data_home(&files.home);
        writeln!(
            out,
            "  home inside:    {} (persistent, read-write)",
            data.join("agentbox/home").join(&p.name).display()
        )?;
    }
    writeln!(out, "  state (rw):     {}", list(&p.state))?;
    writeln!(out, "  runtime (ro):   {}", list(&p.runtime))?;
    let project: Vec<String> = profile::project_files_of(p.builtin_name())
        .iter()
        .map(|r| match r.guard {
            crate::rules::Guard::ReadOnly => r.path.to_owned(),
            crate::rules::Guard::Audit => format!("{} (watched)", r.path),
        })
        .collect();
    writeln!(
        out,
        "  project files:  {} (read-only in every run, whatever the agent; watched ones stay \
         writable and are reported at exit)",
        list(&project)
    )?;
    let set: Vec<String> = p.always.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let quiet: Vec<String> = p.quiet.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // The profile's fixed variables have their own lines; the rest is what is passed.
    let env_passed: Vec<String> = policy
        .env
        .iter()
        .filter_map(|e| match e {
            EnvPass::IfSet(n) | EnvPass::Inherit(n) => Some(n.to_string_lossy().into_owned()),
            EnvPass::Set(k, v) => {
                let kv = format!("{}={}", k.to_string_lossy(), v.to_string_lossy());
                (!set.contains(&kv) && !quiet.contains(&kv)).then_some(kv)
            }
        })
        .collect();
    writeln!(out, "  env passed:     {}", list(&env_passed))?;
    // The keys the credential broker holds (when set on the host): never passed, a phantom
    // instead, and the base URL pointing at the broker.
    let brokered: Vec<String> = policy
        .credentials
        .iter()
        .map(|c| {
            let how = if c.bearer { "as Bearer " } else { "" };
            format!(
                "{} ({how}in {}, to {}; base URL from {})",
                c.var, c.header, c.upstream, c.base_url_var
            )
        })
        .collect();
    match (brokered.is_empty(), p.credentials.is_empty()) {
        (false, _) => writeln!(out, "  keys brokered:  {}", brokered.join("; "))?,
        (true, false) => writeln!(
            out,
            "  keys brokered:  none: the broker is off here (it needs --net filtered, and no \
             --no-broker); the keys are then passed only with --env NAME"
        )?,
        (true, true) => {}
    }
    writeln!(out, "  env set:        {}", list(&set))?;
    writeln!(out, "  env set (no telemetry): {}", list(&quiet))?;
    let net = match policy.net {
        NetMode::None => "none",
        NetMode::Filtered => "filtered",
        NetMode::Host => "host",
    };
    writeln!(out, "  network:        {net} by default")?;
    writeln!(out, "  allowed hosts:  {}", list(&policy.filter.allow))?;
    writeln!(
        out,
        "  telemetry/updates (--allow-telemetry): {}",
        list(&p.telemetry)
    )?;
    let extra = |access| -> Vec<String> {
        policy
            .extra
            .iter()
            .filter(|e| e.access == access)
            .map(|e| e.path.display().to_string())
            .collect()
    };
    writeln!(out, "  extra --ro:     {}", list(&extra(Access::ReadOnly)))?;
    writeln!(out, "  extra --rw:     {}", list(&extra(Access::ReadWrite)))?;
    writeln!(out, "  extra --hide:   {}", list(&policy.hide))?;
    writeln!(
        out,
        "  nested sandbox: {}",
        match policy.allow.nested {
            // Said here too: the plan's note about it is hidden by -q.
            true =>
                "allowed: no Landlock (it forbids the nested sandbox's mounts) and a \
                     writable /proc, so bwrap's mounts are the only wall",
            false => "no (Landlock limits writes as a second wall where the kernel has it)",
        }
    )?;
    for n in &p.notes {
        writeln!(out, "  note: {n}")?;
    }
    if mine {
        writeln!(
            out,
            "  (with [profile.{name}] from {})",
            config::dir(env)?.join("config.toml").display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn shell_init(shell: InitShell, env: &Env) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "# agentbox: run the installed agents in the sandbox")?;
    for name in profile::names() {
        let Some(p) = profile::builtin(name) else {
            continue;
        };
        for c in p.commands.iter().filter(|c| env.which(c).is_some()) {
            match shell {
                InitShell::Bash | InitShell::Zsh => {
                    writeln!(out, "alias {c}='agentbox run -- {c}'")?
                }
                InitShell::Fish => writeln!(out, "function {c}; agentbox run -- {c} $argv; end")?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "agentbox", &mut buf);
    crate::rough::stdout(&buf)?;
    Ok(ExitCode::SUCCESS)
}

pub fn man() -> Result<ExitCode> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
    crate::rough::stdout(&buf)?;
    Ok(ExitCode::SUCCESS)
}
