//! The exit audit (what the agent created or changed among the files the host runs later) and
//! the scripts that protected files launch (read-only like the files that name them).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::symlink;

use crate::harness::{World, each_user};

const HEADER: &str = "the agent created or changed files your tools run later";

/// The audit lines of a run's stderr (those after the header), trimmed.
fn audit_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .skip_while(|l| !l.contains(HEADER))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim().to_owned())
        .collect()
}

fn has_line(lines: &[String], change: &str, path: &str) -> bool {
    lines.iter().any(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some(change) && words.next() == Some(path)
    })
}

/// `git` as the scenario's user, in `dir`.
fn git(w: &World, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut c = w.program(OsStr::new("git"));
    c.current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args);
    c.output().unwrap()
}

#[test]
fn the_audit_reports_each_kind_of_change_and_keeps_the_exit_code() {
    each_user(|w| {
        w.write("home/src/project/AGENTS.md", "be careful\n");
        w.write("home/src/project/CLAUDE.md", "old\n");
        w.write("home/src/project/.github/workflows/ci.yml", "on: push\n");
        w.write("home/src/project/sub/.vscode/settings.json", "{}\n");
        w.write("home/src/project/src/main.rs", "fn main() {}\n");
        let script = "echo 'echo pwned' > .envrc; \
             echo '# more' >> CLAUDE.md; \
             echo 'on: push' > .github/workflows/evil.yml; \
             rm AGENTS.md; \
             git init -q lib && printf '#!/bin/sh\\necho pwned > ../hooked.txt\\n' \
               > lib/.git/hooks/pre-commit && chmod +x lib/.git/hooks/pre-commit; \
             mv sub sub-old 2>/dev/null && mkdir -p sub/.vscode && \
               echo '{\"tasks\":[]}' > sub/.vscode/tasks.json && echo swapped; \
             exit 3";
        let out = w.sh(&[], script);
        assert_eq!(out.code(), 3, "{}", out.stderr());
        let lines = audit_lines(&out.stderr());
        assert!(has_line(&lines, "new", ".envrc"), "{lines:?}");
        assert!(has_line(&lines, "changed", "CLAUDE.md"), "{lines:?}");
        assert!(
            has_line(&lines, "changed", ".github/workflows/"),
            "{lines:?}"
        );
        assert!(has_line(&lines, "removed", "AGENTS.md"), "{lines:?}");
        assert!(has_line(&lines, "new", "lib/.git/"), "{lines:?}");
        // The swap of a protected directory by renaming its parent: either it is refused
        // (pinned) or the audit names it.
        let swapped = out.stdout().contains("swapped");
        assert_eq!(
            swapped,
            has_line(&lines, "replaced", "sub/.vscode/"),
            "{lines:?}"
        );
        if !swapped {
            assert!(w.project.join("sub/.vscode/settings.json").exists());
        }
        assert!(
            lines.iter().any(|l| l.contains("(direnv runs it")),
            "reasons are printed: {lines:?}"
        );
        assert!(!lines.iter().any(|l| l.contains("src/")), "{lines:?}");
        // Step two, as the host would: the planted hook does run at the user's next commit in
        // lib/. The audit above is what stood between the two.
        fs::write(w.project.join("lib/a.txt"), "a").unwrap();
        w.chown_all();
        git(w, &w.project.join("lib"), &["add", "a.txt"]);
        git(w, &w.project.join("lib"), &["commit", "-qm", "x"]);
        assert!(w.project.join("hooked.txt").exists());
    });
}

