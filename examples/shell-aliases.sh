# Shell aliases: type `claude` and get `agentbox run -- claude`.
#
# The simplest: let agentbox write them for the agents it finds installed. In ~/.bashrc or
# ~/.zshrc:
eval "$(agentbox shell-init bash)"     # or: zsh. For fish, in config.fish:
#   agentbox shell-init fish | source

# Or by hand, with the flags you want per agent:
alias claude='agentbox run -- claude --dangerously-skip-permissions'
alias codex='agentbox run -- codex'
alias gemini='agentbox run --env GEMINI_API_KEY -- gemini'
alias aider='agentbox run --env OPENAI_API_KEY -- aider'
# An agent that needs SSH for git push (agentbox's agent signs with the named key only; `ssh-add -l` lists them):
alias claude-push='agentbox run --ssh-agent --ssh-key SHA256:YOUR_KEY --allow-domain github.com:22 -- claude'
# Bypass the alias for a moment: `command claude` or `\claude`.
