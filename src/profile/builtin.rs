//! The built-in agent profiles, as data (from ../shared/AGENTS.md; versions move, so keep this
//! easy to correct). Paths are relative to the home. No logic here.

use super::{Builtin, CredentialSpec};
use crate::rules::{later, watch};

pub const PROFILES: &[Builtin] = &[
    Builtin {
        name: "claude",
        about: "Anthropic Claude Code",
        commands: &["claude"],
        state: &[
            ".claude/",
            ".claude.json",
            ".local/state/claude/",
            ".cache/claude/",
        ],
        runtime: &[],
        env: &[
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "ANTHROPIC_BASE_URL",
            "ANTHROPIC_MODEL",
            "CLAUDE_CODE_USE_BEDROCK",
            "CLAUDE_CODE_USE_VERTEX",
        ],
        quiet: &[
            ("DISABLE_TELEMETRY", "1"),
            ("DISABLE_ERROR_REPORTING", "1"),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ],
        always: &[("DISABLE_AUTOUPDATER", "1")],
        domains: &[
            "api.anthropic.com",
            "claude.ai",
            "console.anthropic.com",
            "platform.claude.com",
        ],
        telemetry: &[
            "statsig.anthropic.com",
            "*.sentry.io",
            "downloads.claude.ai",
        ],
        nested: false,
        notes: &[
            "as root: Claude Code refuses --dangerously-skip-permissions; run agentbox as a user",
            "its login lives in agentbox's own home for it: log in once inside, or set \
             ANTHROPIC_API_KEY on the host (the credential broker holds it)",
        ],
        credentials: &[
            CredentialSpec {
                var: "ANTHROPIC_API_KEY",
                header: "x-api-key",
                bearer: false,
                base_url_var: "ANTHROPIC_BASE_URL",
                upstream: "https://api.anthropic.com",
            },
            CredentialSpec {
                var: "ANTHROPIC_AUTH_TOKEN",
                header: "authorization",
                bearer: true,
                base_url_var: "ANTHROPIC_BASE_URL",
                upstream: "https://api.anthropic.com",
            },
            // `claude setup-token`'s long-lived subscription token: sent as a bearer token to
            // the base URL, like ANTHROPIC_AUTH_TOKEN.
            CredentialSpec {
                var: "CLAUDE_CODE_OAUTH_TOKEN",
                header: "authorization",
                bearer: true,
                base_url_var: "ANTHROPIC_BASE_URL",
                upstream: "https://api.anthropic.com",
            },
        ],
        project: &[
            later(
                ".mcp.json",
                "MCP servers the agent starts on the host next time",
            ),
            later(
                ".claude/settings.json",
                "Claude Code hooks: shell commands run on the host",
            ),
            later(
                ".claude/settings.local.json",
                "Claude Code hooks: shell commands run on the host",
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
                ".claude/skills",
                "skills (instructions and scripts) a later session runs",
            ),
            later(
                ".claude/hooks",
                "hook scripts Claude Code settings run on the host",
            ),
            // Instruction files: the agent is expected to keep them up to date, so a lock
            // would break ordinary work; what it wrote is reported instead.
            watch(
                "CLAUDE.md",
                "instructions a later Claude Code session follows",
            ),
            watch(
                "CLAUDE.local.md",
                "instructions a later Claude Code session follows",
            ),
            watch(
                ".claude/CLAUDE.md",
                "instructions a later Claude Code session follows",
            ),
        ],
    },
    Builtin {
        name: "codex",
        about: "OpenAI Codex CLI",
        commands: &["codex"],
        state: &[".codex/"],
        runtime: &[],
        env: &["OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_HOME"],
        quiet: &[],
        always: &[],
        domains: &["api.openai.com", "chatgpt.com", "auth.openai.com"],
        // Update checks and experiments, seen even with an API key and a custom provider.
        telemetry: &["ab.chatgpt.com", "github.com", "api.github.com"],
        nested: true,
        notes: &[
            "Codex runs its own bubblewrap sandbox inside: this profile allows nested user \
             namespaces (or run codex with its sandbox off: --sandbox danger-full-access)",
            "ChatGPT login in a headless sandbox: use the device-code login",
            "credential broker: Codex reads OPENAI_API_KEY only for a provider that names it \
             (env_key) and ignores OPENAI_BASE_URL: point one at $OPENAI_BASE_URL's value \
             inside (http://127.0.0.3:3129/openai), see README",
        ],
        credentials: &[CredentialSpec {
            var: "OPENAI_API_KEY",
            header: "authorization",
            bearer: true,
            base_url_var: "OPENAI_BASE_URL",
            upstream: "https://api.openai.com/v1",
        }],
        project: &[
            // Loaded for trusted projects: MCP servers, notify commands, sandbox settings.
            later(
                ".codex",
                "Codex project config: MCP servers and commands it runs",
            ),
            watch("AGENTS.md", "instructions a later agent session follows"),
            watch(
                "AGENTS.override.md",
                "instructions a later Codex session follows",
            ),
        ],
    },
    Builtin {
        name: "gemini",
        about: "Google Gemini CLI",
        commands: &["gemini"],
        state: &[".gemini/"],
        runtime: &[],
        env: &[
            "GEMINI_API_KEY",
            "GOOGLE_API_KEY",
            "GOOGLE_GENAI_USE_VERTEXAI",
            "GOOGLE_CLOUD_PROJECT",
            "GOOGLE_CLOUD_LOCATION",
        ],
        quiet: &[],
        always: &[],
        domains: &[
            "generativelanguage.googleapis.com",
            "cloudcode-pa.googleapis.com",
            "oauth2.googleapis.com",
            "accounts.google.com",
        ],
        telemetry: &["play.googleapis.com"],
        nested: false,
        notes: &[
            "Gemini CLI reads keys from .env files, which agentbox masks: set GEMINI_API_KEY on \
             the host instead (the credential broker holds it)",
            "credential broker: with GOOGLE_GEMINI_BASE_URL set, Gemini CLI picks its gateway \
             auth, which -p refuses: select the API key in .gemini/settings.json \
             (security.auth.selectedType = \"gemini-api-key\")",
        ],
        credentials: &[
            CredentialSpec {
                var: "GEMINI_API_KEY",
                header: "x-goog-api-key",
                bearer: false,
                base_url_var: "GOOGLE_GEMINI_BASE_URL",
                upstream: "https://generativelanguage.googleapis.com",
            },
            CredentialSpec {
                var: "GOOGLE_API_KEY",
                header: "x-goog-api-key",
                bearer: false,
                base_url_var: "GOOGLE_GEMINI_BASE_URL",
                upstream: "https://generativelanguage.googleapis.com",
            },
        ],
        project: &[
            // settings.json (MCP servers, hooks, tool discovery commands), commands/*.toml.
            later(
                ".gemini",
                "Gemini CLI project settings: MCP servers and commands it runs",
            ),
            watch(
                "GEMINI.md",
                "instructions a later Gemini CLI session follows",
            ),
        ],
    },
    Builtin {
        name: "aider",
        about: "aider",
        commands: &["aider"],
        state: &[".aider/"],
        runtime: &[],
        env: &[
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "GEMINI_API_KEY",
            "OPENROUTER_API_KEY",
            "DEEPSEEK_API_KEY",
            "OPENAI_API_BASE",
        ],
        quiet: &[("AIDER_ANALYTICS", "false")],
        // The model-price table ships with litellm; without this it fetches a fresh one.
        always: &[
            ("AIDER_CHECK_UPDATE", "false"),
            ("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
        ],
        domains: &["api.openai.com", "api.anthropic.com"],
        telemetry: &[],
        nested: false,
        notes: &[
            "aider reads keys from .env, which agentbox masks: set them on the host instead \
             (the credential broker holds OPENAI, ANTHROPIC, GEMINI, OPENROUTER and DEEPSEEK \
             keys; its base URL for OpenAI is OPENAI_API_BASE)",
            "add your model provider's API host with --allow-domain if it is not OpenAI or \
             Anthropic and its key is not one the broker holds",
        ],
        // aider talks to the APIs through litellm, which takes each provider's base URL from
        // the environment (aider venv, site-packages/litellm/): OPENAI_BASE_URL, then
        // OPENAI_API_BASE (main.py; aider's --openai-api-base sets the latter, aider/main.py),
        // ANTHROPIC_API_BASE, then ANTHROPIC_BASE_URL, `/v1/messages` appended, `x-api-key`
        // (main.py, llms/anthropic/common_utils.py), GEMINI_API_BASE + `/models/M:method` with
        // `x-goog-api-key` (main.py, llms/vertex_ai/vertex_llm_base.py _check_custom_proxy),
        // OPENROUTER_API_BASE (main.py), DEEPSEEK_API_BASE
        // (llms/deepseek/chat/transformation.py). The defaults are litellm's own. OpenAI's is
        // OPENAI_API_BASE, aider's documented name: the one a host already sets for aider.
        credentials: &[
            CredentialSpec {
                var: "OPENAI_API_KEY",
                header: "authorization",
                bearer: true,
                base_url_var: "OPENAI_API_BASE",
                upstream: "https://api.openai.com/v1",
            },
            CredentialSpec {
                var: "ANTHROPIC_API_KEY",
                header: "x-api-key",
                bearer: false,
                base_url_var: "ANTHROPIC_BASE_URL",
                upstream: "https://api.anthropic.com",
            },
            CredentialSpec {
                var: "GEMINI_API_KEY",
                header: "x-goog-api-key",
                bearer: false,
                base_url_var: "GEMINI_API_BASE",
                upstream: "https://generativelanguage.googleapis.com/v1beta",
            },
            CredentialSpec {
                var: "OPENROUTER_API_KEY",
                header: "authorization",
                bearer: true,
                base_url_var: "OPENROUTER_API_BASE",
                upstream: "https://openrouter.ai/api/v1",
            },
            CredentialSpec {
                var: "DEEPSEEK_API_KEY",
                header: "authorization",
                bearer: true,
                base_url_var: "DEEPSEEK_API_BASE",
                upstream: "https://api.deepseek.com/beta",
            },
        ],
        project: &[
            // lint-cmd and test-cmd are shell commands aider runs after each edit.
            later(
                ".aider.conf.yml",
                "aider config: lint and test commands it runs",
            ),
        ],
    },
    Builtin {
        name: "opencode",
        about: "opencode",
        commands: &["opencode"],
        state: &[
            ".config/opencode/",
            ".local/share/opencode/",
            ".cache/opencode/",
            ".local/state/opencode/",
        ],
        runtime: &[],
        // Its keys are not brokered (see the note): they pass only with --env NAME.
        env: &["OPENCODE_CONFIG"],
        quiet: &[],
        always: &[],
        domains: &["opencode.ai", "api.opencode.ai", "models.dev"],
        telemetry: &[],
        nested: false,
        notes: &[
            "opencode is built on Bun, which ignores proxy settings: agentbox's capture of \
             proxy-ignoring clients carries it",
            "add your model provider's API host with --allow-domain",
            "its API keys are not brokered (no base-URL variable of opencode's is known to \
             agentbox) and not passed: --env ANTHROPIC_API_KEY (or another) passes one, and \
             it is then readable inside",
        ],
        credentials: &[],
        project: &[
            later(
                "opencode.json",
                "opencode config: MCP servers, formatters and LSPs it runs",
            ),
            later(
                "opencode.jsonc",
                "opencode config: MCP servers, formatters and LSPs it runs",
            ),
            // plugins are JavaScript opencode loads and runs.
            later(
                ".opencode",
                "opencode plugins, commands and agents it loads",
            ),
        ],
    },
    Builtin {
        name: "cursor-agent",
        about: "Cursor CLI",
        commands: &["cursor-agent", "agent"],
        state: &[".cursor/", ".config/cursor/"],
        runtime: &[],
        // Not brokered (see the note): CURSOR_API_KEY passes only with --env.
        env: &[],
        quiet: &[],
        always: &[("NO_OPEN_BROWSER", "1")],
        domains: &["*.cursor.sh", "*.cursorapi.com"],
        telemetry: &[],
        nested: false,
        notes: &[
            "Cursor's CLI ignores proxy settings: agentbox's capture carries it",
            "CURSOR_API_KEY is not brokered (no base-URL variable of Cursor's CLI is known to \
             agentbox) and not passed: --env CURSOR_API_KEY passes it, readable inside; or log \
             in inside",
        ],
        credentials: &[],
        project: &[
            // mcp.json, hooks.json, rules, commands.
            later(
                ".cursor",
                "Cursor project config: MCP servers and hooks it runs",
            ),
            watch(
                ".cursorrules",
                "instructions a later Cursor session follows",
            ),
        ],
    },
    Builtin {
        name: "copilot",
        about: "GitHub Copilot CLI",
        commands: &["copilot"],
        state: &[".copilot/"],
        runtime: &[],
        // Not brokered (see the note): the tokens pass only with --env.
        env: &[],
        quiet: &[],
        always: &[],
        domains: &["api.github.com", "github.com", "*.githubcopilot.com"],
        telemetry: &[],
        nested: false,
        notes: &[
            "COPILOT_GITHUB_TOKEN, GH_TOKEN and GITHUB_TOKEN are not brokered (no \
             base-URL variable of the Copilot CLI is known to agentbox) and not passed: --env COPILOT_GITHUB_TOKEN passes one, readable inside \
             (a token that can push to your repositories: prefer a Copilot-only one); or log \
             in inside",
        ],
        credentials: &[],
        project: &[watch(
            ".github/copilot-instructions.md",
            "instructions a later Copilot session follows",
        )],
    },
    Builtin {
        name: "amp",
        about: "Amp",
        commands: &["amp"],
        state: &[".config/amp/", ".local/share/amp/"],
        runtime: &[],
        // Not brokered (see the note): AMP_API_KEY passes only with --env.
        env: &[],
        quiet: &[],
        always: &[],
        domains: &["ampcode.com", "*.ampcode.com"],
        telemetry: &[],
        nested: false,
        notes: &[
            "Amp is built on Bun, which ignores proxy settings: agentbox's capture carries it",
            "AMP_API_KEY is not brokered (no base-URL variable of Amp's is known to agentbox) \
             and not passed: --env AMP_API_KEY passes it, readable inside; or log in inside",
        ],
        credentials: &[],
        project: &[
            // Workspace settings: MCP servers (approved once), tool permissions.
            later(".amp", "Amp workspace settings: MCP servers it runs"),
        ],
    },
    Builtin {
        name: "generic",
        about: "any other command: the bare defaults",
        commands: &[],
        state: &[],
        runtime: &[],
        env: &[],
        quiet: &[],
        always: &[],
        domains: &[],
        telemetry: &[],
        nested: false,
        notes: &[],
        credentials: &[],
        project: &[],
    },
];
