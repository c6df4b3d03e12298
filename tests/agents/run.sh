#!/usr/bin/env bash
# Real coding agents inside agentbox: the end-to-end check that the sandbox is usable, not only
# tight.
#
#   AGENTBOX=/path/to/agentbox bash tests/agents/run.sh     (as root, as CI does)
#
# What it does, in order:
#  1. Installs the agents if they are missing, into $AGENTS_PREFIX (default /opt/agentbox-agents,
#     readable by everyone): Claude Code, Codex CLI and Gemini CLI from npm, aider from PyPI in a
#     venv. Versions are whatever the registry serves today (none is pinned); an existing install
#     is reused, AGENTS_REINSTALL=1 replaces it.
#  2. Runs everything as the unprivileged user agentbox-test (created if missing; Claude Code
#     refuses --dangerously-skip-permissions as root), with a temporary HOME holding a planted
#     ~/.ssh/id_rsa with a unique canary, and a temporary project per agent.
#  3. Starts tests/agents/standin.py on 127.0.0.1:<free port>: a stand-in for the Anthropic,
#     OpenAI and Gemini APIs that logs every request. For Claude Code and Codex it scripts a
#     conversation: the first answer asks the agent's shell tool (Bash, exec_command) to run
#        echo made-by-agent > proof.txt; cat ~/.ssh/id_rsa; echo end
#     and the stand-in records the tool result the agent sends back.
#  4. `agentbox run --net filtered --allow-domain 127.0.0.1:PORT ... -- claude -p ...
#     --dangerously-skip-permissions` and checks: exit 0; the conversation finished; proof.txt
#     was written in the project by the agent's own tool call; the tool result shows the
#     command ran ("end") and does not hold the canary.
#     Then Claude Code runs `npm test` in a Node project through its Bash tool, with no extra
#     flags (issue 12: the everyday loop; npm writes to agentbox's npm cache).
#  5. Codex CLI: `--version`, then the same task with `codex exec`, twice: with Codex's own
#     sandbox off (agentbox is the sandbox) and with it on (bwrap inside agentbox, which needs
#     --allow-nested). Gemini CLI and aider: `--version`, then one non-interactive run each
#     against the stand-in (aider must write a file in the project).
#  6. The key on the host is unchanged, and the canary is in no request, output or file the
#     agents wrote.
#     aider's run is already through the credential broker (its key set on the host, checked
#     as in 7).
#  7. The credential broker: Claude Code, Codex CLI and Gemini CLI again, with a fresh key in
#     agentbox's host environment (not --env). The stand-in must get that key, alone, on every
#     request; a dump of the sandbox (every process's environment and command line, the home,
#     /run, /tmp) must hold the phantom and not the key; a request with an attacker's key
#     through the broker must arrive with the real one; plain HTTP and CONNECT around it must be
#     refused ("is brokered" in the net log).
#
# Every step has a timeout and the whole script has one ($AGENTS_TIMEOUT seconds, default 900).
# On a 2-core machine a cold run (installs included) takes about 100s, a warm one about 15s.
# Output ends with `agents: N passed, M failed`; the exit status is 0 only when nothing failed.
# Work files live in one directory under /var/tmp, removed at exit (AGENTS_KEEP=1 keeps it: the
# stand-in's request log is out/requests.jsonl there).
#
# Knobs (environment): AGENTBOX (the binary under test; else a debug build of this checkout),
# AGENTS_PREFIX, AGENTS_USER, AGENTS_REINSTALL, AGENTS_TIMEOUT, AGENTS_T_{NPM,PIP,RUN,VERSION},
# AGENTS_EXTRA_FLAGS (more agentbox flags for every run), AGENTS_KEEP.
#
# Built-in agent profiles: when `agentbox profile show NAME` succeeds, the NOPROFILE flags below
# are dropped (the profile provides them) and the real API hosts the profile allows are denied,
# so the test stays on loopback; the stand-in's --allow-domain and the --env pointing the agent
# at it are always passed.
set -euo pipefail

# The whole script under one deadline: the same script, run again under timeout(1). This outer
# copy owns the work directory, so it is removed even when the inner one has to be killed.
if [[ -z ${AGENTS_WORK:-} ]]; then
  limit=${AGENTS_TIMEOUT:-900}
  # Not under /tmp: Codex refuses to set up its sandbox helper under a temporary directory.
  AGENTS_WORK=$(mktemp -d /var/tmp/agentbox-agents.XXXXXX)
  export AGENTS_WORK
  rc=0
  timeout --kill-after=20 "$limit" bash "$0" "$@" || rc=$?
  if ((rc == 124 || rc == 137)); then
    read -r p f 2>/dev/null <"$AGENTS_WORK/counts" || { p=0 f=0; }
    echo "FAIL deadline: the whole run took longer than ${limit}s and was stopped" >&2
    echo "agents: $p passed, $((f + 1)) failed"
  fi
  if [[ -n ${AGENTS_KEEP:-} ]]; then
    echo "agents: kept $AGENTS_WORK" >&2
  else
    rm -rf "$AGENTS_WORK"
  fi
  exit "$rc"
fi

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