#[test]
fn the_audit_is_quiet_on_ordinary_work() {
    each_user(|w| {
        w.write("home/src/project/src/main.rs", "fn main() {}\n");
        w.write("home/src/project/AGENTS.md", "notes\n");
        w.write("home/src/project/.vscode/settings.json", "{}\n");
        let st = git(w, &w.project, &["init", "-q"]);
        assert!(st.status.success());
        git(w, &w.project, &["add", "-A"]);
        let st = git(w, &w.project, &["commit", "-qm", "start"]);
        assert!(st.status.success(), "{st:?}");
        let report = w.base.join("home/audit.json");
        let report_arg = report.to_str().unwrap();
        // Edit sources, build (a cache directory with its tag, as cargo makes), commit.
        let script = "echo 'fn main() { println!(); }' > src/main.rs && \
             mkdir -p target/debug && echo 'Signature: 8a477f597d28d172789f06886806bc55' \
               > target/CACHEDIR.TAG && echo bin > target/debug/app && \
             mkdir -p target/debug/deps target/debug/.fingerprint/app-1 && \
             echo d > target/debug/deps/app.d && echo f > target/debug/.fingerprint/app-1/bin && \
             git -c user.name=t -c user.email=t@example.invalid add src && \
             git -c user.name=t -c user.email=t@example.invalid commit -qm edit && echo done";
        let out = w.sh(&["--audit-json", report_arg], script);
        assert!(out.ok().contains("done"));
        assert!(!out.stderr().contains(HEADER), "{}", out.stderr());
        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(v["changes"], serde_json::json!([]));
        // The control: the same world does report a new .envrc, in both places.
        let out = w.sh(&["--audit-json", report_arg], "echo x > .envrc");
        assert!(out.stderr().contains(HEADER), "{}", out.stderr());
        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(v["changes"][0]["change"], "new");
        assert!(
            v["changes"][0]["path"]
                .as_str()
                .unwrap()
                .ends_with("project/.envrc")
        );
    });
}

#[test]
fn the_json_report_is_not_written_through_a_planted_symlink() {
    each_user(|w| {
        let victim = w.write("home/.bashrc", "keep\n");
        let link = w.project.join("report.json");
        symlink(&victim, &link).unwrap();
        let out = w.sh(&["--audit-json", link.to_str().unwrap()], "exit 4");
        assert_eq!(out.code(), 4, "{}", out.stderr());
        assert!(out.stderr().contains("audit"), "{}", out.stderr());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep\n");
        // The control: a plain name in the same directory is written.
        let plain = w.project.join("plain.json");
        let out = w.sh(&["--audit-json", plain.to_str().unwrap()], "exit 4");
        assert_eq!(out.code(), 4);
        assert!(fs::read_to_string(&plain).unwrap().contains("\"changes\""));
    });
}

#[test]
fn scripts_that_protected_files_launch_are_read_only() {
    each_user(|w| {
        w.write("home/src/project/tools/mcp.js", "// server\n");
        w.write("home/src/project/tools/other.js", "// other\n");
        w.write("home/src/project/scripts/fmt.sh", "#!/bin/sh\n");
        w.write("home/src/project/scripts/other.sh", "#!/bin/sh\n");
        w.write("home/src/project/.claude/hooks/fmt.sh", "#!/bin/sh\n");
        let attempt =
            |file: &str| format!("echo evil >> {file} 2>/dev/null && echo wrote-{file}; true");
        let script = [
            "tools/mcp.js",
            "tools/other.js",
            "scripts/fmt.sh",
            "scripts/other.sh",
            ".claude/hooks/fmt.sh",
        ]
        .map(attempt)
        .join("; ");

        // Without a reference, the agent can change them: what the host would run next.
        let out = w.sh(&[], &script).ok();
        assert!(out.contains("wrote-tools/mcp.js"), "{out}");
        assert!(out.contains("wrote-scripts/fmt.sh"), "{out}");

        // Named by .mcp.json and by a hook in .claude/settings.json: read-only.
        w.write(
            "home/src/project/.mcp.json",
            r#"{"mcpServers":{"t":{"command":"node","args":["./tools/mcp.js"]}}}"#,
        );
        w.write(
            "home/src/project/.claude/settings.json",
            r#"{"hooks":{"PostToolUse":[{"matcher":"Edit","hooks":[
                {"type":"command","command":"\"$CLAUDE_PROJECT_DIR\"/.claude/hooks/fmt.sh"},
                {"type":"command","command":"sh scripts/fmt.sh --all"}]}]}}"#,
        );
        let before = fs::read_to_string(w.project.join("tools/mcp.js")).unwrap();
        let out = w.sh(&[], &script).ok();
        for blocked in ["tools/mcp.js", "scripts/fmt.sh", ".claude/hooks/fmt.sh"] {
            assert!(!out.contains(&format!("wrote-{blocked}")), "{out}");
        }
        assert_eq!(
            fs::read_to_string(w.project.join("tools/mcp.js")).unwrap(),
            before
        );
        // The controls: unreferenced scripts beside them stay writable.
        assert!(out.contains("wrote-tools/other.js"), "{out}");
        assert!(out.contains("wrote-scripts/other.sh"), "{out}");
        // --dry-run says why.
        let dry = w.sh(&["--dry-run"], "true").ok();
        assert!(dry.contains("run by .mcp.json"), "{dry}");
        // Swapping the script by renaming its directory away is refused (pinned) or reported.
        let out = w.sh(
            &[],
            "mv tools tools-old 2>/dev/null && mkdir tools && echo evil > tools/mcp.js && \
             echo swapped; true",
        );
        let swapped = out.ok().contains("swapped");
        let lines = audit_lines(&out.stderr());
        assert_eq!(
            swapped,
            has_line(&lines, "replaced", "tools/mcp.js"),
            "{lines:?}"
        );
        assert!(lines.iter().any(|l| l.contains("run by .mcp.json")) || !swapped);
    });
}

