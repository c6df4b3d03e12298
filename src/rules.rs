//! The policy lists, kept as data: which names are secrets, which files the host runs or obeys
//! later, and which directories the secret scan may skip. Each entry carries its reason, which
//! `--dry-run` prints next to the bwrap option it causes.
//!
//! This module holds no logic; `secrets.rs` and `bwrap.rs` interpret it.

/// A secret pattern and why it is hidden. A pattern without `/` matches a file or directory name
/// at any depth; one with `/` matches the path relative to the scanned root.
pub struct SecretPattern {
    pub glob: &'static str,
    pub why: &'static str,
}

const fn secret(glob: &'static str, why: &'static str) -> SecretPattern {
    SecretPattern { glob, why }
}

pub const SECRET_PATTERNS: &[SecretPattern] = &[
    secret(".env", "dotenv file: API keys and passwords"),
    secret(".env.*", "dotenv variant: API keys and passwords"),
    secret("*.pem", "PEM key or certificate bundle"),
    secret("*.key", "private key"),
    secret("id_rsa", "SSH private key"),
    secret("id_dsa", "SSH private key"),
    secret("id_ecdsa", "SSH private key"),
    secret("id_ecdsa_sk", "SSH private key"),
    secret("id_ed25519", "SSH private key"),
    secret("id_ed25519_sk", "SSH private key"),
    secret("*.p12", "PKCS#12 key store"),
    secret("*.pfx", "PKCS#12 key store"),
    secret("*.jks", "Java key store"),
    secret("*.keystore", "key store"),
    secret("*.kdbx", "KeePass database"),
    secret(".netrc", "login credentials for remote hosts"),
    secret("_netrc", "login credentials for remote hosts"),
    secret(".git-credentials", "git credential store (tokens in clear)"),
    secret(".npmrc", "package registry auth token"),
    secret(".pypirc", "package index upload credentials"),
    secret(".pgpass", "PostgreSQL passwords"),
    secret(".htpasswd", "HTTP password hashes"),
    secret("credentials.json", "cloud or OAuth client credentials"),
    secret("*.tfvars", "Terraform variables (often secrets)"),
    secret("*.tfstate", "Terraform state (holds secrets in clear)"),
    secret(
        "*.tfstate.backup",
        "Terraform state backup (holds secrets in clear)",
    ),
    secret(".ssh", "SSH keys directory"),
    secret(".gnupg", "GnuPG keyring directory"),
    secret(".aws", "AWS credentials directory"),
];

/// Names that match a secret pattern but are templates by convention: shown, not hidden.
pub const SECRET_EXCEPTIONS: &[&str] = &[
    ".env.example",
    ".env.sample",
    ".env.template",
    ".env.dist",
    ".env.defaults",
];

/// Host files that are secret even to the user's own uid 0: hidden when they exist, so that
/// running agentbox as root does not expose them through the read-only `/etc`.
pub const SYSTEM_SECRETS: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_dsa_key",
];

/// A file or directory that the host runs or obeys after the agent is gone. It is made read-only
/// inside, wherever it appears in a writable root.
pub struct RunsLater {
    /// Path relative to the directory that holds it (one or two components).
    pub path: &'static str,
    pub why: &'static str,
}

const fn later(path: &'static str, why: &'static str) -> RunsLater {
    RunsLater { path, why }
}

/// Found by name anywhere in a writable root.
pub const RUNS_LATER: &[RunsLater] = &[
    later(
        ".gitmodules",
        "submodule URLs and update commands git obeys",
    ),
    later(
        ".envrc",
        "direnv runs it when the user enters the directory",
    ),
    later(
        ".vscode",
        "editor tasks and settings that run commands on the host",
    ),
    later(
        ".idea",
        "IDE run configurations that run commands on the host",
    ),
    later(
        ".mcp.json",
        "MCP servers the agent starts on the host next time",
    ),
    later(
        ".claude/commands",
        "slash commands a later unsandboxed session obeys",
    ),
    later(
        ".claude/agents",
        "subagent definitions a later unsandboxed session obeys",
    ),
    later(
        ".claude/settings.json",
        "Claude Code hooks: shell commands run on the host",
    ),
    later(
        ".claude/settings.local.json",
        "Claude Code hooks: shell commands run on the host",
    ),
    later(".agentbox.toml", "agentbox's own project config"),
];

/// Inside a git directory (the common dir, for worktrees and submodules).
pub const GIT_RUNS_LATER: &[RunsLater] = &[
    later(
        "hooks",
        "git runs these on the host at the next commit, merge or checkout",
    ),
    later(
        "config",
        "core.hooksPath, core.fsmonitor, aliases: commands git runs",
    ),
    later(
        "config.worktree",
        "per-worktree config: same commands as config",
    ),
];

/// Directory names where the scan looks for secrets only, not for files the host runs later
/// (large by design, and nothing in them is run by the host). Secrets are still looked for
/// inside: an earlier run could rename a directory holding a `.env` to one of these names.
pub const PRUNED_DIRS: &[&str] = &["node_modules", "__pycache__", ".git"];

/// A directory holding this file is a cache (cargo's `target/`, many build tools), by the
/// cross-tool convention at <https://bford.info/cachedir/>: searched for secrets only, like
/// `PRUNED_DIRS`.
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";

/// Environment variables that pass into the sandbox by default: the terminal, locale and identity
/// an interactive program needs, and nothing that carries credentials.
pub const ENV_ALLOWLIST: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "COLORTERM",
    "TERM_PROGRAM",
    "LANG",
    "LANGUAGE",
    "TZ",
    "NO_COLOR",
    "EDITOR",
    "VISUAL",
    "PAGER",
];

/// Prefixes of variables that pass too (locale categories).
pub const ENV_ALLOWED_PREFIXES: &[&str] = &["LC_"];
