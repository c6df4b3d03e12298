//! The policy lists, kept as data: which names are secrets, which files the host runs or obeys
//! later, and which directories the secret scan may skip. Each entry carries its reason, which
//! `--dry-run` prints next to the bwrap option it causes.
//!
//! This module holds no logic; `secrets.rs` and `bwrap.rs` interpret it.

/// How a name that matches is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// By its name alone: masked.
    Name,
    /// By what it holds: masked when it holds a private key (PEM `PRIVATE KEY` blocks, OpenSSH,
    /// PuTTY, anything binary but an X.509 certificate, any text that is not PEM), shown when
    /// it holds only public material (a CA bundle). Unreadable or too large to check: masked.
    PrivateKey,
    /// By what it holds: masked when it contains any of these words (a config file that a tool
    /// needs and that sometimes carries a token). Unreadable or too large: masked.
    Holds(&'static [&'static str]),
}

/// A secret pattern and why it is hidden. A pattern without `/` matches a file or directory name
/// at any depth; `dir/name` matches `name` inside a directory called `dir`, at any depth. Names
/// are compared without regard to ASCII case: `.ENV` and `ID_RSA` are what users mean by `.env`
/// and `id_rsa`, and a project checked out on a case-insensitive disk has them that way.
pub struct SecretPattern {
    pub glob: &'static str,
    pub why: &'static str,
    pub check: Check,
    /// Whether a directory of this name is masked too (false: files only, for names that
    /// source directories also have, such as `crypto_rsa`).
    pub dirs: bool,
}

const fn secret(glob: &'static str, why: &'static str) -> SecretPattern {
    SecretPattern {
        glob,
        why,
        check: Check::Name,
        dirs: true,
    }
}

const fn secret_file(glob: &'static str, why: &'static str) -> SecretPattern {
    SecretPattern {
        glob,
        why,
        check: Check::Name,
        dirs: false,
    }
}

const fn by_content(glob: &'static str, why: &'static str, check: Check) -> SecretPattern {
    SecretPattern {
        glob,
        why,
        check,
        dirs: false,
    }
}

const KEY_OR_CERT: &str =
    "holds a private key (a file of this type that holds only certificates is shown)";

pub const SECRET_PATTERNS: &[SecretPattern] = &[
    secret(".env", "dotenv file: API keys and passwords"),
    secret(".env.*", "dotenv variant: API keys and passwords"),
    by_content("*.pem", KEY_OR_CERT, Check::PrivateKey),
    by_content("*.key", KEY_OR_CERT, Check::PrivateKey),
    by_content("*.crt", KEY_OR_CERT, Check::PrivateKey),
    by_content("*.cer", KEY_OR_CERT, Check::PrivateKey),
    // `id_rsa`, `deploy_rsa`, `github_ed25519`: ssh-keygen's names and the usual renames.
    secret_file("*_rsa", "SSH private key"),
    secret_file("*_dsa", "SSH private key"),
    secret_file("*_ecdsa", "SSH private key"),
    secret_file("*_ed25519", "SSH private key"),
    secret_file("*_ecdsa_sk", "SSH private key (security key handle)"),
    secret_file("*_ed25519_sk", "SSH private key (security key handle)"),
    // `id_rsa.bak`, `id_rsa.old`, `id_ed25519-work` (`.pub` is an exception below).
    secret_file("id_rsa*", "SSH private key (a copy or variant)"),
    secret_file("id_dsa*", "SSH private key (a copy or variant)"),
    secret_file("id_ecdsa*", "SSH private key (a copy or variant)"),
    secret_file("id_ed25519*", "SSH private key (a copy or variant)"),
    secret_file("deploy_key", "SSH deploy key"),
    secret_file("deploy_key*", "SSH deploy key (a copy or variant)"),
    secret_file("*.ppk", "PuTTY private key"),
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
    by_content(
        ".yarnrc.yml",
        "yarn config holding a registry token (one without is shown: yarn needs it)",
        Check::Holds(&["npmAuthToken", "npmAuthIdent", "npmPassword"]),
    ),
    by_content(
        ".yarnrc",
        "yarn 1 config holding a registry token (one without is shown)",
        Check::Holds(&["_auth", "_password"]),
    ),
    secret(".cargo/credentials", "cargo registry token"),
    secret(".cargo/credentials.toml", "cargo registry token"),
    secret(".pgpass", "PostgreSQL passwords"),
    secret(".htpasswd", "HTTP password hashes"),
    secret("credentials.json", "cloud or OAuth client credentials"),
    secret_file(
        "client_secret*.json",
        "OAuth client secret (as Google Cloud names it)",
    ),
    secret_file("service-account*.json", "cloud service-account key"),
    secret_file("service_account*.json", "cloud service-account key"),
    secret("secrets.yml", "application secrets (Rails and others)"),
    secret("secrets.yaml", "application secrets"),
    secret("*.tfvars", "Terraform variables (often secrets)"),
    secret("*.tfstate", "Terraform state (holds secrets in clear)"),
    secret(
        "*.tfstate.backup",
        "Terraform state backup (holds secrets in clear)",
    ),
    secret(".terraformrc", "Terraform CLI config: registry tokens"),
    secret("terraform.rc", "Terraform CLI config: registry tokens"),
    secret("kubeconfig", "Kubernetes cluster credentials"),
    secret("*.kubeconfig", "Kubernetes cluster credentials"),
    secret(".kube/config", "Kubernetes cluster credentials"),
    secret(".docker/config.json", "container registry credentials"),
    secret(".vault-token", "HashiCorp Vault token"),
    secret(".s3cfg", "s3cmd config: AWS keys"),
    secret(".boto", "boto config: AWS and GCS keys"),
    // `.config/gh/hosts.yml`, matched by its directory's name.
    secret("gh/hosts.yml", "GitHub CLI OAuth token"),
    secret(".config/gcloud", "Google Cloud SDK credentials directory"),
    secret(".azure", "Azure CLI credentials directory"),
    secret(".ssh", "SSH keys directory"),
    secret(".gnupg", "GnuPG keyring directory"),
    secret(".aws", "AWS credentials directory"),
];

