//! The shim's argv, read without clap. The shim (`agentbox __exec`, see `launch::exec_shim`)
//! runs inside every sandbox, between bwrap and the command: building clap's whole command
//! tree for it cost about 0.25 ms of every launch. The plan writes its argv in one fixed shape
//! (`bwrap::shim`): `__exec [--tty] [--landlock] [--write PATH]... -- COMMAND...`. Exactly that
//! shape is read here; anything else (another order, `--write=PATH`, a repeated flag, a value
//! that starts with `-`, no command) returns `None` and goes to clap as before, so this reads
//! nothing clap would read differently.

use std::ffi::OsString;
use std::path::PathBuf;

/// What `__exec`'s flags say, as clap's `Command::Exec` holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimArgs {
    pub tty: bool,
    pub landlock: bool,
    pub write: Vec<PathBuf>,
    pub command: Vec<OsString>,
}

/// `args` without the program name, when it is `__exec` in the plan's shape.
pub fn args(args: impl IntoIterator<Item = OsString>) -> Option<ShimArgs> {
    let mut it = args.into_iter();
    if it.next()? != "__exec" {
        return None;
    }
    let mut out = ShimArgs {
        tty: false,
        landlock: false,
        write: Vec::new(),
        command: Vec::new(),
    };
    // The plan puts --tty before --landlock, and every --write after --landlock.
    let mut next = it.next()?;
    if next == "--tty" {
        out.tty = true;
        next = it.next()?;
    }
    if next == "--landlock" {
        out.landlock = true;
        next = it.next()?;
        while next == "--write" {
            let path = it.next()?;
            if path.as_encoded_bytes().first().is_none_or(|b| *b == b'-') {
                return None;
            }
            out.write.push(path.into());
            next = it.next()?;
        }
    }
    if next != "--" {
        return None;
    }
    out.command = it.collect();
    (!out.command.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    /// What clap makes of the same words, in the same shape.
    fn by_clap(words: &[&str]) -> Option<ShimArgs> {
        let argv = std::iter::once("agentbox").chain(words.iter().copied());
        match Cli::try_parse_from(argv).ok()?.command {
            Command::Exec {
                tty,
                landlock,
                write,
                command,
            } => Some(ShimArgs {
                tty,
                landlock,
                write,
                command,
            }),
            _ => None,
        }
    }

    #[test]
    fn the_plans_shapes_read_as_clap_reads_them() {
        let shapes: &[&[&str]] = &[
            &["__exec", "--", "true"],
            &["__exec", "--tty", "--", "claude", "--resume"],
            &["__exec", "--landlock", "--", "sh", "-c", "echo -- --tty"],
            &[
                "__exec",
                "--tty",
                "--landlock",
                "--write",
                "/tmp",
                "--write",
                "/dev/null",
                "--",
                "true",
            ],
            &[
                "__exec",
                "--landlock",
                "--write",
                "/p",
                "--",
                "--write",
                "/x",
            ],
        ];
        for words in shapes {
            let fast = args(os(words));
            assert!(fast.is_some(), "{words:?}");
            assert_eq!(fast, by_clap(words), "{words:?}");
        }
    }

    #[test]
    fn any_other_shape_goes_to_clap() {
        let others: &[&[&str]] = &[
            &["run", "--", "true"],
            &["__exec"],
            &["__exec", "--"],
            &["__exec", "true"],
            &["__exec", "--landlock", "--tty", "--", "true"],
            &["__exec", "--tty", "--tty", "--", "true"],
            &["__exec", "--write", "/tmp", "--", "true"],
            &["__exec", "--landlock", "--write=/tmp", "--", "true"],
            &["__exec", "--landlock", "--write", "--", "true"],
            &["__exec", "--landlock", "--write", "-x", "--", "true"],
            &[
                "__exec",
                "--landlock",
                "--write",
                "/a",
                "--tty",
                "--",
                "true",
            ],
            &["__exec", "--verbose", "--", "true"],
        ];
        for words in others {
            assert_eq!(args(os(words)), None, "{words:?}");
        }
        // The control: clap reads some of them, which is why they go to it.
        assert!(by_clap(&["__exec", "--landlock", "--tty", "--", "true"]).is_some());
        assert!(by_clap(&["__exec", "--landlock", "--write=/tmp", "--", "true"]).is_some());
    }
}