#[test]
fn hook_frameworks_dev_containers_and_every_agents_config_are_read_only() {
    each_user(|w| {
        let protected = [
            ".pre-commit-config.yaml",
            "lefthook.yml",
            ".husky/pre-commit",
            ".devcontainer/devcontainer.json",
            ".gemini/settings.json",
            ".codex/config.toml",
            ".cursor/mcp.json",
            ".opencode/plugin/x.js",
            "opencode.json",
            ".aider.conf.yml",
            ".amp/settings.json",
            ".claude/skills/s/SKILL.md",
            "scripts/init.sh",
            "scripts/lint.sh",
        ];
        for p in protected {
            w.write(&format!("home/src/project/{p}"), "orig\n");
        }
        // Scripts these files launch: a dev container's host-side command, a pre-commit hook.
        w.write(
            "home/src/project/.devcontainer/devcontainer.json",
            r#"{"initializeCommand": "bash ./scripts/init.sh"}"#,
        );
        w.write(
            "home/src/project/.pre-commit-config.yaml",
            "repos:\n- repo: local\n  hooks:\n  - id: lint\n    entry: scripts/lint.sh\n",
        );
        w.write("home/src/project/scripts/free.sh", "orig\n");
        w.write("home/src/project/CLAUDE.md", "orig\n");
        let script: String = protected
            .iter()
            .chain(&["scripts/free.sh", "CLAUDE.md"])
            .map(|p| format!("echo evil >> {p} 2>/dev/null && echo wrote:{p}; "))
            .collect();
        let out = w.sh(&[], &format!("{script}true"));
        let stdout = out.ok();
        for p in protected {
            assert!(!stdout.contains(&format!("wrote:{p}")), "{p}: {stdout}");
            assert!(
                !fs::read_to_string(w.project.join(p))
                    .unwrap()
                    .contains("evil"),
                "{p}"
            );
        }
        // The controls: a script nothing names is writable; an instruction file is writable
        // and named by the audit.
        assert!(stdout.contains("wrote:scripts/free.sh"), "{stdout}");
        assert!(stdout.contains("wrote:CLAUDE.md"), "{stdout}");
        assert!(
            has_line(&audit_lines(&out.stderr()), "changed", "CLAUDE.md"),
            "{}",
            out.stderr()
        );
        // And outside the sandbox the same user can write them: the protection is agentbox's.
        let mut c = w.program(OsStr::new("sh"));
        c.args(["-c", "echo ok >> scripts/init.sh"]);
        assert!(c.status().unwrap().success());
    });
}

/// A control file git obeys once it exists (`commondir`, `info/attributes`), created in a
/// repository's own `.git` during the run: git never writes them there, the sandbox cannot be
/// kept from creating them without stub files, so the exit audit names them, and the next run
/// refuses the `commondir` one. Control: ordinary git work inside reports nothing.
#[test]
fn control_files_planted_in_git_dir_are_reported_and_the_next_run_refuses() {
    each_user(|w| {
        let init = git(w, &w.project, &["init", "-q"]);
        assert!(init.status.success(), "{init:?}");
        w.write("home/src/project/src/main.rs", "fn main() {}\n");
        let quiet = w.sh(
            &[],
            "git add -A && git status --short >/dev/null && echo ok",
        );
        assert_eq!(quiet.ok(), "ok\n");
        assert_eq!(audit_lines(&quiet.stderr()), Vec::<String>::new());

        w.write(
            "home/src/project/evil/config",
            "[core]\n\thooksPath = /tmp\n",
        );
        let out = w.sh(
            &[],
            "printf '../evil\\n' > .git/commondir && mkdir -p .git/info && \
             echo '* filter=x' > .git/info/attributes && echo planted",
        );
        assert_eq!(out.ok(), "planted\n");
        let lines = audit_lines(&out.stderr());
        assert!(has_line(&lines, "new", ".git/commondir"), "{lines:?}");
        assert!(has_line(&lines, "new", ".git/info/attributes"), "{lines:?}");
        // The next run will not start while the commondir is there.
        let next = w.sh(&[], "echo started");
        assert_eq!(next.code(), 125, "{}", next.stderr());
        assert!(next.stderr().contains("commondir"), "{}", next.stderr());
        assert!(!next.stdout().contains("started"));
    });
}