/// Names that match a secret pattern but are templates or public halves by convention: shown,
/// not hidden. Same form as the patterns (a name, `*suffix` or `prefix*`), any case.
pub const SECRET_EXCEPTIONS: &[&str] = &[
    ".env.example",
    ".env.sample",
    ".env.template",
    ".env.dist",
    ".env.defaults",
    // The public half of an SSH key pair (`id_rsa.pub`, `deploy_key.pub`).
    "*.pub",
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
    "/etc/security/opasswd",
];

/// What agentbox does about a runs-later entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Guard {
    /// Made read-only inside (a bind over it), and checked at exit for a swap.
    ReadOnly,
    /// Left writable, because agents edit it as part of their work (instruction files, CI
    /// workflows), and reported at exit when the agent created, changed or removed it.
    Audit,
}

/// A file or directory that the host runs or obeys after the agent is gone. It is made read-only
/// inside (or, for `Guard::Audit`, watched), wherever it appears in a writable root.
pub struct RunsLater {
    /// Path relative to the directory that holds it (one or two components).
    pub path: &'static str,
    pub why: &'static str,
    pub guard: Guard,
}

/// Made read-only.
pub const fn later(path: &'static str, why: &'static str) -> RunsLater {
    RunsLater {
        path,
        why,
        guard: Guard::ReadOnly,
    }
}

/// Watched only: reported at exit if the agent changed it.
pub const fn watch(path: &'static str, why: &'static str) -> RunsLater {
    RunsLater {
        path,
        why,
        guard: Guard::Audit,
    }
}

