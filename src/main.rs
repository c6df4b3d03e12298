//! agentbox: parse, dispatch, print the error once, exit with the right code.
#![deny(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use agentbox::cli::{Cli, Command, ProfileAction, RunArgs};
use agentbox::error::{EXIT_AGENTBOX, classify};
use agentbox::hostenv::Env;
use agentbox::text::terminal;
use agentbox::{bwrap, commands, config, host, launch, selftest};
use anyhow::Result;
use clap::Parser;

fn main() -> ExitCode {
    // The shim inside every sandbox: its fixed argv is read without clap (see `shim`).
    if let Some(s) = agentbox::shim::args(std::env::args_os().skip(1)) {
        let result = launch::exec_shim(s.tty, s.landlock.then_some(&s.write[..]), &s.command);
        return finish(result, false);
    }
    // The relay lives as long as the sandbox: its argv, always the plan's exact form, is read
    // without building clap's parser of every subcommand (0.6-0.8 MiB less of its RSS for the
    // whole run; anything else falls through to clap).
    if let Some((ctx, command)) = agentbox::cli::relay_argv(std::env::args_os()) {
        return finish(agentbox::net::relay::relay_main(&ctx, &command), false);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if let Some(f) = agentbox::cli::unknown_option(&e) {
                eprintln!("agentbox: error: {f}");
                if let Some(h) = &f.hint {
                    eprintln!("hint: {h}");
                }
                return ExitCode::from(f.code);
            }
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_AGENTBOX } else { 0 });
        }
    };
    let output = Output::from(&cli);
    // The commands whose only output is what they print: a closed stdout ends them quietly.
    let prints = match &cli.command {
        Command::Run(r) => r.dry_run || r.tree,
        Command::Profiles
        | Command::Profile { .. }
        | Command::ShellInit { .. }
        | Command::Completions { .. }
        | Command::Man
        | Command::Doctor { .. } => true,
        _ => false,
    };
    // The one read of agentbox's own environment; everything below receives it.
    let env = Env::read();
    let result = match cli.command {
        Command::Run(args) => run(args, output, &env),
        Command::Test(mut args) => {
            // As `run` (which the test starts with the same flags) finds the project.
            if let Some(note) = host::toplevel::settle(&mut args.sandbox.project, &env)
                && !output.quiet
            {
                eprintln!("agentbox: note: {}", terminal(&note));
            }
            selftest::run(args, &env)
        }
        Command::Probe { ctx, only } => selftest::probe_main(&ctx, only.as_deref()),
        Command::Sleeper { marker } => selftest::sleeper_main(&marker),
        Command::Exec {
            tty,
            landlock,
            write,
            command,
        } => launch::exec_shim(tty, landlock.then_some(&write[..]), &command),
        Command::Relay { ctx, command } => agentbox::net::relay::relay_main(&ctx, &command),
        Command::Ports {
            tty,
            ports,
            command,
        } => agentbox::ports::helper::helper_main(tty, ports, &command),
        Command::Doctor { json, bwrap } => agentbox::doctor::run(json, bwrap.as_deref(), &env),
        Command::Profiles => commands::profiles(&env),
        Command::Profile {
            action: ProfileAction::Show { name },
        } => commands::profile_show(&name, &env),
        Command::Trust { project, yes } => agentbox::projectfile::trust(project, yes, &env),
        Command::Init { project } => agentbox::projectfile::init(project, &env),
        Command::ImportLogin { profile, force } => agentbox::login::import(&profile, force, &env),
        Command::Allow {
            hosts,
            profile,
            project,
            from_learn,
            private,
        } => agentbox::allow::run(
            agentbox::allow::Request {
                hosts,
                from_learn,
                profile,
                project: match project {
                    true => Some(".".into()),
                    false => None,
                },
                key: match private {
                    true => agentbox::allow::Key::AllowPrivateHosts,
                    false => agentbox::allow::Key::AllowDomains,
                },
            },
            &env,
        ),
        Command::ShellInit { shell } => commands::shell_init(shell, &env),
        Command::Completions { shell } => commands::completions(shell),
        Command::Man => commands::man(),
        Command::Cache { action: None } => agentbox::caches::list(&env),
        Command::Cache {
            action: Some(agentbox::cli::CacheAction::Clean { names }),
        } => agentbox::caches::clean(&names, &env),
    };
    finish(result, prints)
}

/// The exit code of a command's `result`, its error printed once. `prints`: a command whose
/// only output is what it prints (a closed stdout ends it quietly).
fn finish(result: Result<ExitCode>, prints: bool) -> ExitCode {
    match result {
        Ok(code) => code,
        // The reader of stdout went away (`agentbox man | head`): nothing to report.
        Err(err) if prints && agentbox::rough::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => failed(&err),
    }
}

/// Prints the error once (and its hint) and gives its exit code.
fn failed(err: &anyhow::Error) -> ExitCode {
    let (code, hint) = classify(err);
    // Errors and hints may quote project paths: no control character reaches the terminal.
    eprintln!("agentbox: error: {}", terminal(&format!("{err:#}")));
    if let Some(hint) = hint {
        eprintln!("hint: {}", terminal(hint));
    }
    ExitCode::from(code)
}

