//! Config users write: profiles of their own in the user's config, `agentbox init`,
//! `agentbox trust`'s preview and consent, `agentbox import-login`.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};

use crate::harness::{Out, World, each_user};

fn args<'a>(a: &'a [&'a str]) -> Vec<&'a OsStr> {
    a.iter().map(OsStr::new).collect()
}

fn user_config(w: &World, text: &str) {
    w.write("home/.config/agentbox/config.toml", text);
}

#[test]
fn a_profile_of_ones_own_is_listed_selected_and_applied() {
    each_user(|w| {
        w.write("home/shared/f", "shared-file\n");
        user_config(
            w,
            "[profile.tools]\nextends = \"generic\"\ncommands = [\"dash\"]\n\
             env = [\"FOO=from-profile\"]\nro = [\"~/shared\"]\n",
        );
        let list = w.run_args(&args(&["profiles"])).ok();
        let line = list.lines().find(|l| l.starts_with("tools ")).unwrap();
        assert!(
            line.contains("(user-defined) yours, based on generic"),
            "{list}"
        );
        let show = w.run_args(&args(&["profile", "show", "tools"])).ok();
        assert!(
            show.contains("based on generic (tools -> generic)"),
            "{show}"
        );
        // Selected by its command, and its settings apply.
        let script = "echo foo=${FOO:-unset}; cat ~/shared/f || echo no-shared";
        let out = w.run_args(&args(&["run", "--", "dash", "-c", script])).ok();
        assert!(
            out.contains("foo=from-profile") && out.contains("shared-file"),
            "{out}"
        );
        // Positive control: another command does not get them.
        let out = w.run_args(&args(&["run", "--", "sh", "-c", script])).ok();
        assert!(
            out.contains("foo=unset") && out.contains("no-shared"),
            "{out}"
        );
        // By name too.
        let out = w.sh(&["--profile", "tools"], script).ok();
        assert!(out.contains("foo=from-profile"), "{out}");
    });
}

#[test]
fn a_bad_profile_section_is_an_error_with_its_place() {
    each_user(|w| {
        let file = w.home.join(".config/agentbox/config.toml");
        for (text, want) in [
            (
                "[profile.tools]\ncomands = [\"x\"]\n",
                ":2:1: unknown field `comands`",
            ),
            (
                "[profile.tools]\nextends = \"nope\"\n",
                ":2:1: [profile.tools] extends \"nope\": no such profile",
            ),
            (
                "[profile.a]\nextends = \"b\"\n[profile.b]\nextends = \"a\"\n",
                ":2:1: [profile.a]: extends goes round in a circle",
            ),
            (
                "[profile.empty]\n",
                ":1:10: [profile.empty] defines nothing",
            ),
        ] {
            user_config(w, text);
            for cmd in [&["profiles"][..], &["run", "--", "true"][..]] {
                let out = w.run_args(&args(cmd));
                assert_eq!(out.code(), 125, "{text}: {}", out.stderr());
                let want = format!("{}{want}", file.display());
                assert!(out.stderr().contains(&want), "{text}: {}", out.stderr());
            }
        }
    });
}

#[test]
fn init_writes_a_commented_file_once_and_never_through_a_symlink() {
    each_user(|w| {
        w.host_sh("git init -q && mkdir -p sub && echo K=1 > .env && touch Cargo.toml")
            .ok();
        let out = Out(w
            .cmd(&args(&["init"]))
            .current_dir(w.project.join("sub"))
            .output()
            .unwrap());
        out.ok();
        assert!(out.stderr().contains("agentbox trust"), "{}", out.stderr());
        let file = w.project.join(".agentbox.toml");
        let text = fs::read_to_string(&file).unwrap();
        assert!(
            text.contains("#   .env  (") && text.contains("# Rust (Cargo.toml)"),
            "{text}"
        );
        // It is a valid file that changes nothing, untrusted or not.
        w.sh(&[], "true").ok();
        // Once: an existing file stays as it is.
        fs::write(&file, "# mine\n").unwrap();
        let out = w.run_args(&args(&["init"]));
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert_eq!(fs::read_to_string(&file).unwrap(), "# mine\n");
        // A symlink planted where the file goes (by an earlier run) is not written through.
        fs::remove_file(&file).unwrap();
        let victim = w.home.join("victim");
        symlink(&victim, &file).unwrap();
        // Positive control: an ordinary write follows it.
        w.host_sh("echo followed > .agentbox.toml").ok();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "followed\n");
        fs::remove_file(&victim).unwrap();
        let out = w.run_args(&args(&["init"]));
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(!victim.exists());
    });
}

