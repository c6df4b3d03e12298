//! The project's `.agentbox.toml` from the user's side: `agentbox init` writes a commented one
//! for the user to review, `agentbox trust` shows what trusting it would loosen, then records
//! it. The project is attacker-controlled (an earlier run could write it): the file is written
//! through `hostfs` (no symlink followed, never over an existing one), what is printed from it
//! is escaped, and the hash recorded is that of the very bytes shown.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::config::{self, PROJECT_FILE, Settings};
use crate::error::Fail;
use crate::hostenv::Env;
use crate::text::{printable, printable_str};

/// `--project`, else the checkout's top level (with a note), else the current directory;
/// canonical.
fn project_dir(project: Option<PathBuf>, env: &Env) -> Result<PathBuf> {
    let mut project = project;
    if let Some(note) = crate::host::toplevel::settle(&mut project, env) {
        eprintln!("agentbox: note: {}", crate::text::terminal(&note));
    }
    let dir = match project {
        Some(p) => p,
        None => env.cwd()?.to_owned(),
    };
    std::fs::canonicalize(&dir).map_err(|e| {
        Fail::hint(
            format!("project {}: {e}", printable(dir.as_os_str())),
            "check the path exists (--project DIR)",
        )
        .into()
    })
}

/// What each key of a trusted file adds, compared with the same file untrusted (which may only
/// hide more, deny more hosts, make the network stricter and set limits). Empty: trusting it
/// loosens nothing.
pub fn loosening(s: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    let list = |v: &[String]| {
        v.iter()
            .map(|x| printable_str(x))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut add = |key: &str, what: &str, v: &[String]| {
        if !v.is_empty() {
            out.push(format!("{key}: {what}: {}", list(v)));
        }
    };
    add(
        "allow_domains",
        "hosts the agent may reach",
        &s.allow_domains,
    );
    add(
        "unhide",
        "secrets the scan would mask, shown to the agent",
        &s.unhide,
    );
    add(
        "allow_private_hosts",
        "names that may reach private addresses (your LAN, this host)",
        &s.allow_private_hosts,
    );
    add(
        "allow_registries",
        "the registries your tools name, allowed",
        &s.allow_registries,
    );
    add("ro", "more paths shown read-only", &s.ro);
    add("rw", "more paths the agent may WRITE", &s.rw);
    add("env", "host variables passed in", &s.env);
    add(
        "ssh_keys",
        "ssh-agent keys the agent may sign with (with ssh_agent)",
        &s.ssh_keys,
    );
    // Added to the user's own list: with one set, more servers the agent may sign for.
    add(
        "ssh_hosts",
        "more servers the agent may sign for (with ssh_agent)",
        &s.ssh_hosts,
    );
    add(
        "ports",
        "the agent's servers published on this host (a non-loopback address: your network)",
        &s.ports,
    );
    // Untrusted, a limit counts only below the user's own; trusted, as it is.
    if let Some(m) = &s.memory {
        out.push(format!(
            "memory = {:?}: counts even above the limit you set",
            printable_str(m)
        ));
    }
    if let Some(p) = s.pids {
        out.push(format!("pids = {p}: counts even above the limit you set"));
    }
    if let Some(n) = s.net.as_deref().filter(|n| *n != "none") {
        out.push(format!(
            "net = {:?}: the network on (untrusted, only a stricter one counts)",
            printable_str(n)
        ));
    }
    let flags = [
        (
            "allow_telemetry",
            s.allow_telemetry,
            "the agent's telemetry and update hosts",
        ),
        (
            "allow_debug",
            s.allow_debug,
            "ptrace and perf inside the sandbox",
        ),
        (
            "allow_nested",
            s.allow_nested,
            "nested sandboxes (no Landlock, writable /proc)",
        ),
        (
            "ssh_agent",
            s.ssh_agent,
            "your ssh-agent: the agent can sign with your keys",
        ),
        (
            "docker",
            s.docker,
            "the Docker socket: root-equivalent on this host",
        ),
        (
            "gpu",
            s.gpu,
            "the GPU device nodes: the kernel's GPU driver",
        ),
    ];
    for (key, on, what) in flags {
        if on == Some(true) {
            out.push(format!("{key} = true: {what}"));
        }
    }
    if s.broker == Some(false) {
        out.push(
            "broker = false: the credential broker off (API hosts take any key, the agent's own too)"
                .to_owned(),
        );
    }
    for c in &s.credential {
        out.push(format!(
            "credential: your {} sent to {}",
            printable_str(&c.var),
            printable_str(&c.upstream)
        ));
    }
    out
}

/// `agentbox trust`: shows the file and what it loosens, then records it: with `--yes`, or
/// when the user says yes on the terminal. Without a terminal and without `--yes`, nothing is
/// recorded (a script states its consent).
pub fn trust(project: Option<PathBuf>, yes: bool, env: &Env) -> Result<ExitCode> {
    let dir = project_dir(project, env)?;
    let file = dir.join(PROJECT_FILE);
    // Read as a run reads it: a FIFO the agent left there must not hang this command.
    let bytes = crate::hostfs::read_regular(&file, true, config::MAX_PROJECT_FILE)?.ok_or_else(|| {
        Fail::hint(
            format!("{}: no such file", printable(file.as_os_str())),
            "run agentbox trust in a project that has a .agentbox.toml (agentbox init writes one)",
        )
    })?;
    let settings = config::parse_project(&file, &bytes)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", printable(file.as_os_str()))?;
    let loose = loosening(&settings);
    if loose.is_empty() {
        writeln!(
            out,
            "  loosens nothing: an untrusted file counts in full already"
        )?;
    } else {
        writeln!(out, "  trusting it lets it loosen the sandbox:")?;
        for l in &loose {
            writeln!(out, "  - {l}")?;
        }
    }
    out.flush()?;
    // A file that loosens nothing changes nothing once trusted: no consent to ask for.
    if !yes && !loose.is_empty() {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() || !std::io::stderr().is_terminal() {
            return Err(Fail::hint(
                "not trusted: there is no terminal to ask on",
                format!(
                    "review the file, then: agentbox trust --yes --project {}",
                    crate::text::shell_quote(dir.as_os_str())
                ),
            )
            .into());
        }
        eprint!("Trust it as it is now? [y/N] ");
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("agentbox: not trusted");
            return Ok(ExitCode::from(1));
        }
    }
    config::trust_bytes(&config::dir(env)?, &dir, &bytes)?;
    eprintln!(
        "agentbox: trusting {} as it is now; any change makes it untrusted again",
        printable(file.as_os_str())
    );
    Ok(ExitCode::SUCCESS)
}

