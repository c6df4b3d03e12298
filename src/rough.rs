//! Small edges of the command line, each in one function called from one place: a closed
//! pipe on stdout is the reader's choice, not an error (`agentbox man | head`); a `--dry-run`
//! script says at its top what it cannot do; a path given as `--ro=~/x` (no shell expansion)
//! gets a hint; paths in messages are shown without `.` and `..`.

use std::path::Path;

use crate::policy::{NetMode, Policy};

/// Whether `err` is stdout's reader going away (`| head`): the output was wanted no further,
/// so agentbox stops quietly, as a tool killed by SIGPIPE would.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes `bytes` to stdout, all at once (a generator that panics on a write error, such as
/// clap's completions, writes into a buffer first).
pub fn stdout(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

/// The `--dry-run` script with what it cannot do said at its top: the filtered network needs
/// agentbox's proxy, which only `agentbox run` starts (the script stops at once, saying so,
/// rather than failing halfway); limits need agentbox's cgroup (the script runs without them,
/// and says so).
pub fn dry_run_script(script: String, policy: &Policy) -> String {
    let mut head = String::new();
    if policy.net == NetMode::Filtered {
        head.push_str(
            "# This script cannot run by itself: --net filtered needs agentbox's proxy, which\n\
             # only `agentbox run` starts (the socket it binds exists only then). Run the same\n\
             # command with `agentbox run` instead of `--dry-run`, or read this as a record.\n\
             echo 'agentbox --dry-run: --net filtered needs agentbox run (it starts the proxy)' >&2\n\
             exit 2\n",
        );
    }
    if policy.limits.memory.is_some() || policy.limits.pids.is_some() {
        head.push_str(
            "# Without --memory/--pids: those limits are a cgroup agentbox run makes; this\n\
             # script does not.\n",
        );
    }
    match script.split_once('\n') {
        Some((shebang, rest)) if !head.is_empty() => format!("{shebang}\n{head}{rest}"),
        _ => script,
    }
}

/// The hint for a path that does not resolve: `--ro=~/x` reaches agentbox with its `~`
/// unexpanded (the shell expands `~` only at the start of a word).
pub fn missing_path_hint(path: &Path) -> String {
    match path.to_str().and_then(|p| p.strip_prefix('~')) {
        Some(rest) => format!(
            "the shell did not expand ~ here (it does only at the start of a word): write \
             `--ro ~{rest}` with a space, or the full path"
        ),
        None => "check the path exists and is spelled as intended".to_owned(),
    }
}

/// `path` absolute and without `.` and `..` components, for messages (lexical: the path as
/// the user meant it, not where symlinks lead).
pub fn shown(path: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tilde_gets_its_hint_and_paths_are_normalised() {
        assert!(missing_path_hint(Path::new("~/x")).contains("`--ro ~/x` with a space"));
        assert!(missing_path_hint(Path::new("/x")).starts_with("check the path"));
        assert_eq!(shown(Path::new("/a/./b/../c")), Path::new("/a/c"));
    }

    #[test]
    fn a_closed_pipe_is_recognised_through_context() {
        use anyhow::Context;
        let e: anyhow::Result<()> = Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing the man page");
        assert!(is_broken_pipe(&e.unwrap_err()));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }
}
