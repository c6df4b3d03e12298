//! git's configuration keys whose value git runs or loads, kept as data: drawn from git's own
//! reference (`Documentation/config/*.adoc` in git's source, 2.5x). A key missing here is a
//! key whose project paths the agent could rewrite and the host would then run, so when git
//! adds one, add it here with its reason.
//!
//! `*` stands for a subsection (a driver, tool, remote or alias name; it may hold dots). Names
//! are lowercase, as `git config --list` prints them. No logic here: `git.rs` interprets it.

/// What git does with a key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A directory of hooks (`core.hooksPath`): relative to the top of the worktree.
    Hooks,
    /// Another config file to read: relative to the file that names it.
    Include,
    /// A command line or a program (run by the shell or directly, from the top of the
    /// worktree): every word of it that is a path counts, not only the first.
    Command,
}

pub struct GitKey {
    pub key: &'static str,
    pub used: Use,
    pub why: &'static str,
}

const fn key(key: &'static str, used: Use, why: &'static str) -> GitKey {
    GitKey { key, used, why }
}

use Use::{Command, Hooks, Include};

pub const GIT_KEYS: &[GitKey] = &[
    key(
        "core.hookspath",
        Hooks,
        "git runs the hooks in this directory",
    ),
    key("include.path", Include, "a config file git reads"),
    key(
        "includeif.*.path",
        Include,
        "a config file git reads when the condition holds",
    ),
    key(
        "core.fsmonitor",
        Command,
        "run by git status, add and commit (a path, when not a boolean)",
    ),
    key("core.editor", Command, "the editor git commit starts"),
    key(
        "sequence.editor",
        Command,
        "the editor git rebase -i starts",
    ),
    key("core.pager", Command, "the pager git log and diff start"),
    key(
        "pager.*",
        Command,
        "a per-command pager (when not a boolean)",
    ),
    key(
        "interactive.difffilter",
        Command,
        "run on the diff by git add -p",
    ),
    key("core.askpass", Command, "run when git needs a password"),
    key(
        "core.sshcommand",
        Command,
        "run for every ssh fetch and push",
    ),
    key("core.gitproxy", Command, "run for git:// fetches"),
    key(
        "core.alternaterefscommand",
        Command,
        "run when an alternate object store is used",
    ),
    key(
        "credential.helper",
        Command,
        "run when git needs credentials",
    ),
    key(
        "credential.*.helper",
        Command,
        "run when git needs credentials for a URL",
    ),
    key("gpg.program", Command, "run to sign and verify commits"),
    key(
        "gpg.*.program",
        Command,
        "run to sign and verify (openpgp, x509, ssh)",
    ),
    key(
        "gpg.ssh.defaultkeycommand",
        Command,
        "run to pick the ssh signing key",
    ),
    key(
        "diff.external",
        Command,
        "run by git diff instead of the builtin diff",
    ),
    key("diff.*.command", Command, "a diff driver git diff runs"),
    key(
        "diff.*.textconv",
        Command,
        "run on files by git diff and log",
    ),
    key(
        "merge.*.driver",
        Command,
        "a merge driver git merge and rebase run",
    ),
    key(
        "filter.*.clean",
        Command,
        "run on files by git add, status and commit",
    ),
    key("filter.*.smudge", Command, "run on files by git checkout"),
    key(
        "filter.*.process",
        Command,
        "a long-running filter git add and checkout start",
    ),
    key("difftool.*.cmd", Command, "run by git difftool"),
    key("difftool.*.path", Command, "run by git difftool"),
    key("mergetool.*.cmd", Command, "run by git mergetool"),
    key("mergetool.*.path", Command, "run by git mergetool"),
    key(
        "alias.*",
        Command,
        "a git alias: a shell command with `!`, else git options that can name programs",
    ),
    key(
        "hook.*.command",
        Command,
        "a hook defined in config, run at its event",
    ),
    key(
        "submodule.*.update",
        Command,
        "`!command` runs on git submodule update",
    ),
    key(
        "remote.*.uploadpack",
        Command,
        "run locally when fetching from a local path",
    ),
    key(
        "remote.*.receivepack",
        Command,
        "run locally when pushing to a local path",
    ),
    key(
        "uploadpack.packobjectshook",
        Command,
        "run by upload-pack when serving a fetch",
    ),
    key("gc.recentobjectshook", Command, "run by git gc and repack"),
    key("sendemail.sendmailcmd", Command, "run by git send-email"),
    key("sendemail.*.sendmailcmd", Command, "run by git send-email"),
    key("sendemail.tocmd", Command, "run by git send-email"),
    key("sendemail.cccmd", Command, "run by git send-email"),
    key("sendemail.headercmd", Command, "run by git send-email"),
    key(
        "sendemail.smtpserver",
        Command,
        "a sendmail-like program when it is a path",
    ),
    key("web.browser", Command, "run by git help --web and instaweb"),
    key("browser.*.cmd", Command, "run by git web--browse"),
    key("browser.*.path", Command, "run by git web--browse"),
    key("man.*.cmd", Command, "run by git help"),
    key("man.*.path", Command, "run by git help"),
    key("instaweb.httpd", Command, "run by git instaweb"),
    key("guitool.*.cmd", Command, "run from git gui's menu"),
    key(
        "tar.*.command",
        Command,
        "run by git archive for that format",
    ),
    key("imap.tunnel", Command, "run by git imap-send"),
    key(
        "init.templatedir",
        Hooks,
        "its hooks/ are copied into every repository git init or clone makes",
    ),
    key(
        "trace2.normaltarget",
        Command,
        "a file git writes its trace to (a planted link would redirect the write)",
    ),
    key(
        "trace2.perftarget",
        Command,
        "a file git writes its trace to (a planted link would redirect the write)",
    ),
    key(
        "trace2.eventtarget",
        Command,
        "a file git writes its trace to (a planted link would redirect the write)",
    ),
];