/// Marker files and the ecosystem they mean, for `init`'s header.
const MARKERS: &[(&str, &str)] = &[
    ("Cargo.toml", "Rust"),
    ("package.json", "Node"),
    ("pyproject.toml", "Python"),
    ("requirements.txt", "Python"),
    ("setup.py", "Python"),
    ("go.mod", "Go"),
    ("Gemfile", "Ruby"),
    ("pom.xml", "Java"),
    ("build.gradle", "Java"),
    ("build.gradle.kts", "Java"),
];

/// The ecosystems the project's marker files name, each with its marker.
pub fn ecosystems(project: &Path) -> Vec<(&'static str, &'static str)> {
    MARKERS
        .iter()
        .filter(|(m, _)| std::fs::symlink_metadata(project.join(m)).is_ok_and(|m| m.is_file()))
        .map(|(m, e)| (*e, *m))
        .collect()
}

/// The lines `init` writes under "Toolchains and registries": each ecosystem the marker files
/// show, with the `--allow-registry` preset that would let its package tool fetch (commented
/// out: the registry is the one the tool on the host is configured to use, asked at launch).
/// The toolchains in the home are not listed: every run shows them, whatever this file says.
pub fn toolchain_lines(project: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut presets: Vec<&str> = Vec::new();
    for (e, m) in ecosystems(project) {
        out.push(format!("# {e} ({m})"));
        let preset = match e {
            "Rust" => "cargo",
            "Node" => "npm",
            "Python" => "pypi",
            "Go" => "go",
            _ => continue,
        };
        if !presets.contains(&preset) {
            presets.push(preset);
        }
    }
    if !presets.is_empty() {
        let list: Vec<String> = presets.iter().map(|p| format!("\"{p}\"")).collect();
        out.push(format!(
            "# To let the package tools fetch from the registries they are configured to use:\n\
             # allow_registries = [{}]",
            list.join(", ")
        ));
    }
    out
}

/// The text `init` writes: everything commented out but the header, for review.
pub fn init_text(project: &Path, hidden: &[(PathBuf, String)]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# agentbox settings for this project, written by `agentbox init`.\n\
         # Until you run `agentbox trust`, this file may only tighten the sandbox (hide,\n\
         # deny_domains, a stricter net, memory, pids); trusting it lets the rest count too,\n\
         # until it changes. Keys: \"Config files\" in agentbox's README.\n"
    );
    let tools = toolchain_lines(project);
    if !tools.is_empty() {
        let _ = writeln!(t, "# Toolchains and registries found:");
        for l in tools {
            let _ = writeln!(t, "{l}");
        }
        let _ = writeln!(t);
    }
    let _ = writeln!(
        t,
        "# The network is off. To let the agent reach the hosts it needs (find them with\n\
         # `agentbox run --learn`):\n\
         # net = \"filtered\"\n\
         # allow_domains = [\"HOST\"]\n"
    );
    if hidden.is_empty() {
        let _ = writeln!(t, "# The scan found no secret files here today.");
    } else {
        let _ = writeln!(
            t,
            "# Hidden from the agent in every run (found by the scan; nothing to do):"
        );
        for (p, why) in hidden {
            // File names come from the project: escaped, so none can start a line of its own.
            let _ = writeln!(
                t,
                "#   {}  ({})",
                printable(p.as_os_str()),
                printable_str(why)
            );
        }
        let _ = writeln!(
            t,
            "# To show one anyway (only once you know it holds no secret):\n# unhide = [\"PATH\"]"
        );
    }
    let _ = writeln!(
        t,
        "\n# More to hide (globs, relative to the project):\n# hide = [\"secrets/**\"]\n\n\
         # Limits:\n# memory = \"4G\"\n# pids = 1024"
    );
    t
}

