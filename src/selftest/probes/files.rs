//! Probes of the filesystem: secrets in the home and the project, writes outside, files
//! the host runs later.

use std::fs;
use std::path::Path;

use super::*;

pub(super) fn home() -> Vec<Probe> {
    const C: &str = "home-secrets";
    vec![
        p("home-ssh", C, Blocked, "~/.ssh is not there", |c| {
            absent(&c.home().join(".ssh"))
        }),
        p("home-aws", C, Blocked, "~/.aws is not there", |c| {
            absent(&c.home().join(".aws"))
        }),
        p("home-gnupg", C, Blocked, "~/.gnupg is not there", |c| {
            absent(&c.home().join(".gnupg"))
        }),
        p("home-netrc", C, Blocked, "~/.netrc is not there", |c| {
            absent(&c.home().join(".netrc"))
        }),
        p(
            "home-git-credentials",
            C,
            Blocked,
            "~/.git-credentials is not there",
            |c| absent(&c.home().join(".git-credentials")),
        ),
        p(
            "home-gh",
            C,
            Blocked,
            "~/.config/gh (GitHub token) is not there",
            |c| absent(&c.home().join(".config/gh")),
        ),
        p(
            "home-docker",
            C,
            Blocked,
            "~/.docker (registry auth) is not there",
            |c| absent(&c.home().join(".docker")),
        ),
        p(
            "home-kube",
            C,
            Blocked,
            "~/.kube (cluster credentials) is not there",
            |c| absent(&c.home().join(".kube")),
        ),
        p(
            "home-scratch",
            C,
            Allowed,
            "the empty home is usable scratch space",
            |c| {
                let f = c.home().join(format!(".{}-scratch", c.leftover));
                io_fails(fs::write(&f, "x").and_then(|_| fs::read(&f)))
            },
        ),
    ]
}

pub(super) fn project() -> Vec<Probe> {
    const C: &str = "project-secrets";
    vec![
        p(
            "canary-env",
            C,
            Blocked,
            "a .env in a writable root reads empty",
            |c| secret_read(&c.canary(".env")),
        ),
        p(
            "canary-env-deep",
            C,
            Blocked,
            "a .env three directories down reads empty",
            |c| secret_read(&c.canary("a/b/c/.env")),
        ),
        p(
            "canary-key",
            C,
            Blocked,
            "an id_rsa in a writable root reads empty",
            |c| secret_read(&c.canary("id_rsa")),
        ),
        p(
            "canary-secret-dir",
            C,
            Blocked,
            "a .aws directory in a writable root is empty",
            |c| secret_read(&c.canary(".aws/credentials")),
        ),
        p(
            "canary-symlink",
            C,
            Blocked,
            "a secret reached through a symlink reads empty",
            |c| secret_read(&c.canary(".env.local")),
        ),
        p(
            "canary-hard-link",
            C,
            Blocked,
            "a hard link to a .env reads empty",
            |c| secret_read(&c.canary("linked-notes.txt")),
        ),
        p(
            "canary-upper-case",
            C,
            Blocked,
            "a .ENV (capitals) reads empty",
            |c| secret_read(&c.canary("upper/.ENV")),
        ),
        p(
            "canary-private-pem",
            C,
            Blocked,
            "a .pem holding a private key reads empty",
            |c| secret_read(&c.canary("certs/server.pem")),
        ),
        p(
            "canary-ca-bundle",
            C,
            Allowed,
            "a .pem holding only certificates (a CA bundle) stays readable",
            |c| match fs::read_to_string(c.canary("certs/cacert.pem")) {
                Ok(s) if s.contains("BEGIN CERTIFICATE") => allowed("readable"),
                Ok(_) => blocked("empty"),
                Err(e) => blocked(e.to_string()),
            },
        ),
        p(
            "system-shadow",
            C,
            Blocked,
            "/etc/shadow cannot be read, as on the host (not readable-empty)",
            |_| match fs::File::open("/etc/shadow") {
                Err(e) => blocked(format!(
                    "unreadable: {}",
                    errno_text(e.raw_os_error().unwrap_or(0))
                )),
                Ok(f) if f.metadata().is_ok_and(|m| m.len() == 0) => {
                    allowed("opens (reads as empty)")
                }
                Ok(_) => allowed("readable"),
            },
        ),
        p(
            "canary-env-write",
            C,
            Blocked,
            "a masked .env cannot be written",
            |c| write_fails(&c.canary(".env")),
        ),
        p(
            "project-secrets",
            C,
            Blocked,
            "every secret found in the project reads empty",
            |c| {
                let leaks: Vec<String> = c
                    .project_secrets
                    .iter()
                    .map(|b| path(b))
                    .filter(|p| !secret_read(p).blocked)
                    .map(|p| p.display().to_string())
                    .collect();
                match (leaks.is_empty(), c.project_secrets.len()) {
                    (true, 0) => blocked("the project holds no secret files"),
                    (true, n) => blocked(format!("all {n} read empty")),
                    (false, _) => allowed(format!("readable: {}", leaks.join(", "))),
                }
            },
        ),
        p(
            "canary-template",
            C,
            Allowed,
            ".env.example stays readable",
            |c| match fs::read_to_string(c.canary(".env.example")) {
                Ok(s) if s.contains("EXAMPLE") => allowed("readable"),
                Ok(_) => blocked("empty"),
                Err(e) => blocked(e.to_string()),
            },
        ),
        p(
            "project-write",
            C,
            Allowed,
            "the project is writable",
            |c| {
                let f = path(&c.project).join(format!(".{}-write", c.leftover));
                let r = fs::write(&f, "x").and_then(|_| fs::remove_file(&f));
                io_fails(r)
            },
        ),
    ]
}

