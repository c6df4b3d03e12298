//! Attacks on what issue 12 added, from a security review: each is planted the way a sandbox
//! could plant it (in a run, in the project) and exploited in a later run or on the host.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use std::ffi::OsStr;

use crate::harness::{Out, each_user};

fn exe(path: &Path, body: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// `~/.local/bin/mytool` links to a build product in the project (`ln -s` after a build, the
/// usual way to try a tool one writes). The agent rewrites that product with a `#!` line
/// naming the user's key: the next run must not show the key as "the interpreter".
#[test]
fn a_shebang_written_by_the_sandbox_shows_no_file_of_the_home() {
    each_user(|w| {
        let key = w.home.join(".ssh/id_rsa");
        w.write("home/.ssh/id_rsa", "PRIVATE-KEY-MATERIAL\n");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        let product = w.project.join("target/mytool");
        exe(&product, "#!/bin/sh\necho built\n");
        let bin = w.home.join(".local/bin");
        fs::create_dir_all(&bin).unwrap();
        symlink(&product, bin.join("mytool")).unwrap();
        w.chown_all();
        // Control: on the host the key is readable.
        assert!(w.host_sh("cat ~/.ssh/id_rsa").ok().contains("PRIVATE-KEY"));
        // Run 1: the agent rewrites the product; its `#!` names the key.
        let plant = format!(
            "printf '#!{}\\necho x\\n' > target/mytool && echo planted",
            key.display()
        );
        assert!(w.sh(&[], &plant).ok().contains("planted"));
        assert!(
            fs::read_to_string(&product)
                .unwrap()
                .contains(".ssh/id_rsa")
        );
        // Run 2: the key stays out of reach.
        let out = w.sh(&[], "cat ~/.ssh/id_rsa; ls ~/.ssh; echo end");
        let text = out.stdout();
        assert!(text.contains("end"), "{text}{}", out.stderr());
        assert!(!text.contains("PRIVATE-KEY"), "{text}");
        assert!(!text.contains("id_rsa"), "{text}");
    });
}

/// A program in `~/.local/bin` that links into a directory of its own is followed and its
/// directory shown (so it runs), but what else is in there is scanned as a project is: a
/// `.env` beside it stays masked.
#[test]
fn a_followed_package_directory_is_scanned_for_secrets() {
    each_user(|w| {
        let bin = w.home.join(".local/bin");
        exe(
            &w.home.join("apps/tool/bin/tool"),
            "#!/bin/sh\necho tool ran\n",
        );
        w.write("home/apps/tool/.env", "TOOL_TOKEN=pkg-secret-value\n");
        fs::create_dir_all(&bin).unwrap();
        symlink(w.home.join("apps/tool/bin/tool"), bin.join("tool")).unwrap();
        w.chown_all();
        // Control: the host reads it.
        assert!(
            w.host_sh("cat ~/apps/tool/.env")
                .ok()
                .contains("pkg-secret")
        );
        let path = format!("PATH=$PATH:{}", bin.display());
        let out = w.sh(
            &[],
            &format!("{path}; tool; cat ~/apps/tool/.env; echo end"),
        );
        let text = out.ok();
        assert!(text.contains("tool ran") && text.contains("end"), "{text}");
        assert!(!text.contains("pkg-secret-value"), "{text}");
    });
}

/// `--allow-registry pypi` asks the host's pip. The user's PATH reaches the project's venv
/// through a symlink (`~/link` to the project, as with a code directory linked into the
/// home); run 1 puts a `pip` of its own in that venv. Run 2 must not run it on the host.
#[test]
fn allow_registry_runs_no_tool_of_the_project_reached_through_a_link() {
    each_user(|w| {
        let marker = w.home.join("PWNED");
        let plant = format!(
            "python3 -m venv --without-pip .venv && \
             d=$(echo .venv/lib/python3*/site-packages)/pip && mkdir -p $d && : > $d/__init__.py && \
             printf 'open(\"{}\", \"w\").write(\"ran\")\\n' > $d/__main__.py && echo planted",
            marker.display()
        );
        assert!(w.sh(&[], &plant).ok().contains("planted"));
        let link = w.home.join("link");
        symlink(&w.project, &link).unwrap();
        w.chown_all();
        let venv_bin = link.join(".venv/bin");
        // Control: the planted pip runs where that python is run (on the host, here).
        let control = w.host_sh(&format!("{}/python3 -m pip", venv_bin.display()));
        assert_eq!(control.code(), 0, "{}", control.stderr());
        assert!(marker.exists());
        fs::remove_file(&marker).unwrap();
        let path = format!("{}:{}", venv_bin.display(), crate::harness::PATH);
        let mut c = w.cmd(
            &[
                "run",
                "--net",
                "filtered",
                "--allow-registry",
                "pypi",
                "--",
                "true",
            ]
            .map(std::ffi::OsStr::new),
        );
        c.env("PATH", path);
        let out = crate::harness::Out(c.output().unwrap());
        assert_eq!(out.code(), 0, "{}", out.stderr());
        assert!(
            out.stderr().contains("--allow-registry pypi"),
            "{}",
            out.stderr()
        );
        assert!(!marker.exists(), "the project's pip ran on the host");
    });
}

/// agentbox's config kept in a dotfiles checkout (`~/.config/agentbox` a link into it): a run
/// in that checkout could rewrite the config, and so its next runs (and, through the live
/// pick-up, this one). Refused, as is a `--rw` path that holds where the config would be made.
#[test]
fn a_config_the_agent_could_write_is_refused() {
    each_user(|w| {
        let dotfiles = w.home.join("src/project/agentbox");
        w.write(
            "home/src/project/agentbox/config.toml",
            "[defaults]\nallow_domains = [\"a.example\"]\n",
        );
        symlink(&dotfiles, w.home.join(".config/agentbox")).unwrap();
        w.write("home/src/other/file", "x\n");
        w.chown_all();
        // Control: the linked config is agentbox's config (its key shows in the plan).
        let mut c = w.cmd(&["run", "--net", "filtered", "--dry-run", "--", "true"].map(OsStr::new));
        c.current_dir(w.home.join("src/other"));
        let out = Out(c.output().unwrap());
        assert!(out.ok().contains("a.example"), "{}", out.stdout());
        // In the checkout that holds it: refused before anything runs.
        let out = w.sh(&[], "echo ran > ran-marker");
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(
            out.stderr().contains("agentbox's config"),
            "{}",
            out.stderr()
        );
        assert!(!w.project.join("ran-marker").exists());
        // A --rw path where the config would be made, not made yet.
        fs::remove_file(w.home.join(".config/agentbox")).unwrap();
        let cfg = w.home.join(".config").display().to_string();
        let out = w.sh(&["--rw", &cfg], "echo ran > ran-marker");
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(!w.project.join("ran-marker").exists());
        // Control: without it, the same run runs.
        assert_eq!(w.sh(&[], "echo ran > ran-marker").code(), 0);
        assert!(w.project.join("ran-marker").exists());
    });
}

/// A run can leave a FIFO where the project's file goes: `agentbox trust` must not hang on it
/// (a run and the live pick-up already read it without blocking).
#[test]
fn trust_does_not_hang_on_a_planted_fifo() {
    each_user(|w| {
        let out = w.sh(&[], "mkfifo .agentbox.toml && echo planted");
        assert!(out.ok().contains("planted"));
        // Control: a plain read blocks on it.
        assert_eq!(w.host_sh("timeout 1 cat .agentbox.toml").code(), 124);
        let mut child = w
            .cmd(&["trust", "--yes"].map(OsStr::new))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut status = None;
        for _ in 0..100 {
            status = child.try_wait().unwrap();
            if status.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if status.is_none() {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("agentbox trust hung on a FIFO");
        }
        assert_eq!(status.unwrap().code(), Some(125));
    });
}

/// The user's environment names a pip config in the project (set per directory, as direnv
/// does). Run 1 writes an index there; `--allow-registry pypi` in run 2 must not allow it.
#[test]
fn allow_registry_ignores_a_tool_config_the_sandbox_wrote() {
    each_user(|w| {
        let out = w.sh(
            &[],
            "printf '[global]\\nindex-url = https://planted.example/simple\\n' > pip.conf && \
             echo planted",
        );
        assert!(out.ok().contains("planted"));
        let conf = w.project.join("pip.conf");
        // Control: pip on the host reads it and names the planted index.
        let control = w.host_sh(&format!(
            "PIP_CONFIG_FILE={} python3 -m pip config list",
            conf.display()
        ));
        assert!(
            control.ok().contains("planted.example"),
            "{}",
            control.stderr()
        );
        let mut c = w.cmd(
            &[
                "run",
                "--net",
                "filtered",
                "--allow-registry",
                "pypi",
                "--",
                "true",
            ]
            .map(OsStr::new),
        );
        c.env("PIP_CONFIG_FILE", &conf);
        let out = Out(c.output().unwrap());
        assert_eq!(out.code(), 0, "{}", out.stderr());
        assert!(
            out.stderr().contains("--allow-registry pypi"),
            "{}",
            out.stderr()
        );
        assert!(
            !out.stderr().contains("planted.example"),
            "{}",
            out.stderr()
        );
    });
}

/// A toolchain credential masked inside a toolchain shown read-only, with an agent's
/// persistent home: the mask stays in force, and the clean-up of the home after the run does
/// not go looking for the mask's path in the home (where it never was) and warn.
#[test]
fn a_mask_inside_a_toolchain_leaves_the_agent_home_clean_and_quiet() {
    each_user(|w| {
        let v1 = w.home.join(".nvm/versions/node/v1");
        fs::create_dir_all(v1.join("bin")).unwrap();
        symlink("/usr/bin/node", v1.join("bin/node")).unwrap();
        w.write(
            "home/.nvm/versions/node/v1/etc/npmrc",
            "//r.example/:_authToken=npm-token-value\n",
        );
        w.chown_all();
        assert!(
            w.host_sh("cat ~/.nvm/versions/node/v1/etc/npmrc")
                .ok()
                .contains("npm-token")
        );
        let out = w.sh(
            &["--profile", "claude"],
            "cat ~/.nvm/versions/node/v1/etc/npmrc; ls ~/.nvm/versions/node/v1/bin; echo end",
        );
        let text = out.ok();
        assert!(text.contains("node") && text.contains("end"), "{text}");
        assert!(!text.contains("npm-token"), "{text}");
        assert!(
            !out.stderr().contains("cleaning the agent's home"),
            "{}",
            out.stderr()
        );
        let agent_home = w.home.join(".local/share/agentbox/home/claude");
        assert!(agent_home.is_dir() && !agent_home.join(".nvm").exists());
    });
}