PREFIX=${AGENTS_PREFIX:-/opt/agentbox-agents}
TEST_USER=${AGENTS_USER:-agentbox-test}
NPM_PACKAGES=(@anthropic-ai/claude-code @openai/codex @google/gemini-cli)
PIP_PACKAGES=(aider-chat)
T_NPM=${AGENTS_T_NPM:-420}         # seconds: npm install (about 20s here)
T_PIP=${AGENTS_T_PIP:-420}         # seconds: pip install aider-chat (about 60s here, uncached)
T_RUN=${AGENTS_T_RUN:-180}         # seconds: one agent run against the stand-in
T_VERSION=${AGENTS_T_VERSION:-60}  # seconds: one `--version`

# Flags for every sandbox: the agents' install prefix, read-only (/opt already is by default).
COMMON_FLAGS=(--ro "$PREFIX")
# Extra agentbox flags for every run, split on spaces (to try a policy by hand).
read -r -a extra <<<"${AGENTS_EXTRA_FLAGS:-}"
COMMON_FLAGS+=("${extra[@]}")
# What a built-in profile for each agent would provide (split on spaces); dropped when the
# profile exists.
declare -A NOPROFILE=(
  [claude]="--net filtered"
  [codex]="--net filtered"
  [gemini]="--net filtered"
  [aider]="--net filtered"
)
# Flags that point each agent at the stand-in (PORT is known once it listens); always passed.
claude_flags() {
  ARGS=(--allow-domain "127.0.0.1:$PORT"
    --env "ANTHROPIC_BASE_URL=http://127.0.0.1:$PORT" --env ANTHROPIC_API_KEY=sk-test-dummy)
}
codex_flags() { ARGS=(--allow-domain "127.0.0.1:$PORT" --env OPENAI_API_KEY=sk-test-dummy); }
gemini_flags() {
  # GOOGLE_GEMINI_BASE_URL makes Gemini CLI pick its "gateway" auth, which -p then refuses;
  # the project's .gemini/settings.json selects API-key auth instead, and a workspace's
  # settings count only in a trusted workspace.
  ARGS=(--allow-domain "127.0.0.1:$PORT" --env GEMINI_API_KEY=test-dummy
    --env "GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:$PORT" --env GEMINI_CLI_TRUST_WORKSPACE=true)
}
# aider's key and base URL are set on the host for its run (the broker holds the key): below.
aider_flags() { ARGS=(--allow-domain "127.0.0.1:$PORT"); }

TASK_MARKER='AGENTBOX-TASK:' # then a task id: the stand-in scripts one tool call per id
# The credential broker's tool call (task ids broker-*): into the project, a dump of what the
# sandbox shows (every process's environment and command line, the files of the home, /run,
# /tmp) for the host to search for the real key; then a request with an attacker's key
# through the broker (BROKER_PATH) and the same around it, by the proxy and by CONNECT, to the
# stand-in (@PORT@: the stand-in puts its port in).
broker_command() {
  local header=$1 broker_path=$2 direct_path=$3 code="curl -s -m 20 -o /dev/null -w %{http_code}"
  printf '%s' "{ for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do echo \"== \$f\"; \
tr '\\0' '\\n' <\"\$f\"; done; find \"\$HOME\" /run /tmp -type f -readable -size -20M \
-exec cat {} +; } >dump.txt 2>/dev/null; \
echo via-broker=\$($code -H '$header' -H 'Content-Type: application/json' -d '{}' \
http://127.0.0.3:3129$broker_path); \
echo around=\$($code --noproxy '' -x http://127.0.0.1:3128 -H '$header' \
http://127.0.0.1:@PORT@$direct_path); \
echo connect=\$($code --noproxy '' -p -x http://127.0.0.1:3128 -H '$header' \
http://127.0.0.1:@PORT@$direct_path); echo end"
}
TOOL_COMMAND='echo made-by-agent > proof.txt; cat ~/.ssh/id_rsa; echo end'
# Issue 12's everyday loop: Claude Code's own Bash tool runs the project's tests with npm.
NPM_TASK_COMMAND='npm test > npm-test.txt 2>&1; echo "npm-exit=$?"; echo end'
FINAL='AGENTBOX-STANDIN-FINAL'

passed=0
failed=0
# The counts also go to a file, for the final line when the deadline stops this copy.
counts() { echo "$passed $failed" >"$AGENTS_WORK/counts"; }
pass() { passed=$((passed + 1)) && counts && echo "PASS $1"; }
fail() { failed=$((failed + 1)) && counts && echo "FAIL $1: $2" >&2; }
die() {
  echo "agents: error: $*" >&2
  echo "agents: $passed passed, $((failed + 1)) failed"
  exit 1
}
step() { echo; echo "== $*"; }