/// The entry for a key as `git config --list` prints it, if git runs or loads its value.
pub fn lookup(name: &str) -> Option<&'static GitKey> {
    GIT_KEYS.iter().find(|k| matches(k.key, name))
}

/// `pattern` with at most one `*` (one or more characters, dots included) against `name`;
/// ASCII case does not matter outside the `*` (git lowercases section and key names).
fn matches(pattern: &str, name: &str) -> bool {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    match pattern.split_once('*') {
        None => eq(pattern, name),
        Some((pre, post)) => {
            name.len() > pre.len() + post.len()
                && name.is_char_boundary(pre.len())
                && name.is_char_boundary(name.len() - post.len())
                && eq(&name[..pre.len()], pre)
                && eq(&name[name.len() - post.len()..], post)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_as_git_prints_them() {
        for (name, want) in [
            ("core.fsmonitor", Some("core.fsmonitor")),
            ("filter.lfs.clean", Some("filter.*.clean")),
            ("filter.a.b.clean", Some("filter.*.clean")),
            ("filter..clean", None),
            ("pager.log", Some("pager.*")),
            ("alias.st", Some("alias.*")),
            ("alias.rätta till.command", Some("alias.*")),
            (
                "credential.https://example.com.helper",
                Some("credential.*.helper"),
            ),
            ("gpg.ssh.program", Some("gpg.*.program")),
            ("includeif.gitdir:~/work/.path", Some("includeif.*.path")),
            ("user.name", None),
            ("core.hookspath", Some("core.hookspath")),
        ] {
            assert_eq!(lookup(name).map(|k| k.key), want, "{name}");
        }
    }

    #[test]
    fn every_pattern_has_at_most_one_star_and_is_lowercase() {
        for k in GIT_KEYS {
            assert!(k.key.matches('*').count() <= 1, "{}", k.key);
            assert_eq!(k.key, k.key.to_ascii_lowercase());
        }
    }
}
