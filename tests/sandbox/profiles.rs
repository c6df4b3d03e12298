//! Agent profiles, config files and the commands around them, with a stand-in agent: a
//! script installed the way Claude Code's native installer does it (`~/.local/bin/claude` ->
//! `~/.local/share/claude/versions/X`), run through an interpreter that also lives in the home.
//! (tests/agents/run.sh runs the real agents.)

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};

use crate::harness::{Out, PATH, World, each_user};

/// Installs a stand-in `claude` in the home, run by `#!/usr/bin/env mysh` where `mysh` is a
/// script in ~/.tools/bin: both must be made visible by the profile. Returns the PATH to use.
fn install_fake_claude(w: &World) -> String {
    let mysh = w.write("home/.tools/bin/mysh", "#!/bin/sh\nexec /bin/sh \"$@\"\n");
    fs::set_permissions(&mysh, fs::Permissions::from_mode(0o755)).unwrap();
    let body = "#!/usr/bin/env mysh\n\
                if [ -f ~/.claude.json ]; then echo \"state: $(cat ~/.claude.json)\"; fi\n\
                echo '{\"login\":\"ok\"}' > ~/.claude.json.tmp && mv ~/.claude.json.tmp ~/.claude.json && echo renamed\n\
                cat ~/.ssh/id_rsa 2>/dev/null || echo no-ssh\n\
                echo \"key=${ANTHROPIC_API_KEY:-unset} telemetry=${DISABLE_TELEMETRY:-on} other=${OTHER_SECRET:-unset}\"\n";
    let v = w.write("home/.local/share/claude/versions/1.0.0", body);
    fs::set_permissions(&v, fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(w.home.join(".local/bin")).unwrap();
    symlink(
        "../share/claude/versions/1.0.0",
        w.home.join(".local/bin/claude"),
    )
    .unwrap();
    w.chown_all();
    format!(
        "{}:{}:{PATH}",
        w.home.join(".local/bin").display(),
        w.home.join(".tools/bin").display()
    )
}

fn run_claude(w: &World, path: &str, extra: &[&str]) -> Out {
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend(["--", "claude"]);
    Out(w
        .cmd(&args.iter().map(OsStr::new).collect::<Vec<_>>())
        .env("PATH", path)
        .env("ANTHROPIC_API_KEY", "sk-test")
        .env("OTHER_SECRET", "nope")
        .output()
        .unwrap())
}

#[test]
fn the_claude_profile_runs_keeps_its_login_and_nothing_else() {
    each_user(|w| {
        w.write("home/.ssh/id_rsa", "PRIVATE KEY");
        let path = install_fake_claude(w);
        let first = run_claude(w, &path, &[]);
        let out = first.ok();
        assert!(out.contains("renamed"), "{out}\n{}", first.stderr());
        assert!(out.contains("no-ssh"), "{out}");
        // Its key is the credential broker's (a phantom inside), other secrets do not pass;
        // telemetry is off unless asked for.
        assert!(out.contains("key=sk-agentbox-phantom-"), "{out}");
        assert!(out.contains("telemetry=1 other=unset"), "{out}");
        assert!(!out.contains("sk-test"), "{out}");
        // The login (written by rename onto ~/.claude.json) survives into the next run...
        let second = run_claude(w, &path, &[]).ok();
        assert!(second.contains("state: {\"login\":\"ok\"}"), "{second}");
        // ... in agentbox's home for the agent, not in the real home.
        assert!(!w.home.join(".claude.json").exists());
        let kept = w
            .home
            .join(".local/share/agentbox/home/claude/.claude.json");
        assert_eq!(fs::read_to_string(kept).unwrap(), "{\"login\":\"ok\"}\n");
        let out = run_claude(w, &path, &["--allow-telemetry"]).ok();
        assert!(out.contains("telemetry=on"), "{out}");
        // Control: without a profile, the command in the home is not visible, and agentbox
        // says which flags would show it.
        let bare = run_claude(w, &path, &["--no-profile"]);
        assert_eq!(bare.code(), 127, "{}", bare.stderr());
        assert!(
            bare.stderr().contains("hint: agentbox run --ro"),
            "{}",
            bare.stderr()
        );
    });
}

#[test]
fn profiles_shell_init_completions_and_man() {
    each_user(|w| {
        let path = install_fake_claude(w);
        let cmd = |args: &[&str]| {
            Out(w
                .cmd(&args.iter().map(OsStr::new).collect::<Vec<_>>())
                .env("PATH", &path)
                .output()
                .unwrap())
        };
        let out = cmd(&["profiles"]).ok();
        let claude = out.lines().find(|l| l.starts_with("claude ")).unwrap();
        assert!(
            claude.contains("yes") && claude.contains("api.anthropic.com"),
            "{claude}"
        );
        assert!(
            out.lines()
                .any(|l| l.starts_with("codex ") && l.contains(" no ")),
            "{out}"
        );
        let out = cmd(&["profile", "show", "claude"]).ok();
        assert!(
            out.contains("ANTHROPIC_API_KEY") && out.contains("statsig"),
            "{out}"
        );
        // The keys the broker holds are named, with where each goes.
        assert!(
            out.contains(
                "keys brokered:  ANTHROPIC_API_KEY (in x-api-key, to https://api.anthropic.com"
            ),
            "{out}"
        );
        assert_eq!(cmd(&["profile", "show", "nope"]).code(), 125);
        let out = cmd(&["shell-init", "bash"]).ok();
        assert!(
            out.contains("alias claude='agentbox run -- claude'"),
            "{out}"
        );
        assert!(!out.contains("codex"), "only installed agents: {out}");
        let out = cmd(&["shell-init", "fish"]).ok();
        assert!(
            out.contains("function claude; agentbox run -- claude $argv; end"),
            "{out}"
        );
        assert!(cmd(&["completions", "bash"]).ok().contains("agentbox"));
        assert!(cmd(&["man"]).ok().contains(".TH agentbox"));
    });
}

#[test]
fn config_files_layer_under_flags_and_errors_are_located() {
    each_user(|w| {
        w.write("home/src/project/notes.secret", "S");
        w.write("home/src/project/data.csv", "a,b");
        w.write(
            "home/.config/agentbox/config.toml",
            "[defaults]\nhide = [\"*.secret\"]\n",
        );
        let out = w.sh(&[], "cat notes.secret data.csv; echo").ok();
        assert_eq!(out, "a,b\n", "the user's hide pattern applies");

        // A project file may only tighten until it is trusted.
        w.write(
            "home/src/project/.agentbox.toml",
            "hide = [\"*.csv\"]\nunhide = [\"*.secret\"]\n",
        );
        let out = w.sh(&[], "cat notes.secret data.csv; echo");
        assert_eq!(out.ok(), "\n");
        assert!(out.stderr().contains("ignoring unhide"), "{}", out.stderr());
        assert!(out.stderr().contains("agentbox trust"), "{}", out.stderr());
        w.run_args(&["trust", "--yes"].map(OsStr::new)).ok();
        let out = w.sh(&[], "cat notes.secret data.csv; echo");
        assert_eq!(out.ok(), "S\n");
        // Any change makes it untrusted again, and says so.
        w.write(
            "home/src/project/.agentbox.toml",
            "hide = [\"*.csv\"]\nunhide = [\"*.secret\", \".env\"]\n",
        );
        let out = w.sh(&[], "true");
        assert!(
            out.stderr().contains("changed since you trusted it"),
            "{}",
            out.stderr()
        );
        // The project file is read-only inside.
        let out = w.sh(
            &[],
            "echo 'unhide=[\"*\"]' >> .agentbox.toml 2>/dev/null && echo wrote; true",
        );
        assert_eq!(out.ok(), "");

        // Errors name the file, line and column; unknown keys are errors.
        let cfg = w.write(
            "home/.config/agentbox/config.toml",
            "[defaults]\nhide = [\"*.secret\"]\nallow_everything = true\n",
        );
        let out = w.sh(&[], "true");
        assert_eq!(out.code(), 125);
        let want = format!("{}:3:1:", cfg.display());
        assert!(out.stderr().contains(&want), "{}", out.stderr());
        assert!(
            out.stderr().contains("allow_everything"),
            "{}",
            out.stderr()
        );
        // The user's config is never visible inside.
        fs::remove_file(&cfg).unwrap();
        w.write("home/.config/agentbox/config.toml", "[defaults]\n");
        let out = w
            .sh(&[], "cat ~/.config/agentbox/config.toml 2>&1; true")
            .ok();
        assert!(out.contains("No such file"), "{out}");
    });
}

#[test]
fn ssh_agent_and_docker_hand_over_only_their_socket() {
    each_user(|w| {
        w.write("home/.ssh/id_rsa", "PRIVATE KEY");
        w.write("home/.ssh/known_hosts", "github.com ssh-ed25519 AAAA\n");
        let agent = w.home.join("agent.sock");
        let _l = std::os::unix::net::UnixListener::bind(&agent).unwrap();
        let docker = w.home.join("docker.sock");
        let _d = std::os::unix::net::UnixListener::bind(&docker).unwrap();
        w.chown_all();
        let connect = "perl -MIO::Socket::UNIX -e 'print IO::Socket::UNIX->new(Peer => $ARGV[0]) ? \"up \" : \"down \"'";
        let script = format!(
            "{connect} \"$SSH_AUTH_SOCK\"; cat ~/.ssh/known_hosts; cat ~/.ssh/id_rsa 2>/dev/null || echo no-key; \
             {connect} \"${{DOCKER_HOST#unix://}}\"; echo"
        );
        let out = Out(w
            .cmd(
                &[
                    "run",
                    "--ssh-agent=raw",
                    "--docker=raw",
                    "--",
                    "sh",
                    "-c",
                    &script,
                ]
                .map(OsStr::new),
            )
            .env("SSH_AUTH_SOCK", &agent)
            .env("DOCKER_HOST", format!("unix://{}", docker.display()))
            .output()
            .unwrap());
        let stdout = out.ok();
        assert_eq!(
            stdout,
            "up github.com ssh-ed25519 AAAA\nno-key\nup \n",
            "{}",
            out.stderr()
        );
        assert!(out.stderr().contains("--docker=raw:"), "{}", out.stderr());
        assert!(
            out.stderr().contains("--ssh-agent=raw:"),
            "{}",
            out.stderr()
        );
        // Control: without the flags neither socket is there.
        let out = Out(w
            .cmd(
                &[
                    "run",
                    "--",
                    "sh",
                    "-c",
                    &format!("{connect} {}; echo", agent.display()),
                ]
                .map(OsStr::new),
            )
            .output()
            .unwrap());
        assert_eq!(out.ok(), "down \n");
        // Asking for an agent that is not running is a clear error.
        let out = Out(w
            .cmd(&["run", "--ssh-agent", "--ssh-key", "k", "--", "true"].map(OsStr::new))
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .unwrap());
        assert_eq!(out.code(), 125);
        assert!(out.stderr().contains("ssh-add"), "{}", out.stderr());
    });
}