pub(super) fn outside() -> Vec<Probe> {
    const C: &str = "write-outside";
    vec![
        p("write-usr", C, Blocked, "/usr cannot be written", |c| {
            write_fails(&Path::new("/usr").join(&c.leftover))
        }),
        p("write-etc", C, Blocked, "/etc cannot be written", |c| {
            write_fails(&Path::new("/etc").join(&c.leftover))
        }),
        p("write-root", C, Blocked, "/ cannot be written", |c| {
            write_fails(&Path::new("/").join(&c.leftover))
        }),
        p("write-dev", C, Blocked, "/dev cannot be filled", |c| {
            write_fails(&Path::new("/dev").join(&c.leftover))
        }),
        p(
            "dev-shm-bounded",
            C,
            Blocked,
            "/dev/shm cannot grow past its size bound",
            |c| {
                let f = Path::new("/dev/shm").join(&c.leftover);
                let r = fs::File::create(&f).and_then(|file| {
                    // tmpfs refuses at once a reservation larger than the whole mount.
                    let len = crate::bwrap::SHM_SIZE + 4096;
                    rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len)
                        .map_err(std::io::Error::from)
                });
                let _ = fs::remove_file(&f);
                io_fails(r)
            },
        ),
        p(
            "dev-usable",
            C,
            Allowed,
            "/dev/null and /dev/shm still take writes",
            |c| {
                let shm = Path::new("/dev/shm").join(&c.leftover);
                let r = fs::write("/dev/null", "x").and_then(|_| fs::write(&shm, "x"));
                let _ = fs::remove_file(&shm);
                io_fails(r)
            },
        ),
        p(
            "write-home-persist",
            C,
            Allowed,
            "writes to ~, /tmp, /var/tmp stay inside",
            |c| {
                // The harness checks afterwards that none of these reached the host.
                let name = &c.leftover;
                let r = [c.home(), "/tmp".into(), "/var/tmp".into()]
                    .iter()
                    .try_for_each(|d| fs::write(d.join(name), "x"));
                io_fails(r)
            },
        ),
    ]
}

