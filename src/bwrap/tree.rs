//! `--dry-run --tree`: the filesystem as the agent sees it, one line per place the plan mounts
//! something, marked read-only, read-write, masked, tmpfs (empty: it hides what the host has
//! there), link or special, with the reason. Derived from the steps, so it cannot disagree with
//! the bwrap command. Pure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Op, Plan};
use crate::text::{printable, terminal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Ro,
    Rw,
    Masked,
    Tmpfs,
    TmpfsRo,
    Link,
    Special,
    File,
}

impl Mark {
    fn label(self) -> &'static str {
        match self {
            Mark::Ro => "ro",
            Mark::Rw => "rw",
            Mark::Masked => "masked",
            Mark::Tmpfs => "tmpfs",
            Mark::TmpfsRo => "empty, ro",
            Mark::Link => "link",
            Mark::Special => "special",
            Mark::File => "generated",
        }
    }

    /// ANSI colour: green writable, red masked, yellow emptied, cyan read-only.
    fn color(self) -> &'static str {
        match self {
            Mark::Rw => "\x1b[32m",
            Mark::Masked | Mark::TmpfsRo => "\x1b[31m",
            Mark::Tmpfs => "\x1b[33m",
            Mark::Ro | Mark::File => "\x1b[36m",
            Mark::Link | Mark::Special => "\x1b[35m",
        }
    }
}

struct Entry {
    mark: Mark,
    why: String,
    /// For links: where they point.
    target: Option<PathBuf>,
}

fn put(
    map: &mut BTreeMap<PathBuf, Entry>,
    p: &Path,
    mark: Mark,
    why: &str,
    target: Option<PathBuf>,
) {
    let why = why.to_owned();
    map.insert(p.to_owned(), Entry { mark, why, target });
}

fn entries(plan: &Plan) -> BTreeMap<PathBuf, Entry> {
    let mut map: BTreeMap<PathBuf, Entry> = BTreeMap::new();
    let m = &mut map;
    put(
        m,
        Path::new("/"),
        Mark::TmpfsRo,
        "bwrap's own root: only what is listed here",
        None,
    );
    for s in &plan.steps {
        let why = s.why.as_str();
        match &s.op {
            Op::RoBind(d) | Op::RoBindAt { dest: d, .. } => put(m, d, Mark::Ro, why, None),
            Op::Bind(d) | Op::BindAt { dest: d, .. } | Op::DevBind(d) => {
                put(m, d, Mark::Rw, why, None)
            }
            Op::EmptyFile(d) | Op::UnreadableFile(d) => put(m, d, Mark::Masked, why, None),
            Op::DataFile { dest, .. } => put(m, dest, Mark::File, why, None),
            Op::Tmpfs { dest, .. } => put(m, dest, Mark::Tmpfs, why, None),
            Op::RemountRo(d) => {
                if let Some(e) = m.get_mut(d.as_path())
                    && e.mark == Mark::Tmpfs
                {
                    e.mark = Mark::TmpfsRo;
                }
            }
            Op::Symlink { target, link } => put(m, link, Mark::Link, why, Some(target.clone())),
            Op::Proc(d) | Op::Dev(d) => put(m, d, Mark::Special, why, None),
            _ => {}
        }
    }
    map
}

/// The tree, indented by containment. `color`: ANSI colours for the marks.
pub fn render(plan: &Plan, color: bool) -> String {
    let map = entries(plan);
    let mut out = String::new();
    let mut stack: Vec<&Path> = Vec::new();
    let width: usize = 44;
    for (path, e) in &map {
        while stack
            .last()
            .is_some_and(|top| !path.starts_with(top) || *top == path.as_path())
        {
            stack.pop();
        }
        let depth = stack.len();
        // Paths come from the project: no control character of theirs reaches the terminal.
        let name = printable(
            stack
                .last()
                .map_or(path.as_path(), |top| path.strip_prefix(top).unwrap_or(path))
                .as_os_str(),
        );
        let name = match &e.target {
            Some(t) => format!("{name} -> {}", printable(t.as_os_str())),
            None => name,
        };
        let label = format!("[{}]", e.mark.label());
        let (on, off) = match color {
            true => (e.mark.color(), "\x1b[0m"),
            false => ("", ""),
        };
        let left = format!("{}{}", "  ".repeat(depth), name);
        let pad = width.saturating_sub(left.chars().count()).max(1);
        out.push_str(&format!(
            "{left}{}{on}{label:<12}{off} {}\n",
            " ".repeat(pad),
            terminal(&e.why)
        ));
        stack.push(path);
    }
    out.push_str("Anything not listed does not exist inside.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Plan, Step};
    use super::*;

    fn step(op: Op, why: &str) -> Step {
        Step {
            op,
            why: why.to_owned(),
        }
    }

    #[test]
    fn marks_and_nesting_follow_the_steps() {
        let plan = Plan {
            bwrap: "/usr/bin/bwrap".into(),
            interactive: false,
            steps: vec![
                step(Op::RoBind("/usr".into()), "system"),
                step(
                    Op::Symlink {
                        target: "usr/bin".into(),
                        link: "/bin".into(),
                    },
                    "merged /usr",
                ),
                step(
                    Op::Tmpfs {
                        dest: "/home/u".into(),
                        size: None,
                    },
                    "empty home",
                ),
                step(Op::Bind("/home/u/src/p".into()), "the project"),
                step(Op::EmptyFile("/home/u/src/p/.env".into()), "dotenv"),
                step(
                    Op::Tmpfs {
                        dest: "/home/u/src/p/.aws".into(),
                        size: None,
                    },
                    "aws",
                ),
                step(Op::RemountRo("/home/u/src/p/.aws".into()), "ro"),
            ],
            command: vec![],
            prep: vec![],
            warnings: vec![],
            notes: vec![],
        };
        let text = render(&plan, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("/ ") && lines[0].contains("[empty, ro]"),
            "{text}"
        );
        assert!(lines[1].starts_with("  bin -> usr/bin") && lines[1].contains("[link]"));
        assert!(lines[2].starts_with("  home/u ") && lines[2].contains("[tmpfs]"));
        assert!(lines[3].starts_with("    src/p ") && lines[3].contains("[rw]"));
        assert!(lines[4].starts_with("      .aws ") && lines[4].contains("[empty, ro]"));
        assert!(lines[5].starts_with("      .env ") && lines[5].contains("[masked]"));
        assert!(lines[6].starts_with("  usr ") && lines[6].contains("[ro]"));
        assert!(!text.contains('\x1b'));
        assert!(render(&plan, true).contains("\x1b[32m[rw]"));
    }
}
