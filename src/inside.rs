//! Where agentbox's own things are inside the sandbox: the names both sides agree on, the
//! planner that mounts them and the programs (shim, relay, probes) that use them inside. Only
//! constants: every layer may import this module, and it imports nothing.

/// Where agentbox itself is inside the sandbox (its shim, the relay, the probe runner).
pub const SELF_INSIDE: &str = "/run/agentbox/agentbox";

/// A directory in the sandbox's private /run, first on PATH, with a symlink per exposed
/// executable: the host's PATH may name it somewhere the sandbox does not show.
pub const SHIM_DIR: &str = "/run/agentbox/bin";

/// Where the forwarded ssh-agent socket appears.
pub const SSH_AGENT_INSIDE: &str = "/run/agentbox/ssh-agent.sock";

/// Where `--docker`'s filtered socket appears (`DOCKER_HOST` names it).
pub const DOCKER_INSIDE: &str = "/run/agentbox/docker.sock";

/// Where `--port`'s socket appears: the published ports' connections come in through it.
pub const PORTS_INSIDE: &str = "/run/agentbox/ports.sock";

/// The relay's proxy port inside the sandbox (HTTP and SOCKS5 on the same port).
pub const PROXY_PORT: u16 = 3128;

/// The relay's credential broker inside the sandbox: agents' base URLs point here. An address
/// of its own on loopback, always in NO_PROXY: 127.0.0.1 goes through the proxy when the user
/// allows the host's loopback, and NO_PROXY cannot name a port.
pub const BROKER_ADDR: &str = "127.0.0.3";
pub const BROKER_PORT: u16 = 3129;

/// Where the host proxy's socket directory appears inside.
pub const SOCKET_DIR: &str = "/run/agentbox/net";

/// The host proxy's socket, in its directory on the host and in `SOCKET_DIR` inside.
pub const SOCKET_NAME: &str = "proxy.sock";

/// This run's proxy token, which the relay reads and presents to the host proxy.
pub const TOKEN_FILE: &str = "/run/agentbox/token";

/// Where agentbox's package caches appear inside (`DATA/agentbox/cache/NAME` on the host):
/// outside the home, so no mount point is made in an agent's persistent home, and in the
/// sandbox's own fresh root, where nothing could have planted a symlink on the way.
pub const CACHE_INSIDE: &str = "/var/cache/agentbox";