/// The run's lock on its writable roots (the project and each `--rw` path, canonical; a path
/// that does not resolve is left to the probe, which says so).
fn lock_roots(policy: &agentbox::policy::Policy, env: &Env) -> Result<agentbox::runlock::RunLock> {
    let project = match &policy.project {
        Some(p) => p.clone(),
        None => env.cwd()?.to_owned(),
    };
    let rw = policy
        .extra
        .iter()
        .filter(|e| e.access == agentbox::policy::Access::ReadWrite)
        .map(|e| e.path.clone());
    let roots: Vec<std::path::PathBuf> = std::iter::once(project)
        .chain(rw)
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    let uid = rustix::process::geteuid().as_raw();
    agentbox::runlock::lock(&roots, &host::runtime_base_of(env, uid))
}

/// After the probe: the roots it scanned are the ones locked (a path resolved twice could
/// differ), and a linked worktree's common git dir, which the sandbox gets read-write, is
/// locked too (a sandbox in the main checkout shares it).
fn lock_more(
    lock: &agentbox::runlock::RunLock,
    facts: &host::HostFacts,
) -> Result<Option<agentbox::runlock::RunLock>> {
    let mut scanned: Vec<&std::path::Path> = facts
        .project
        .roots
        .iter()
        .map(|r| r.path.as_path())
        .collect();
    let mut locked: Vec<&std::path::Path> = lock.roots.iter().map(|p| p.as_path()).collect();
    scanned.sort();
    locked.sort();
    if scanned != locked {
        return Err(agentbox::error::Fail::hint(
            "the project's path resolved to another place between the lock and the scan",
            "run again; if it persists, pass --project and --rw paths that hold no symlink",
        )
        .into());
    }
    let commons = launch::linked_commons(facts);
    if commons.is_empty() {
        return Ok(None);
    }
    agentbox::runlock::lock(&commons, &host::runtime_base(&facts.user)).map(Some)
}

/// How chatty `run` is: `-v` shows each decision, `-q` hides notes.
#[derive(Clone, Copy)]
struct Output {
    verbose: bool,
    quiet: bool,
}

impl Output {
    fn from(cli: &Cli) -> Output {
        Output {
            verbose: cli.verbose,
            quiet: cli.quiet,
        }
    }
}

fn run(mut args: RunArgs, out: Output, env: &Env) -> Result<ExitCode> {
    // Started in a subdirectory of a checkout: the project is its top level.
    if let Some(note) = host::toplevel::settle(&mut args.sandbox.project, env)
        && !out.quiet
    {
        eprintln!("agentbox: note: {}", terminal(&note));
    }
    let files = config::read_for(&args.sandbox, env)?;
    let project_dir = args.sandbox.project.clone();
    let (mut policy, warnings) =
        config::resolve(args.sandbox, args.command, args.bind_self, &files)?;
    policy.audit_json = args.audit_json;
    policy.filter.sources =
        agentbox::pickup::sources(env, project_dir.as_deref(), &policy.profile.name);
    for w in &warnings {
        eprintln!("agentbox: warning: {}", terminal(w));
    }
    // Before the scan: no other sandbox may change the tree between the scan and the mounts.
    let lock = match args.dry_run || args.tree {
        true => None,
        false => Some(lock_roots(&policy, env)?),
    };
    let facts = host::HostFacts::probe(&policy, env)?;
    let registry_notes = host::registry::allow(&mut policy, &facts)?;
    let _more = match &lock {
        Some(l) => lock_more(l, &facts)?,
        None => None,
    };
    // Known reasons a sandbox cannot start, explained before bwrap fails with its own words.
    agentbox::doctor::preflight(&facts.bwrap.path, facts.bwrap.setuid, facts.user.uid)?;
    let net = launch::net_session(&policy, &facts)?;
    if let Some(n) = &net {
        let brokered: Vec<&str> = n.broker.iter().flat_map(|r| r.vars()).collect();
        let apis: Vec<&str> = n.broker.iter().map(|r| r.upstream.host.as_str()).collect();
        let dropped = policy.filter.drop_login_hosts(&brokered, &apis);
        if !dropped.is_empty() && !out.quiet {
            eprintln!(
                "agentbox: note: {} not allowed while the broker holds the profile's key: the \
                 profile's other hosts (logins, APIs whose key is not set) take another account's \
                 login or key, a way out (--allow-domain HOST allows one)",
                terminal(&dropped.join(", "))
            );
        }
    }
    let plan = bwrap::plan_run(&policy, &facts, net.as_ref())?;
    for w in &plan.warnings {
        eprintln!("agentbox: warning: {}", terminal(w));
    }
    if args.tree {
        let color = std::io::IsTerminal::is_terminal(&std::io::stdout())
            && env.var("NO_COLOR").is_none_or(|v| v.is_empty());
        std::io::stdout().write_all(bwrap::tree::render(&plan, color).as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.dry_run {
        let script = agentbox::rough::dry_run_script(bwrap::script(&plan), &policy);
        std::io::stdout().write_all(script.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    if !out.quiet {
        for n in registry_notes.iter().chain(&plan.notes) {
            eprintln!("agentbox: note: {}", terminal(n));
        }
    }
    if out.verbose {
        for s in &plan.steps {
            let words: Vec<String> = bwrap::step_words(&s.op);
            eprintln!("agentbox: {:<60} # {}", words.join(" "), terminal(&s.why));
        }
    }
    launch::run(&plan, &policy, &facts, net.as_ref())
}
