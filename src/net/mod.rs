//! Filtered networking (`--net filtered`): the allowlist rules, the proxy agentbox runs on the
//! host, and the relay agentbox runs as the sandbox's first process.

pub mod broker;
pub mod dns;
pub mod handoff;
pub mod hint;
pub mod proxy;
pub mod relay;
pub mod rules;
pub mod session;