/// `agentbox init`: writes `.agentbox.toml` in the project, never over an existing one.
pub fn init(project: Option<PathBuf>, env: &Env) -> Result<ExitCode> {
    let dir = project_dir(project, env)?;
    let file = dir.join(PROJECT_FILE);
    if std::fs::symlink_metadata(&file).is_ok() {
        return Err(Fail::hint(
            format!("{} already exists", printable(file.as_os_str())),
            "edit it, or remove it to write a new one",
        )
        .into());
    }
    let matcher = crate::secrets::Matcher::new(true, &[], &[])?;
    let report = crate::secrets::scan_roots(&[dir.as_path()], &matcher, &[])?;
    let mut hidden: Vec<(PathBuf, String)> = report
        .into_iter()
        .flat_map(|r| r.secrets)
        .map(|f| {
            let rel = f.path.strip_prefix(&dir).unwrap_or(&f.path).to_owned();
            (rel, f.why)
        })
        .collect();
    hidden.sort();
    hidden.dedup();
    let text = init_text(&dir, &hidden);
    let areas = crate::hostfs::Untrusted::new([dir.clone()]);
    let mut f = crate::hostfs::open_file(&file, crate::hostfs::Write::CreateNew, &areas)?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", printable(file.as_os_str())))?;
    eprintln!(
        "agentbox: wrote {}: review it, then run `agentbox trust`",
        printable(file.as_os_str())
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loosening_names_each_key() {
        let s: Settings = toml::from_str(
            "hide = [\"x\"]\nmemory = \"1G\"\nrw = [\"/srv\"]\ndocker = true\nnet = \"filtered\"\n",
        )
        .unwrap();
        let l = loosening(&s);
        assert_eq!(l.len(), 4, "{l:?}");
        assert!(l.iter().any(|x| x.starts_with("memory = \"1G\"")));
        assert!(l[0].starts_with("rw: more paths the agent may WRITE: /srv"));
        assert!(l.iter().any(|x| x.starts_with("docker = true")));
        // Tightening keys loosen nothing.
        let s: Settings = toml::from_str("hide = [\"x\"]\nnet = \"none\"\n").unwrap();
        assert!(loosening(&s).is_empty());
    }

    /// Every key an untrusted file has ignored is named in the preview: a key added to the
    /// config later cannot be trusted unseen.
    #[test]
    fn the_preview_names_every_key_an_untrusted_file_loses() {
        let s: Settings = toml::from_str(
            "allow_domains = [\"a.example\"]\nallow_registries = [\"npm\"]\n\
             allow_private_hosts = [\"mirror.example\"]\nunhide = [\".env\"]\n\
             ro = [\"/srv\"]\nrw = [\"/srv\"]\nenv = [\"X\"]\nallow_telemetry = true\n\
             allow_debug = true\nallow_nested = true\nssh_agent = true\ndocker = true\n\
             net = \"host\"\nmemory = \"1T\"\npids = 100000\nbroker = false\ngpu = true\nssh_keys = [\"SHA256:x\"]\nssh_hosts = [\"git.example\"]\nports = [\"3000\"]\n[[credential]]\nvar = \"GITHUB_TOKEN\"\n\
             header = \"authorization\"\nbearer = true\nbase_url_var = \"GITHUB_API_URL\"\n\
             upstream = \"https://api.github.com\"\n",
        )
        .unwrap();
        let (_, mut ignored) = config::tightening(&s, None);
        // Ignored by `merge` where above the user's own.
        ignored.extend(["memory", "pids"]);
        let preview = loosening(&s).join("\n");
        for key in ignored.iter().flat_map(|k| k.split('/')) {
            assert!(preview.contains(key), "{key} missing from {preview}");
        }
        assert!(
            ignored.len() >= 16 && ignored.contains(&"ssh_hosts"),
            "{ignored:?}"
        );
    }

    #[test]
    fn init_text_parses_and_escapes_names() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("Cargo.toml"), "").unwrap();
        // A file name that would start a line of its own stays in its comment.
        let hidden = vec![(
            PathBuf::from(".env\nrw = [\"/\"]"),
            "dotenv file".to_owned(),
        )];
        let text = init_text(t.path(), &hidden);
        let s: Settings = toml::from_str(&text).unwrap();
        assert_eq!(s, Settings::default(), "{text}");
        assert!(text.contains("# Rust (Cargo.toml)"));
        assert!(text.contains(".env\\nrw"));
        // The registry suggestion is one uncommenting away from a valid key.
        let line = text
            .lines()
            .find(|l| l.starts_with("# allow_registries"))
            .unwrap();
        let s: Settings = toml::from_str(&line[2..]).unwrap();
        assert_eq!(s.allow_registries, ["cargo"]);
    }
}