work=$AGENTS_WORK
standin_pid=
cleanup() {
  if [[ -n $standin_pid ]]; then kill "$standin_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# ---------------------------------------------------------------------------------------------
step "tools"
umask 022
export DEBIAN_FRONTEND=noninteractive
command -v setpriv >/dev/null || die "setpriv (util-linux) is missing"
py_user=/usr/bin/python3   # aider's venv: the unprivileged user must be able to run it
[[ -x $py_user ]] || py_user=$(command -v python3 || true)
apt_missing=()
[[ -n $py_user ]] || apt_missing+=(python3)
if [[ -z $py_user ]] || ! "$py_user" -c 'import ensurepip, venv' 2>/dev/null; then
  apt_missing+=(python3-venv)
fi
command -v npm >/dev/null || apt_missing+=(nodejs npm)
if ((${#apt_missing[@]})); then
  ((EUID == 0)) || die "missing ${apt_missing[*]}; as root: apt-get install ${apt_missing[*]}"
  if ! { timeout 300 apt-get update -qq \
    && timeout 300 apt-get install -y -qq "${apt_missing[@]}"; }; then
    die "apt-get install ${apt_missing[*]} failed"
  fi
  py_user=${py_user:-/usr/bin/python3}
fi
node_bin=$(dirname "$(readlink -f "$(command -v node)")")
echo "node $(node --version) in $node_bin; npm $(npm --version); $("$py_user" --version) at $py_user"

# The agentbox under test: $AGENTBOX, else a debug build of this checkout where every path
# component is traversable by the test user (as .ci/run does).
if [[ -z ${AGENTBOX:-} ]]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/agentbox-ci-target}
  mkdir -p "$CARGO_TARGET_DIR" && chmod 755 "$CARGO_TARGET_DIR"
  (cd "$repo" && timeout 900 cargo build --locked --quiet) || die "cargo build failed"
  AGENTBOX=$CARGO_TARGET_DIR/debug/agentbox
fi
AGENTBOX=$(readlink -f "$AGENTBOX")
[[ -x $AGENTBOX ]] || die "AGENTBOX=$AGENTBOX is not an executable"
echo "agentbox: $AGENTBOX ($("$AGENTBOX" --version))"

# ---------------------------------------------------------------------------------------------
step "install the agents into $PREFIX"
mkdir -p "$PREFIX"
bin=$PREFIX/node_modules/.bin
npm_ok() {
  local b
  for b in claude codex gemini; do [[ -x $bin/$b ]] || return 1; done
  # Claude Code's postinstall swaps a small stub for the native binary.
  [[ $(stat -L -c %s "$bin/claude") -gt 1000000 ]]
}
if [[ -n ${AGENTS_REINSTALL:-} ]] || ! npm_ok; then
  start=$SECONDS
  timeout "$T_NPM" npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
    "${NPM_PACKAGES[@]}" || die "npm install ${NPM_PACKAGES[*]} failed or took over ${T_NPM}s"
  if ! npm_ok && [[ -f $PREFIX/node_modules/@anthropic-ai/claude-code/install.cjs ]]; then
    (cd "$PREFIX/node_modules/@anthropic-ai/claude-code" && timeout 120 node install.cjs) || true
  fi
  npm_ok || die "npm installed the packages but claude, codex or gemini is not usable in $bin"
  echo "npm install: $((SECONDS - start))s"
else
  echo "npm packages already installed (AGENTS_REINSTALL=1 to replace them)"
fi
venv=$PREFIX/aider
aider_ready=
if [[ -z ${AGENTS_REINSTALL:-} && -x $venv/bin/aider ]]; then
  echo "aider already installed"
  aider_ready=1
else
  start=$SECONDS
  rm -rf "$venv"
  if timeout 120 "$py_user" -m venv "$venv" \
    && timeout "$T_PIP" "$venv/bin/pip" install -q --disable-pip-version-check \
      "${PIP_PACKAGES[@]}"; then
    echo "pip install: $((SECONDS - start))s"
    aider_ready=1
  else
    rm -rf "$venv"
    fail "install aider" \
      "pip install ${PIP_PACKAGES[*]} failed or took over ${T_PIP}s (aider checks skipped)"
  fi
fi
chmod -R a+rX "$PREFIX"

# ---------------------------------------------------------------------------------------------
step "test user, home with a canary, projects"
if ((EUID == 0)); then
  id "$TEST_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$TEST_USER"
  as_user_prefix=(setpriv --reuid="$TEST_USER" --regid="$TEST_USER" --clear-groups)
else
  TEST_USER=$(id -un)
  as_user_prefix=()
fi
chmod 755 "$work"
home=$work/home
out=$work/out           # the test's own files: the stand-in's logs, outputs (root only)
mkdir -p "$home/.ssh" "$work/projects" "$out"
chmod 700 "$out"
canary="agentbox-canary-$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')"
printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\n%s\n-----END OPENSSH PRIVATE KEY-----\n' \
  "$canary" >"$home/.ssh/id_rsa"
chmod 700 "$home/.ssh"
chmod 600 "$home/.ssh/id_rsa"
canary_sum=$(sha256sum <"$home/.ssh/id_rsa")
for a in claude codex codex-nested gemini aider; do mkdir -p "$work/projects/$a"; done
mkdir -p "$work/projects/gemini/.gemini"
echo '{"security": {"auth": {"selectedType": "gemini-api-key"}}}' \
  >"$work/projects/gemini/.gemini/settings.json"
# The net log is written by agentbox, as the test user.
netlog=$work/net.log
touch "$netlog"
chown -R "$TEST_USER": "$home" "$work/projects" "$netlog"
user_path=$bin:$venv/bin:$node_bin:/usr/local/bin:/usr/bin:/bin
# The command line prefix that runs something as the test user, in a clean environment.
as_user=("${as_user_prefix[@]}" env -i PATH="$user_path" HOME="$home" LANG=C.UTF-8)
# A node outside the system directories must be shown to the sandbox (and readable).
case $node_bin in
  /usr/* | /bin | /opt/*) ;;
  *) COMMON_FLAGS+=(--ro "$(dirname "$node_bin")") ;;
esac
"${as_user[@]}" test -x "$AGENTBOX" \
  || die "$TEST_USER cannot execute $AGENTBOX (a parent directory is not traversable?)"
"${as_user[@]}" node --version >/dev/null || die "$TEST_USER cannot run node from $node_bin"
# Positive control: outside the sandbox the test user can read the key, so its absence inside
# is the sandbox's doing.
if "${as_user[@]}" cat "$home/.ssh/id_rsa" | grep -q "$canary"; then
  pass "control: $TEST_USER reads ~/.ssh/id_rsa outside the sandbox"
else
  fail "control: $TEST_USER reads ~/.ssh/id_rsa outside the sandbox" \
    "it cannot; the canary check would prove nothing"
fi

# ---------------------------------------------------------------------------------------------
step "stand-in API on loopback"
mkdir -p "$out/results"
python3 "$here/standin.py" --exit-with-parent --port-file "$out/port" --log "$out/requests.jsonl" \
  --tool-results "$out/results" --command "$TOOL_COMMAND" --marker "$TASK_MARKER" \
  --task-command "claude-npm=$NPM_TASK_COMMAND" \
  --task-command "broker-claude=$(broker_command 'x-api-key: sk-attacker' \
    /anthropic/v1/messages/count_tokens /v1/messages/count_tokens)" \
  --task-command "broker-codex=$(broker_command 'Authorization: Bearer sk-attacker' \
    /openai/models /v1/models)" \
  >"$out/standin.err" 2>&1 &
standin_pid=$!
for _ in $(seq 100); do [[ -s $out/port ]] && break; sleep 0.1; done
[[ -s $out/port ]] || die "the stand-in did not start: $(cat "$out/standin.err")"
PORT=$(cat "$out/port")
echo "stand-in on 127.0.0.1:$PORT"

# Flags for AGENT: the common ones, its profile's or their stand-ins, and the stand-in's.
profiles=()
flags_for() {
  local agent=$1
  FLAGS=("${COMMON_FLAGS[@]}" --net-log "$netlog")
  local shown host
  if shown=$(timeout 30 "${as_user[@]}" "$AGENTBOX" profile show "$agent" 2>/dev/null); then
    profiles+=("$agent")
    # Keep the test on loopback: refuse the real API hosts the profile allows.
    for host in $(sed -n 's/^ *allowed hosts: *//p' <<<"$shown" | tr ',' ' '); do
      [[ $host == - ]] || FLAGS+=(--deny-domain "$host")
    done
  else
    local noprofile
    read -r -a noprofile <<<"${NOPROFILE[$agent]}"
    FLAGS+=("${noprofile[@]}")
  fi
  "${agent}_flags"
  FLAGS+=("${ARGS[@]}")
}

# Run the sandboxed command in project DIR as the test user, with a timeout; stdout and stderr
# go to $out/NAME.out and .err. Sets RC.
sandboxed() {
  local name=$1 dir=$2 limit=$3
  shift 3
  RC=0
  # --foreground: agentbox stays in this script's process group, so the deadline reaches it too;
  # killing it takes the whole sandbox down (its own pid namespace).
  (cd "$dir" && timeout --foreground --kill-after=10 "$limit" "${as_user[@]}" "$AGENTBOX" run "$@" \
    </dev/null >"$out/$name.out" 2>"$out/$name.err") || RC=$?
}
show() {
  local f
  for f in "$@"; do
    echo "--- $f (last 30 lines)" >&2
    tail -n 30 "$out/$f" >&2 || true
  done
}
contains() { grep -qF -- "$2" "$1" 2>/dev/null; }

# ---------------------------------------------------------------------------------------------
step "Claude Code: a task whose Bash tool call runs inside the sandbox"
# After a run of the scripted task TASK in project PROJ (agent output in $out/TASK.out), check
# that the conversation finished and what the agent's tool call could and could not do.
tool_call_checks() {
  local task=$1 proj=$2 result=$out/results/$1.txt ok=1
  if ((RC == 0)); then pass "$task: exits 0"; else
    fail "$task: exits 0" "exit status $RC"
    ok=
  fi
  if contains "$out/$task.out" "$FINAL"; then pass "$task: finishes the scripted conversation"; else
    fail "$task: finishes the scripted conversation" "its output lacks the stand-in's final text"
    ok=
  fi
  if [[ -f $proj/proof.txt && $(cat "$proj/proof.txt") == made-by-agent ]]; then
    pass "$task: its shell tool wrote proof.txt in the project"
  else
    fail "$task: its shell tool wrote proof.txt in the project" "proof.txt is missing or wrong"
    ok=
  fi
  if contains "$result" end; then pass "$task: the tool result shows the command ran"; else
    fail "$task: the tool result shows the command ran" \
      "no tool result with 'end' reached the stand-in"
    ok=
  fi
  if [[ -f $result ]] && ! contains "$result" "$canary"; then
    pass "$task: ~/.ssh/id_rsa is not readable through its shell tool"
    # Codex prefixes the output with bookkeeping lines.
    echo "     tool result: $(grep -v '^\(Chunk ID\|Wall time\|Original token\)' "$result" \
      | tr '\n' '|')"
  else
    fail "$task: ~/.ssh/id_rsa is not readable through its shell tool" \
      "the tool result is missing or holds the canary"
  fi
  [[ -n $ok ]] || show "$task.err" "$task.out" standin.err
}

touch "$out/stamp"
flags_for claude
echo "agentbox run ${FLAGS[*]} -- claude -p ... --dangerously-skip-permissions"
sandboxed claude "$work/projects/claude" "$T_RUN" "${FLAGS[@]}" -- claude -p \
  "${TASK_MARKER}claude run the shell command the harness gives you, then report." \
  --dangerously-skip-permissions
tool_call_checks claude "$work/projects/claude"

# ---------------------------------------------------------------------------------------------
step "Claude Code: npm test through its Bash tool, with no extra flags"
# A Node project; node and npm are the system's. npm inside writes to agentbox's npm cache
# (npm_config_cache), not to the home's.
npm_proj=$work/projects/claude-npm
mkdir -p "$npm_proj"
echo '{"name":"tiny","version":"1.0.0","scripts":{"test":"node test.js"}}' >"$npm_proj/package.json"
echo "require('assert').strictEqual(1 + 1, 2); console.log('tiny tests ok')" >"$npm_proj/test.js"
chown -R "$TEST_USER": "$npm_proj"
flags_for claude
sandboxed claude-npm "$npm_proj" "$T_RUN" "${FLAGS[@]}" -- claude -p \
  "${TASK_MARKER}claude-npm run the shell command the harness gives you, then report." \
  --dangerously-skip-permissions
if ((RC == 0)) && contains "$out/claude-npm.out" "$FINAL" \
  && contains "$out/results/claude-npm.txt" "npm-exit=0" \
  && contains "$npm_proj/npm-test.txt" "tiny tests ok"; then
  pass "claude-npm: npm test passes through Claude Code's Bash tool"
else
  fail "claude-npm: npm test passes through Claude Code's Bash tool" "exit status $RC"
  show claude-npm.err claude-npm.out standin.err
  cat "$npm_proj/npm-test.txt" >&2 2>/dev/null || true
fi
if [[ -d $home/.local/share/agentbox/cache/npm/_logs && ! -e $home/.npm ]]; then
  pass "claude-npm: npm used agentbox's npm cache, not ~/.npm"
else
  fail "claude-npm: npm used agentbox's npm cache, not ~/.npm" "no _logs in agentbox's npm cache"
fi

# ---------------------------------------------------------------------------------------------
step "Codex CLI, Gemini CLI, aider"
# `AGENT --version` in the sandbox FLAGS describe.
version_check() {
  local agent=$1 pattern=$2
  sandboxed "$agent-version" "$work/projects/$agent" "$T_VERSION" "${FLAGS[@]}" -- "$agent" --version
  if ((RC == 0)) && grep -qE "$pattern" "$out/$agent-version.out"; then
    pass "$agent: --version inside the sandbox ($(head -n1 "$out/$agent-version.out"))"
  else
    fail "$agent: --version inside the sandbox" "exit status $RC"
    show "$agent-version.out" "$agent-version.err"
  fi
}
requests_to() { grep -c "\"path\": \"$1" "$out/requests.jsonl" || true; }

flags_for codex
version_check codex '^codex-cli [0-9]'
# Codex 0.171 ignores OPENAI_BASE_URL: the stand-in is a provider of its own, in -c options.
provider="{name=\"standin\",base_url=\"http://127.0.0.1:$PORT/v1\""
provider+=",env_key=\"OPENAI_API_KEY\",wire_api=\"responses\"}"
codex_exec() {
  local task=$1
  shift
  sandboxed "$task" "$work/projects/$task" "$T_RUN" "${FLAGS[@]}" "$@" -- codex exec \
    --skip-git-repo-check -c model_provider=standin -c model=gpt-standin \
    -c "model_providers.standin=$provider" \
    "${CODEX_MODE[@]}" "${TASK_MARKER}$task run the shell command the harness gives you."
}
# agentbox as Codex's only sandbox: how a profile would run it.
CODEX_MODE=(--dangerously-bypass-approvals-and-sandbox)
codex_exec codex
tool_call_checks codex "$work/projects/codex"
# Codex's own bwrap sandbox inside agentbox's.
CODEX_MODE=(--sandbox workspace-write)
codex_exec codex-nested --allow-nested
tool_call_checks codex-nested "$work/projects/codex-nested"

flags_for gemini
version_check gemini '^[0-9]+\.[0-9]+'
before=$(requests_to /v1beta/models/)
sandboxed gemini "$work/projects/gemini" "$T_RUN" "${FLAGS[@]}" -- \
  gemini -p "${TASK_MARKER}gemini say hello."
if ((RC == 0)) && contains "$out/gemini.out" "$FINAL" \
  && (($(requests_to /v1beta/models/) > before)); then
  pass "gemini: -p completes against the stand-in"
else
  fail "gemini: -p completes against the stand-in" "exit status $RC"
  show gemini.out gemini.err
fi

# aider through the credential broker: OPENAI_API_KEY (a fresh key) and OPENAI_API_BASE (the
# stand-in) set on the host, not --env. The stand-in must get the key alone on every request;
# the sandbox sees a phantom and the broker's URL (a second run of the profile dumps its
# environment, and sends an attacker's key through the broker); the key is in no file or output.
aider_broker() {
  local key requests_before proj=$work/projects/aider
  key="sk-aider-real-$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')"
  # `sandboxed` runs "${as_user[@]}": here with the key in agentbox's own environment.
  local as_user=("${as_user[@]}" "OPENAI_API_KEY=$key" "OPENAI_API_BASE=http://127.0.0.1:$PORT/v1")
  flags_for aider
  version_check aider '^aider [0-9]'
  requests_before=$(wc -l <"$out/requests.jsonl")
  sandboxed aider "$proj" "$T_RUN" -v "${FLAGS[@]}" -- aider --model openai/gpt-standin \
    --message "${TASK_MARKER}aider create the file." --yes-always --no-git --no-check-update \
    --no-show-model-warnings --no-analytics --no-pretty
  made=$(cat "$proj/made_by_aider.txt" 2>/dev/null || true)
  if ((RC == 0)) && [[ $made == made-by-aider ]]; then
    pass "aider: --message writes a file in the project through the stand-in"
  else
    fail "aider: --message writes a file in the project through the stand-in" "exit status $RC"
    show aider.out aider.err
  fi
  if contains "$out/aider.err" "credential broker: OPENAI_API_KEY held by agentbox"; then
    pass "aider: -v names the brokered key"
  else
    fail "aider: -v names the brokered key" "no such note"
  fi
  if python3 - "$out/requests.jsonl" "$requests_before" "$key" <<'EOF'; then
import json, sys
entries = [json.loads(l) for l in open(sys.argv[1]).readlines()[int(sys.argv[2]):]]
bad = [e for e in entries if e.get("credentials") != {"authorization": ["Bearer " + sys.argv[3]]}]
for e in bad:
    print("  %s %s: %s" % (e["method"], e["path"], sorted(e.get("credentials") or {})),
          file=sys.stderr)
sys.exit(1 if bad or not entries else 0)
EOF
    pass "aider: every request reached the stand-in with the real key and no other"
  else
    fail "aider: every request reached the stand-in with the real key and no other" \
      "see above (or no request)"
  fi
  # The same profile and host environment: what a process inside sees, and a request with an
  # attacker's key to the base URL it was given.
  requests_before=$(wc -l <"$out/requests.jsonl")
  sandboxed aider-env "$proj" "$T_RUN" --profile aider "${FLAGS[@]}" -- sh -c \
    'tr "\0" "\n" </proc/self/environ; curl -s -m 20 -o /dev/null -w "via-broker=%{http_code}\n" \
     -H "Authorization: Bearer sk-attacker" "$OPENAI_API_BASE/models"'
  local seen
  seen=$(tail -n +"$((requests_before + 1))" "$out/requests.jsonl")
  if ((RC == 0)) && grep -q '^OPENAI_API_KEY=sk-agentbox-phantom-' "$out/aider-env.out" \
    && grep -qx 'OPENAI_API_BASE=http://127.0.0.3:3129/[a-z0-9_]*' "$out/aider-env.out" \
    && contains "$out/aider-env.out" via-broker=200 \
    && grep -qF "Bearer $key" <<<"$seen" && ! grep -q sk-attacker <<<"$seen"; then
    pass "aider: inside, a phantom key and the broker's URL; an attacker's key arrives as the real one"
  else
    fail "aider: inside, a phantom key and the broker's URL; an attacker's key arrives as the real one" \
      "exit status $RC"
    show aider-env.out aider-env.err
  fi
  if ! grep -rqF -- "$key" "$proj" "$home" "$out/aider.out" "$out/aider.err" \
    "$out/aider-env.out" "$out/aider-env.err" "$netlog"; then
    pass "aider: the key is in no file it left, no output and not in the net log"
  else
    fail "aider: the key is in no file it left, no output and not in the net log" "it is"
  fi
}
if [[ -n $aider_ready ]]; then aider_broker; fi

# ---------------------------------------------------------------------------------------------
step "credential broker: the key stays on the host (Claude Code, Codex CLI, Gemini CLI)"
# The key is set in agentbox's own environment on the host (no --env): the profile's broker
# holds it, the sandbox gets a phantom and a base URL pointing at the broker. The stand-in
# must see the real key on every request (and nothing else in a credential header), the
# dump the tool call made inside must not hold it (but hold the phantom: the dump saw the
# environment), the request with the attacker's key must reach the stand-in only with the
# real one, and the requests around the broker must be refused (net log: "is brokered").
# broker_run AGENT TASK KEYVAR BASEVAR BASE COMMAND...: AGENT's broker task TASK with KEYVAR
# (a fresh key) and BASEVAR=BASE (the stand-in) set on the host, then the checks.
broker_run() {
  local agent=$1 task=$2 keyvar=$3 basevar=$4 base=$5 key expect
  shift 5
  key="sk-$task-real-$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')"
  flags_for "$agent"
  # The --env flags of the other runs would pass a dummy key: left out here.
  local f=() i=0
  while ((i < ${#FLAGS[@]})); do
    if [[ ${FLAGS[i]} == --env ]]; then i=$((i + 2)); continue; fi
    f+=("${FLAGS[i]}")
    i=$((i + 1))
  done
  local proj=$work/projects/$task requests_before log_before
  mkdir -p "$proj" && chown "$TEST_USER": "$proj"
  requests_before=$(wc -l <"$out/requests.jsonl")
  log_before=$(wc -l <"$netlog")
  echo "$keyvar=<key> $basevar=$base agentbox run -v ${f[*]} -- $*"
  RC=0
  (cd "$proj" && timeout --foreground --kill-after=10 "$T_RUN" "${as_user[@]}" \
    "$keyvar=$key" "$basevar=$base" "$AGENTBOX" run -v "${f[@]}" -- "$@" \
    </dev/null >"$out/$task.out" 2>"$out/$task.err") || RC=$?
  local result=$out/results/$task.txt ok=1
  if ((RC == 0)) && contains "$out/$task.out" "$FINAL" && contains "$result" end; then
    pass "$task: the scripted conversation runs through the broker"
  else
    fail "$task: the scripted conversation runs through the broker" "exit status $RC"
    ok=
  fi
  if contains "$out/$task.err" "credential broker: $keyvar held by agentbox"; then
    pass "$task: -v names the brokered key"
  else
    fail "$task: -v names the brokered key" "no such note"
    ok=
  fi
  case $keyvar in
    ANTHROPIC_API_KEY) expect="{\"x-api-key\": [\"$key\"]}" ;;
    *) expect="{\"authorization\": [\"Bearer $key\"]}" ;;
  esac
  if python3 - "$out/requests.jsonl" "$requests_before" "$expect" <<'EOF'; then
import json, sys
entries = [json.loads(l) for l in open(sys.argv[1]).readlines()[int(sys.argv[2]):]]
bad = [e for e in entries if e.get("credentials") != json.loads(sys.argv[3])]
for e in bad:
    print("  %s %s: %s" % (e["method"], e["path"], sorted(e.get("credentials") or {})),
          file=sys.stderr)
sys.exit(1 if bad or len(entries) < 3 else 0)
EOF
    pass "$task: every request reached the stand-in with the real key and no other"
  else
    fail "$task: every request reached the stand-in with the real key and no other" \
      "see above (or fewer than 3 requests)"
    ok=
  fi
  if contains "$result" via-broker=200; then
    pass "$task: a request with an attacker's key through the broker is answered (real key)"
  else
    fail "$task: a request with an attacker's key through the broker is answered" \
      "tool result: $(tr '\n' '|' <"$result" 2>/dev/null)"
    ok=
  fi
  local refused
  refused=$(tail -n +"$((log_before + 1))" "$netlog" | grep -c "$keyvar is brokered" || true)
  if contains "$result" around=403 && ! contains "$result" connect=200 && ((refused >= 2)); then
    pass "$task: plain HTTP and CONNECT around the broker are refused (net log: $refused)"
  else
    fail "$task: plain HTTP and CONNECT around the broker are refused" \
      "tool result: $(tr '\n' '|' <"$result" 2>/dev/null); net log refusals: $refused"
    ok=
  fi
  if [[ -s $proj/dump.txt ]] && grep -q sk-agentbox-phantom- "$proj/dump.txt" \
    && ! grep -rqF -- "$key" "$proj" "$home"; then
    pass "$task: the real key is in no process's environment or command line, no file of the home, /run or /tmp inside (the phantom is)"
  else
    fail "$task: the real key is nowhere inside" \
      "dump.txt missing, without the phantom, or the key found in $proj or $home"
    ok=
  fi
  if ! grep -qF -- "$key" "$out/$task.out" "$out/$task.err" "$netlog"; then
    pass "$task: the key is in no output of agentbox nor in the net log"
  else
    fail "$task: the key is in no output of agentbox nor in the net log" "it is"
    ok=
  fi
  [[ -n $ok ]] || show "$task.err" "$task.out" standin.err
}

broker_run claude broker-claude ANTHROPIC_API_KEY ANTHROPIC_BASE_URL "http://127.0.0.1:$PORT" \
  claude -p "${TASK_MARKER}broker-claude run the shell command the harness gives you." \
  --dangerously-skip-permissions
# Codex 0.171 reads neither OPENAI_BASE_URL nor OPENAI_API_KEY for its built-in provider: a
# provider of its own points at the broker and names the key variable (see its profile notes).
broker_provider="{name=\"broker\",base_url=\"http://127.0.0.3:3129/openai\""
broker_provider+=",env_key=\"OPENAI_API_KEY\",wire_api=\"responses\"}"
broker_run codex broker-codex OPENAI_API_KEY OPENAI_BASE_URL "http://127.0.0.1:$PORT/v1" \
  codex exec --skip-git-repo-check -c model_provider=broker -c model=gpt-standin \
  -c "model_providers.broker=$broker_provider" --dangerously-bypass-approvals-and-sandbox \
  "${TASK_MARKER}broker-codex run the shell command the harness gives you."

# Gemini CLI: the stand-in scripts no tool call for it; its requests must carry the real key
# alone, and the key must be in no file it left (its home, the project) nor in any output.
broker_gemini() {
  local task=broker-gemini key proj requests_before
  key="AIza-$task-real-$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')"
  proj=$work/projects/$task
  mkdir -p "$proj/.gemini"
  echo '{"security": {"auth": {"selectedType": "gemini-api-key"}}}' >"$proj/.gemini/settings.json"
  chown -R "$TEST_USER": "$proj"
  flags_for gemini
  local f=() i=0
  while ((i < ${#FLAGS[@]})); do
    if [[ ${FLAGS[i]} == --env ]]; then i=$((i + 2)); continue; fi
    f+=("${FLAGS[i]}")
    i=$((i + 1))
  done
  f+=(--env GEMINI_CLI_TRUST_WORKSPACE=true)
  requests_before=$(wc -l <"$out/requests.jsonl")
  echo "GEMINI_API_KEY=<key> GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:$PORT agentbox run ${f[*]} -- gemini -p ..."
  RC=0
  (cd "$proj" && timeout --foreground --kill-after=10 "$T_RUN" "${as_user[@]}" \
    "GEMINI_API_KEY=$key" "GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:$PORT" "$AGENTBOX" run \
    "${f[@]}" -- gemini -p "${TASK_MARKER}$task say hello." \
    </dev/null >"$out/$task.out" 2>"$out/$task.err") || RC=$?
  if ((RC == 0)) && contains "$out/$task.out" "$FINAL" && python3 - "$out/requests.jsonl" \
    "$requests_before" "$key" <<'EOF'; then
import json, sys
entries = [json.loads(l) for l in open(sys.argv[1]).readlines()[int(sys.argv[2]):]]
bad = [e for e in entries if e.get("credentials") != {"x-goog-api-key": [sys.argv[3]]}]
sys.exit(1 if bad or not entries else 0)
EOF
    pass "$task: -p completes through the broker, every request with the real key alone"
  else
    fail "$task: -p completes through the broker, every request with the real key alone" \
      "exit status $RC"
    show "$task.err" "$task.out"
  fi
  if ! grep -rqF -- "$key" "$proj" "$home" "$out/$task.out" "$out/$task.err" "$netlog"; then
    pass "$task: the key is in no file it left, no output and not in the net log"
  else
    fail "$task: the key is in no file it left, no output and not in the net log" "it is"
  fi
}
broker_gemini

# ---------------------------------------------------------------------------------------------
step "the canary"
if [[ -f $home/.ssh/id_rsa && $(sha256sum <"$home/.ssh/id_rsa") == "$canary_sum" ]]; then
  pass "the planted ~/.ssh/id_rsa is unchanged on the host"
else
  fail "the planted ~/.ssh/id_rsa is unchanged on the host" "it was changed or removed"
fi
# Nothing the agents sent, printed or left behind (projects, a persistent sandbox home) holds it.
leaks=$(grep -rlF -- "$canary" "$out" "$work/projects" "$home" 2>/dev/null \
  | grep -vxF "$home/.ssh/id_rsa" || true)
if [[ -z $leaks ]]; then
  pass "the canary is in no request, output or file the agents wrote"
else
  fail "the canary is in no request, output or file the agents wrote" "found in: $leaks"
fi

# Every connection agentbox let through went to the stand-in: the test never left loopback.
if python3 - "$netlog" "$PORT" <<'EOF'; then
import json, sys
bad = [e for e in map(json.loads, open(sys.argv[1]))
       if e.get("allowed") and (e.get("host"), str(e.get("port"))) != ("127.0.0.1", sys.argv[2])]
for e in bad:
    print("  allowed: %s:%s" % (e.get("host"), e.get("port")), file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
  pass "every connection let through went to the stand-in on loopback"
else
  fail "every connection let through went to the stand-in on loopback" "see the hosts above"
fi

step "what the agents did"
if ((${#profiles[@]})); then
  echo "built-in profiles used: ${profiles[*]}"
else
  echo "no built-in profiles in this agentbox: the NOPROFILE flags were used"
fi
echo "requests the stand-in answered, in order:"
python3 "$here/standin.py" --summary "$out/requests.jsonl" || true
echo "network decisions (from --net-log):"
python3 - "$netlog" <<'EOF' || true
import collections, json, sys
seen = collections.Counter()
for line in open(sys.argv[1]):
    e = json.loads(line)
    what = "allowed" if e.get("allowed") else "blocked"
    seen[(what, "%s:%s" % (e.get("host"), e.get("port")))] += 1
for (what, host), n in sorted(seen.items()):
    print("  %-8s %-40s x%d" % (what, host, n))
EOF
echo "files the runs left in the test HOME on the host (count by place):"
(cd "$home" && find . -newer "$out/stamp" -type f | python3 -c '
import collections, sys
places = collections.Counter()
for line in sys.stdin:
    parts = line.strip()[2:].split("/")
    # Inside an agent home of agentbox'"'"'s (.local/share/agentbox/home/NAME/...): one more level.
    depth = 6 if parts[:4] == [".local", "share", "agentbox", "home"] else 2
    places["/".join(parts[:depth]) + ("/..." if len(parts) > depth else "")] += 1
for place, n in sorted(places.items()):
    print("  ~/%-72s %d" % (place, n))
') || true

echo
echo "agents: $passed passed, $failed failed"
((failed == 0))