/// Landlock, the second wall: `/run` is a read-write tmpfs in bwrap's plan, but Landlock's
/// rules leave it out (agentbox binds host paths under it), so only Landlock refuses a write
/// there. The control shows that bwrap's layer alone would have let it through.
pub(super) fn landlock() -> Vec<Probe> {
    const C: &str = "landlock";
    vec![
        p(
            "landlock-write",
            C,
            Blocked,
            "Landlock refuses a write bwrap's mounts allow (/run)",
            |c| {
                let f = Path::new("/run").join(&c.leftover);
                let r = fs::write(&f, "x");
                let _ = fs::remove_file(&f);
                match r {
                    Ok(()) => allowed(format!(
                        "written: Landlock is not in force (this kernel's Landlock ABI: {})",
                        crate::landlock::abi()
                    )),
                    Err(e) => blocked(errno_text(e.raw_os_error().unwrap_or(0))),
                }
            },
        ),
        p(
            "landlock-bwrap-layer",
            C,
            Allowed,
            "without Landlock /run takes writes: a read-write mount the user may write",
            |_| {
                let run = Path::new("/run");
                let rw = rustix::fs::statvfs(run)
                    .map(|s| !s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY));
                // access(2) asks the mount and the file modes only; Landlock does not answer it.
                let may = rustix::fs::access(run, rustix::fs::Access::WRITE_OK);
                match (rw, may) {
                    (Ok(true), Ok(())) => allowed("read-write mount, writable directory"),
                    (Ok(false), _) => blocked("/run is a read-only mount"),
                    (_, Err(e)) | (Err(e), _) => blocked(errno_text(e.raw_os_error())),
                }
            },
        ),
    ]
}

pub(super) fn runs_later() -> Vec<Probe> {
    const C: &str = "runs-later";
    vec![
        p(
            "git-hooks",
            C,
            Blocked,
            "no hook can be planted in .git/hooks",
            |c| write_fails(&c.canary(".git/hooks/pre-commit")),
        ),
        p(
            "git-config",
            C,
            Blocked,
            ".git/config cannot be changed",
            |c| write_fails(&c.canary(".git/config")),
        ),
        p(
            "git-rename",
            C,
            Blocked,
            ".git cannot be renamed away and replaced",
            |c| io_fails(fs::rename(c.canary(".git"), c.canary(".git-moved"))),
        ),
        p("envrc", C, Blocked, ".envrc cannot be changed", |c| {
            write_fails(&c.canary(".envrc"))
        }),
        p(
            "vscode",
            C,
            Blocked,
            "no task can be added to .vscode",
            |c| write_fails(&c.canary(".vscode/tasks.json")),
        ),
        p("mcp-json", C, Blocked, ".mcp.json cannot be changed", |c| {
            write_fails(&c.canary(".mcp.json"))
        }),
        p(
            "claude-commands",
            C,
            Blocked,
            "no command can be added to .claude/commands",
            |c| write_fails(&c.canary(".claude/commands/evil.md")),
        ),
        p(
            "husky",
            C,
            Blocked,
            "husky's hook scripts cannot be changed",
            |c| write_fails(&c.canary(".husky/pre-commit")),
        ),
        p(
            "devcontainer",
            C,
            Blocked,
            "the dev container config (initializeCommand runs on the host) cannot be changed",
            |c| write_fails(&c.canary(".devcontainer/devcontainer.json")),
        ),
        p(
            "launched-script",
            C,
            Blocked,
            "a script that a protected file launches cannot be changed",
            |c| write_fails(&c.canary("tools/init.sh")),
        ),
        p(
            "git-objects",
            C,
            Allowed,
            "the rest of .git stays writable (commits work)",
            |c| {
                let f = c.canary(".git/objects/agentbox-probe");
                io_fails(fs::write(&f, "x").and_then(|_| fs::remove_file(&f)))
            },
        ),
    ]
}