#[test]
fn trust_shows_what_it_loosens_and_asks_before_recording() {
    each_user(|w| {
        w.write("home/extra/f", "x");
        w.write(
            "home/src/project/.agentbox.toml",
            &format!(
                "hide = [\"a\"]\nrw = [\"{}\"]\n",
                w.home.join("extra").display()
            ),
        );
        let probe = format!("echo w > {}/extra/g && echo wrote", w.home.display());
        // Untrusted: the rw path is ignored.
        let out = w.sh(&[], &probe);
        assert!(out.stderr().contains("ignoring rw"), "{}", out.stderr());
        assert!(!w.home.join("extra/g").exists());
        // No terminal and no --yes: shown, not recorded.
        let out = w.run_args(&args(&["trust"]));
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(
            out.stdout()
                .contains("- rw: more paths the agent may WRITE: ")
                && out.stdout().contains(".agentbox.toml")
                && out
                    .stderr()
                    .contains("hint: review the file, then: agentbox trust --yes"),
            "{}\n{}",
            out.stdout(),
            out.stderr()
        );
        assert!(w.sh(&[], "true").stderr().contains("ignoring rw"));
        // --yes: shown and recorded; the rw path now counts.
        let out = w.run_args(&args(&["trust", "--yes"]));
        assert!(out.ok().contains("- rw: "), "{}", out.stdout());
        let out = w.sh(&[], &probe);
        assert!(out.ok().contains("wrote"), "{}", out.stderr());
        assert!(w.home.join("extra/g").exists());
    });
}

#[test]
fn import_login_copies_once_mode_0600_and_never_through_a_symlink() {
    each_user(|w| {
        w.write("home/.codex/auth.json", "{\"token\":\"t1\"}");
        let dest = w
            .home
            .join(".local/share/agentbox/home/codex/.codex/auth.json");
        let out = w.run_args(&args(&["import-login", "codex"]));
        out.ok();
        assert!(out.stderr().contains("copied ") && out.stderr().contains("(0600)"));
        assert_eq!(fs::read_to_string(&dest).unwrap(), "{\"token\":\"t1\"}");
        let meta = fs::metadata(&dest).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(meta.uid(), w.user.map_or(0, |u| u.uid));
        // The agent sees it in its home.
        let out = w.sh(&["--profile", "codex"], "cat ~/.codex/auth.json").ok();
        assert!(out.contains("t1"), "{out}");
        // Once: a second import refuses, --force replaces.
        w.write("home/.codex/auth.json", "{\"token\":\"t2\"}");
        let out = w.run_args(&args(&["import-login", "codex"]));
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(out.stderr().contains("--force"), "{}", out.stderr());
        assert!(fs::read_to_string(&dest).unwrap().contains("t1"));
        w.run_args(&args(&["import-login", "codex", "--force"]))
            .ok();
        assert!(fs::read_to_string(&dest).unwrap().contains("t2"));
        // The sandbox replaced the file with a symlink to the user's rc file.
        let victim = w.write("home/.bashrc", "rc\n");
        fs::remove_file(&dest).unwrap();
        symlink(&victim, &dest).unwrap();
        // Positive control: a plain copy follows it.
        w.host_sh(&format!("cp ~/.codex/auth.json {}", dest.display()))
            .ok();
        assert!(fs::read_to_string(&victim).unwrap().contains("t2"));
        fs::write(&victim, "rc\n").unwrap();
        let out = w.run_args(&args(&["import-login", "codex", "--force"]));
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "rc\n");
        // Nothing to import: said so, with how to log in.
        let out = w.run_args(&args(&["import-login", "gemini"]));
        assert_eq!(out.code(), 125);
        assert!(out.stderr().contains("no gemini login"), "{}", out.stderr());
    });
}

/// On a terminal, `trust` asks: "n" records nothing, "y" records the file.
#[test]
fn trust_on_a_terminal_asks_first() {
    each_user(|w| {
        let _server = w.tmux_server();
        w.write("home/src/project/.agentbox.toml", "env = [\"FOO=bar\"]\n");
        let bin = crate::harness::bin();
        let trust = |answer: &str, name: &str| {
            let pane = format!(
                "{} trust > {name}.out; echo $? > {name}.rc; sleep 30",
                crate::harness::shell_quote(bin)
            );
            let st = w
                .tmux(&[
                    "new-session",
                    "-d",
                    "-s",
                    name,
                    "-x",
                    "120",
                    "-y",
                    "30",
                    &pane,
                ])
                .status()
                .unwrap();
            assert!(st.success());
            // The question is asked before anything is recorded.
            let asked = (0..200).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                let screen = w
                    .tmux(&["capture-pane", "-p", "-t", name])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&screen.stdout).contains("[y/N]")
                    || fs::read_to_string(w.project.join(format!("{name}.out")))
                        .is_ok_and(|s| s.contains("[y/N]"))
            });
            assert!(asked, "never asked");
            w.tmux(&["send-keys", "-t", name, answer, "Enter"])
                .status()
                .unwrap();
            let rc = crate::harness::wait_for(
                &w.project.join(format!("{name}.rc")),
                std::time::Duration::from_secs(10),
            );
            let _ = w.tmux(&["kill-session", "-t", name]).status();
            let out = fs::read_to_string(w.project.join(format!("{name}.out"))).unwrap();
            (rc.unwrap_or_default(), out)
        };
        let probe = "echo foo=${FOO:-unset}";
        let (rc, out) = trust("n", "no");
        assert_eq!(rc, "1\n", "{out}");
        assert!(
            out.contains("- env: host variables passed in: FOO=bar"),
            "{out}"
        );
        assert!(w.sh(&[], probe).ok().contains("foo=unset"));
        let (rc, out) = trust("y", "yes");
        assert_eq!(rc, "0\n", "{out}");
        assert!(w.sh(&[], probe).ok().contains("foo=bar"));
        let _ = w.tmux(&["kill-server"]).status();
    });
}
