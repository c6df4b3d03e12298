//! The built-in toolchains and caches, as data. Paths are relative to the toolchain's root
//! (or to the home, for `default` and `home_files`). No logic here; versions and layouts move,
//! so keep this easy to correct.

use super::{Cache, Toolchain};

const BASE: Toolchain = Toolchain {
    name: "",
    var: None,
    default: &[],
    show: &[""],
    checked: &[],
    hide: &[],
    path: &[],
    set_var: false,
    home_files: &[],
    pass: &[],
    follow: false,
};

/// npm's global configuration inside a Node prefix (`PREFIX/etc/npmrc`) may hold a token.
pub const TOOLCHAINS: &[Toolchain] = &[
    // The toolchains themselves; rustup's proxies find them by RUSTUP_HOME.
    Toolchain {
        name: "rustup",
        var: Some("RUSTUP_HOME"),
        default: &[".rustup"],
        set_var: true,
        pass: &["RUSTUP_TOOLCHAIN"],
        ..BASE
    },
    // Only the proxies and the configuration: CARGO_HOME inside is agentbox's cache (the
    // registry, git checkouts), and `credentials.toml` stays outside.
    Toolchain {
        name: "cargo",
        var: Some("CARGO_HOME"),
        default: &[".cargo"],
        show: &["bin"],
        checked: &["config.toml", "config"],
        path: &["bin"],
        ..BASE
    },
    Toolchain {
        name: "nvm",
        var: Some("NVM_DIR"),
        default: &[".nvm"],
        show: &["versions", "alias", "nvm.sh", "nvm-exec"],
        hide: &["versions/node/*/etc/npmrc"],
        set_var: true,
        ..BASE
    },
    Toolchain {
        name: "fnm",
        var: Some("FNM_DIR"),
        default: &[".local/share/fnm", ".fnm"],
        show: &["node-versions", "aliases"],
        hide: &["node-versions/*/installation/etc/npmrc"],
        path: &["aliases/default/bin"],
        set_var: true,
        ..BASE
    },
    Toolchain {
        name: "volta",
        var: Some("VOLTA_HOME"),
        default: &[".volta"],
        show: &["bin", "tools"],
        hide: &["tools/image/node/*/etc/npmrc"],
        path: &["bin"],
        set_var: true,
        ..BASE
    },
    // The shims, pyenv itself (libexec: what the shims exec) and the versions.
    Toolchain {
        name: "pyenv",
        var: Some("PYENV_ROOT"),
        default: &[".pyenv"],
        hide: &["versions/*/pip.conf", "versions/*/etc/pip.conf"],
        path: &["shims", "bin"],
        set_var: true,
        ..BASE
    },
    Toolchain {
        name: "asdf",
        var: Some("ASDF_DATA_DIR"),
        default: &[".asdf"],
        hide: &["installs/nodejs/*/etc/npmrc"],
        path: &["shims", "bin"],
        set_var: true,
        home_files: &[".tool-versions"],
        ..BASE
    },
    // mise's global config can carry an [env] table with secrets: not shown (a project's
    // mise.toml picks the versions).
    Toolchain {
        name: "mise",
        var: Some("MISE_DATA_DIR"),
        default: &[".local/share/mise"],
        show: &["installs", "shims"],
        hide: &["installs/node/*/etc/npmrc"],
        path: &["shims"],
        set_var: true,
        ..BASE
    },
    // GOPATH's bin (go install); the module cache is agentbox's own (GOMODCACHE).
    Toolchain {
        name: "gopath",
        var: Some("GOPATH"),
        default: &["go"],
        show: &["bin"],
        path: &["bin"],
        ..BASE
    },
    // Go SDKs that `go install golang.org/dl/goX` downloads, and GOROOT wherever it is.
    Toolchain {
        name: "go-sdk",
        default: &["sdk"],
        ..BASE
    },
    Toolchain {
        name: "goroot",
        var: Some("GOROOT"),
        path: &["bin"],
        set_var: true,
        ..BASE
    },
    Toolchain {
        name: "bun",
        var: Some("BUN_INSTALL"),
        default: &[".bun"],
        show: &["bin", "install/global"],
        path: &["bin"],
        set_var: true,
        ..BASE
    },
    Toolchain {
        name: "deno",
        var: Some("DENO_INSTALL"),
        default: &[".deno"],
        show: &["bin"],
        path: &["bin"],
        ..BASE
    },
    Toolchain {
        name: "sdkman",
        var: Some("SDKMAN_DIR"),
        default: &[".sdkman"],
        show: &["candidates"],
        path: &["candidates/*/current/bin"],
        set_var: true,
        pass: &["JAVA_HOME"],
        ..BASE
    },
    // A general bin that may hold anything: scanned for secrets like a project, its
    // executables shown one by one, and what they run too (pipx venvs, a native installer's
    // versions directory).
    Toolchain {
        name: "local-bin",
        default: &[".local/bin"],
        show: &[],
        path: &[""],
        follow: true,
        ..BASE
    },
];

pub const CACHES: &[Cache] = &[
    Cache {
        name: "cargo",
        commands: &["cargo"],
        vars: &[("CARGO_HOME", "")],
        path: &["bin"],
        about: "cargo's home: registry index, crates, git checkouts, cargo install",
    },
    Cache {
        name: "npm",
        commands: &["npm", "npx"],
        vars: &[("npm_config_cache", "")],
        path: &[],
        about: "npm's package cache",
    },
    Cache {
        name: "yarn",
        commands: &["yarn"],
        vars: &[("YARN_CACHE_FOLDER", "")],
        path: &[],
        about: "yarn's package cache",
    },
    Cache {
        name: "pip",
        commands: &["pip", "pip3", "python3", "python"],
        vars: &[("PIP_CACHE_DIR", "")],
        path: &[],
        about: "pip's wheel and download cache",
    },
    Cache {
        name: "go",
        commands: &["go"],
        vars: &[
            ("GOMODCACHE", "mod"),
            ("GOCACHE", "build"),
            ("GOBIN", "bin"),
        ],
        path: &["bin"],
        about: "Go's module and build caches, and what go install makes",
    },
    Cache {
        name: "bun",
        commands: &["bun"],
        vars: &[("BUN_INSTALL_CACHE_DIR", "")],
        path: &[],
        about: "bun's package cache",
    },
    Cache {
        name: "deno",
        commands: &["deno"],
        vars: &[("DENO_DIR", "")],
        path: &[],
        about: "deno's module cache",
    },
];