/// Found by name anywhere in a writable root, whatever the agent. The project files each agent
/// obeys are listed with its profile (`profile::builtin`, field `project`) and apply in every
/// run as well: the host may run any agent in this project later.
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
    // Zed runs the language servers and tasks its project settings name.
    later(
        ".zed",
        "editor settings and tasks that run commands on the host",
    ),
    // Continue (an editor extension) starts the MCP servers its project config names.
    later(
        ".continue",
        "editor assistant config: MCP servers it starts on the host",
    ),
    // Neovim (with 'exrc') and Vim source these on open.
    later(".nvim.lua", "the editor runs it when it opens the project"),
    later(".nvimrc", "the editor runs it when it opens the project"),
    later(".exrc", "the editor runs it when it opens the project"),
    // initializeCommand runs on the host before any container exists.
    later(
        ".devcontainer",
        "dev container config: initializeCommand runs on the host",
    ),
    later(
        ".devcontainer.json",
        "dev container config: initializeCommand runs on the host",
    ),
    // Hook frameworks: what git's hooks (installed once, on the host) run at each commit.
    // Names match at any depth, so lefthook's `.config/lefthook.yml` is covered too.
    later(".husky", "husky: git hooks run these scripts on the host"),
    later(
        ".pre-commit-config.yaml",
        "pre-commit: the commands git hooks run on the host",
    ),
    later(
        ".pre-commit-hooks.yaml",
        "pre-commit: hook definitions with the commands they run",
    ),
    later(
        "lefthook.yml",
        "lefthook: the commands git hooks run on the host",
    ),
    later(
        ".lefthook.yml",
        "lefthook: the commands git hooks run on the host",
    ),
    later(
        "lefthook.yaml",
        "lefthook: the commands git hooks run on the host",
    ),
    later(
        ".lefthook.yaml",
        "lefthook: the commands git hooks run on the host",
    ),
    later(
        "lefthook.toml",
        "lefthook: the commands git hooks run on the host",
    ),
    later(
        ".lefthook.toml",
        "lefthook: the commands git hooks run on the host",
    ),
    later(
        "lefthook.json",
        "lefthook: the commands git hooks run on the host",
    ),
    later(
        ".lefthook.json",
        "lefthook: the commands git hooks run on the host",
    ),
    later(
        "lefthook.jsonc",
        "lefthook: the commands git hooks run on the host",
    ),
    later(
        ".lefthook.jsonc",
        "lefthook: the commands git hooks run on the host",
    ),
    later(
        "lefthook-local.yml",
        "lefthook local config: the commands git hooks run on the host",
    ),
    later(
        ".lefthook-local.yml",
        "lefthook local config: the commands git hooks run on the host",
    ),
    later(
        "lefthook-local.yaml",
        "lefthook local config: the commands git hooks run on the host",
    ),
    later(
        ".lefthook-local.yaml",
        "lefthook local config: the commands git hooks run on the host",
    ),
    later(
        "lefthook-local.toml",
        "lefthook local config: the commands git hooks run on the host",
    ),
    later(
        "lefthook-local.json",
        "lefthook local config: the commands git hooks run on the host",
    ),
    later(".lefthook", "lefthook: scripts git hooks run on the host"),
    later(
        ".lefthook-local",
        "lefthook: scripts git hooks run on the host",
    ),
    later(
        ".overcommit.yml",
        "overcommit: the commands git hooks run on the host",
    ),
    later(".git-hooks", "overcommit: repository hooks run on the host"),
    later(".agentbox.toml", "agentbox's own project config"),
    // CI runs these with the repository's secrets once pushed. Agents edit CI as ordinary
    // work, and nothing runs before the user pushes: watched, not locked.
    watch(".github/workflows", "runs in CI on push"),
    watch(".gitlab-ci.yml", "runs in CI on push"),
    watch(".gitea/workflows", "runs in CI on push"),
    watch(".forgejo/workflows", "runs in CI on push"),
    watch(".circleci", "runs in CI on push"),
    watch(".buildkite", "runs in CI on push"),
    watch(".travis.yml", "runs in CI on push"),
    watch(".drone.yml", "runs in CI on push"),
    watch(".woodpecker", "runs in CI on push"),
    watch(".woodpecker.yml", "runs in CI on push"),
    watch("azure-pipelines.yml", "runs in CI on push"),
    watch("bitbucket-pipelines.yml", "runs in CI on push"),
    watch("Jenkinsfile", "runs in CI on push"),
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

/// Directory names where the scan looks for secrets only: git's own directory, whose runs-later
/// files the git model finds as git sees them.
pub const PRUNED_DIRS: &[&str] = &[".git"];

/// Installed packages: the scan looks for secrets and git repositories inside, not for
/// runs-later names. Packages ship `.husky/`, `.vscode/`, CI files, which no host tool obeys
/// there, and locking them (with every directory above them pinned) broke `npm ci` and filled
/// the exit audit after an install. A git repository inside is another matter: staged in the
/// outer repository, the user's `git status` runs its fsmonitor, so it is modelled (and
/// audited) like any other. Renaming a protected item's directory to one of these names is no
/// way around: every directory above a protected item is pinned for the run, and what a run
/// creates or moves is in its exit audit.
pub const PACKAGE_DIRS: &[&str] = &["node_modules"];

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