/// Whether the audit has a "not checked" line for `dir`.
fn unchecked(lines: &[String], dir: &str) -> bool {
    lines.iter().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.get(..3) == Some(&["not", "checked", dir][..])
    })
}

/// The agent plants a `.envrc` and a nested repository's hook, then makes a directory
/// unreadable: the exit scan cannot read it, but that must not cost the report on the rest
/// (the launch scan's refusal is right at launch, wrong at exit). The next run refuses to start
/// while the directory stays unreadable. Root reads it anyway: then nothing is unchecked.
#[test]
fn an_unreadable_directory_does_not_cost_the_exit_audit() {
    each_user(|w| {
        // The control: the same planting with the directory left readable.
        let plant = "echo 'echo pwned' > .envrc && git init -q sub && \
             printf '#!/bin/sh\\necho pwned\\n' > sub/.git/hooks/pre-commit && \
             chmod +x sub/.git/hooks/pre-commit && mkdir -p zz/deep && echo planted";
        let out = w.sh(&[], plant);
        assert_eq!(out.ok(), "planted\n");
        let lines = audit_lines(&out.stderr());
        assert!(has_line(&lines, "new", ".envrc"), "{lines:?}");
        assert!(has_line(&lines, "new", "sub/.git/"), "{lines:?}");
        assert!(!unchecked(&lines, "zz/"), "{lines:?}");
        fs::remove_file(w.project.join(".envrc")).unwrap();
        fs::remove_dir_all(w.project.join("sub")).unwrap();

        // The attack: the same, then chmod 000.
        let out = w.sh(&[], &format!("{plant} && chmod 000 zz"));
        assert_eq!(out.ok(), "planted\n");
        let err = out.stderr();
        assert!(!err.contains("refusing to start"), "{err}");
        assert!(!err.contains("exit audit failed"), "{err}");
        let lines = audit_lines(&err);
        assert!(has_line(&lines, "new", ".envrc"), "{lines:?}");
        assert!(has_line(&lines, "new", "sub/.git/"), "{lines:?}");
        let blind = w.user.is_some();
        assert_eq!(unchecked(&lines, "zz/"), blind, "{lines:?}");
        assert!(
            !blind || err.contains("(could hide planted files)"),
            "{err}"
        );
        // Run two: the launch scan still fails closed on the place it cannot read.
        let next = w.sh(&[], "echo started");
        if blind {
            assert_eq!(next.code(), 125, "{}", next.stderr());
            assert!(next.stderr().contains("zz"), "{}", next.stderr());
        } else {
            assert_eq!(next.ok(), "started\n");
        }
        fs::set_permissions(
            w.project.join("zz"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    });
}

/// 300 sparse files of 16 MiB each in a new `.vscode/` made the exit take minutes, with
/// signals ignored or swallowed. Now the whole audit has a budget, and once bwrap is reaped a
/// SIGTERM ends agentbox (during the run it is forwarded to the sandbox instead: the control).
#[test]
fn a_huge_planted_tree_keeps_the_audit_short_and_a_signal_ends_it() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    each_user(|w| {
        let plant = "mkdir -p x/.vscode && i=0; while [ $i -lt 300 ]; do \
             truncate -s 16M x/.vscode/f$i; i=$((i+1)); done; echo planted";
        let started = Instant::now();
        let out = w.sh(&[], plant);
        let took = started.elapsed();
        assert_eq!(out.ok(), "planted\n");
        assert!(
            has_line(&audit_lines(&out.stderr()), "new", "x/.vscode/"),
            "{}",
            out.stderr()
        );
        eprintln!("planting run with its audit: {took:?}");
        assert!(took < Duration::from_secs(60), "{took:?}");
        fs::remove_dir_all(w.project.join("x")).unwrap();

        // A run that plants, then a SIGTERM once bwrap is gone and the audit runs.
        let signal_at = |during_audit: bool| {
            let script = format!("{plant}; sleep {}", if during_audit { 0 } else { 30 });
            let mut c = w.cmd(&[
                OsStr::new("run"),
                OsStr::new("--"),
                OsStr::new("sh"),
                OsStr::new("-c"),
                OsStr::new(&script),
            ]);
            let mut child = c
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line, "planted\n");
            let pid = child.id();
            if during_audit {
                // agentbox without children: bwrap is reaped, the audit is under way.
                let deadline = Instant::now() + Duration::from_secs(30);
                let children = || {
                    fs::read_dir(format!("/proc/{pid}/task"))
                        .map(|rd| {
                            rd.flatten().any(|t| {
                                fs::read_to_string(t.path().join("children"))
                                    .is_ok_and(|c| !c.trim().is_empty())
                            })
                        })
                        .unwrap_or(false)
                };
                while children() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(2));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let t = Instant::now();
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let status = child.wait().unwrap();
            (status, t.elapsed())
        };
        let (status, _) = signal_at(false);
        // The control: during the run the signal is the sandbox's; agentbox lives to report.
        assert_eq!((status.code(), status.signal()), (Some(143), None));
        fs::remove_dir_all(w.project.join("x")).unwrap();
        let (status, took) = signal_at(true);
        // Killed by it (15, SIGTERM), not exited.
        assert_eq!(status.signal(), Some(15), "{status:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    });
}

/// A repository with a committed file, for the git scenarios.
fn repo_with_a_commit(w: &World) {
    w.write("home/src/project/src/main.rs", "fn main() {}\n");
    w.chown_all();
    assert!(
        git(w, &w.project, &["init", "-q", "-b", "main"])
            .status
            .success()
    );
    git(w, &w.project, &["add", "-A"]);
    let st = git(w, &w.project, &["commit", "-qm", "start"]);
    assert!(st.status.success(), "{st:?}");
}

/// Ordinary git work inside (a commit, a branch, a stash) reports nothing: the control of the
/// git scenarios below.
fn ordinary_git_work_is_quiet(w: &World) {
    let g = "git -c user.name=t -c user.email=t@example.invalid";
    let out = w.sh(
        &[],
        &format!(
            "echo 'fn main() {{ }}' > src/main.rs && {g} commit -qam edit && \
             {g} branch side && echo x >> src/main.rs && {g} stash -q && echo ok"
        ),
    );
    assert_eq!(out.ok(), "ok\n");
    assert_eq!(audit_lines(&out.stderr()), Vec::<String>::new());
}

/// A submodule declared but not initialised: the agent makes its git dir in `.git/modules/`
/// with a hook, and the host's `git submodule update --init` reuses it and runs the hook. The
/// audit names `.git/modules/`.
#[test]
fn a_submodule_git_dir_planted_in_modules_is_reported() {
    each_user(|w| {
        // The submodule's origin, outside the project.
        w.write("home/lib-origin/a.txt", "a\n");
        w.chown_all();
        let origin = w.home.join("lib-origin");
        assert!(
            git(w, &origin, &["init", "-q", "-b", "main"])
                .status
                .success()
        );
        git(w, &origin, &["add", "-A"]);
        assert!(git(w, &origin, &["commit", "-qm", "lib"]).status.success());
        let head = git(w, &origin, &["rev-parse", "HEAD"]);
        let head = String::from_utf8(head.stdout).unwrap();
        repo_with_a_commit(w);
        // Declared (a .gitmodules entry, a gitlink, an empty directory as a clone leaves it),
        // never initialised.
        fs::create_dir(w.project.join("lib")).unwrap();
        w.write(
            "home/src/project/.gitmodules",
            &format!(
                "[submodule \"lib\"]\n\tpath = lib\n\turl = {}\n",
                origin.display()
            ),
        );
        w.chown_all();
        let cacheinfo = format!("160000,{},lib", head.trim());
        for args in [
            &["update-index", "--add", "--cacheinfo", &cacheinfo][..],
            &["add", ".gitmodules"],
            &["commit", "-qm", "sub"],
        ] {
            let st = git(w, &w.project, args);
            assert!(st.status.success(), "{args:?}: {st:?}");
        }
        assert!(!w.project.join(".git/modules").exists());
        ordinary_git_work_is_quiet(w);

        let hooked = w.home.join("hooked");
        let plant = format!(
            "git init -q --bare .git/modules/lib && \
             git -C .git/modules/lib config core.bare false && \
             git -C .git/modules/lib remote add origin {origin} && \
             printf '#!/bin/sh\\necho pwned > {hooked}\\n' > .git/modules/lib/hooks/post-checkout \
             && chmod +x .git/modules/lib/hooks/post-checkout && echo planted",
            origin = origin.display(),
            hooked = hooked.display(),
        );
        let out = w.sh(&[], &plant);
        assert_eq!(out.ok(), "planted\n");
        let lines = audit_lines(&out.stderr());
        assert!(has_line(&lines, "new", ".git/modules/"), "{lines:?}");
        assert!(
            lines.iter().any(|l| l.contains("git submodule update")),
            "{lines:?}"
        );
        // Step two, as the host would: the planted hook runs.
        let st = git(
            w,
            &w.project,
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "update",
                "--init",
                "-q",
            ],
        );
        assert!(st.status.success(), "{st:?}");
        assert!(hooked.exists(), "the planted submodule hook did not run");
    });
}

/// A rebase stopped at `break` with an `exec` line left in its todo: the host's
/// `git rebase --continue` runs it. The audit names the todo file.
#[test]
fn a_rebase_todo_planted_with_exec_lines_is_reported() {
    each_user(|w| {
        repo_with_a_commit(w);
        ordinary_git_work_is_quiet(w);
        let pwned = w.home.join("pwned");
        let plant = format!(
            "GIT_SEQUENCE_EDITOR='f() {{ printf \"break\\nexec touch {pwned}\\n\" > \"$1\"; }}; f' \
             git -c user.name=t -c user.email=t@example.invalid rebase -q -i HEAD \
             >/dev/null 2>&1; test -f .git/rebase-merge/git-rebase-todo && echo planted",
            pwned = pwned.display()
        );
        let out = w.sh(&[], &plant);
        assert_eq!(out.ok(), "planted\n", "{}", out.stderr());
        let lines = audit_lines(&out.stderr());
        assert!(
            has_line(&lines, "new", ".git/rebase-merge/git-rebase-todo"),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("runs its exec lines")),
            "{lines:?}"
        );
        assert!(!pwned.exists());
        // Step two, as the host would.
        let st = git(w, &w.project, &["rebase", "--continue"]);
        assert!(st.status.success(), "{st:?}");
        assert!(pwned.exists(), "the planted exec line did not run");
    });
}

/// `sh tools/mcp.sh`, named by `.mcp.json`, sources `tools/*.inc`, which no word names: the
/// agent appends to it, and the host's next MCP start runs it. The directory of a referenced
/// script is watched; the project root is not (every edit would be reported).
#[test]
fn a_script_beside_a_referenced_one_is_watched() {
    each_user(|w| {
        w.write(
            "home/src/project/.mcp.json",
            r#"{"mcpServers":{"t":{"command":"sh","args":["tools/mcp.sh"]},
                "r":{"command":"sh","args":["top.sh"]}}}"#,
        );
        w.write(
            "home/src/project/tools/mcp.sh",
            "for f in \"$(dirname \"$0\")\"/*.inc; do . \"$f\"; done\n",
        );
        w.write("home/src/project/tools/lib.inc", "true\n");
        w.write(
            "home/src/project/top.sh",
            "for f in ./*.inc; do . \"$f\"; done\n",
        );
        w.write("home/src/project/toplib.inc", "true\n");
        w.chown_all();
        // The control: editing beside the root-level script reports nothing.
        let out = w.sh(&[], "echo '# edit' >> toplib.inc && echo ok");
        assert_eq!(out.ok(), "ok\n");
        assert_eq!(audit_lines(&out.stderr()), Vec::<String>::new());
        // The attack.
        let pwned = w.home.join("pwned");
        let out = w.sh(
            &[],
            &format!(
                "echo 'touch {}' >> tools/lib.inc && echo ok",
                pwned.display()
            ),
        );
        assert_eq!(out.ok(), "ok\n");
        let lines = audit_lines(&out.stderr());
        assert!(has_line(&lines, "changed", "tools/"), "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("(beside a script that .mcp.json runs)")),
            "{lines:?}"
        );
        // Step two, as the host would start the MCP server.
        let mut c = w.program(OsStr::new("sh"));
        c.arg("tools/mcp.sh");
        assert!(c.status().unwrap().success());
        assert!(pwned.exists());
    });
}
