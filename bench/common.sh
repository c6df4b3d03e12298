# Sourced by the bench/*.sh scripts: what they share, so they all measure the same project. The
# Python they run is beside them (bench/*.py; bench/benchlib.py is shared).

# The folder of these scripts, whatever the caller's working directory.
bench_dir=$(dirname "$(realpath "${BASH_SOURCE[0]}")")

# bench_project WORK: makes WORK/project (a small git repository with a .env to mask, its
# template and a few sources) and WORK/home (empty but for a .gitconfig), so a developer's own
# files do not change what is timed. Prints nothing; the project is at "$1/project".
bench_project() {
    local work=$1 project=$1/project f
    mkdir -p "$work/home" "$project/src/util" "$project/tests"
    printf '[user]\n\tname = Bench\n\temail = bench@example.invalid\n' >"$work/home/.gitconfig"
    git -C "$project" init -q
    printf 'API_KEY=not-a-real-key\n' >"$project/.env"
    printf 'API_KEY=\n' >"$project/.env.example"
    printf '[package]\nname = "demo"\n' >"$project/Cargo.toml"
    for f in src/main.rs src/lib.rs src/util/mod.rs tests/smoke.rs README.md; do
        printf '// %s\n' "$f" >"$project/$f"
    done
}

# fail MESSAGE...: the measurement is broken; says why and stops.
fail() { echo "bench: $*" >&2; exit 1; }

# bench_record NAME [FLAGS...]: records what `agentbox run FLAGS -- true` hands bwrap, through a
# stand-in bwrap (bench/record_bwrap.py): the argv ($work/rec/NAME.argv), the bytes on each data
# fd (NAME.fdN) and which fds >= 3 are open (NAME.open; nothing else of agentbox's, such as a
# proxy socket, may reach bwrap). The script --dry-run prints ($work/NAME.dry.sh) goes through
# the same stand-in (NAME-dry.*). This is how a bare-bwrap baseline gets exactly what `agentbox
# run` execs. Fails unless the open fds are the ones --dry-run redirects; sets data_fds to them.
# Uses the caller's work, bwrap, agentbox and run_env.
bench_record() {
    local name=$1 recorder=$work/rec/bwrap exec_block
    shift
    [[ -x $recorder ]] || {
        # A copy, not a link: the recorder finds real-bwrap and out beside itself.
        cp "$bench_dir/record_bwrap.py" "$recorder"
        chmod 755 "$recorder"
        printf '%s\n' "$bwrap" >"$work/rec/real-bwrap"
    }
    # --dry-run prints a bash script ending in `exec env -i BWRAP "${args[@]}" -- CMD` with one
    # redirection per data fd (`N</dev/null` for a mask, `N< <(base64 -d ...)` for bytes).
    "${run_env[@]}" "$agentbox" run "$@" --dry-run -- true >"$work/$name.dry.sh" 2>/dev/null
    exec_block=$(sed -n '/^exec /,$p' "$work/$name.dry.sh")
    [[ $exec_block == "exec env -i $bwrap \"\${args[@]}\" -- "* ]] ||
        fail "unexpected exec line in --dry-run: ${exec_block:0:200}"
    data_fds=$(grep -oE '(^|[[:space:]])[0-9]+<' <<<"$exec_block" | tr -dc '0-9\n' | xargs)
    printf '%s\n%s\n' "$work/rec/$name" "$data_fds" >"$work/rec/out"
    "${run_env[@]}" "$agentbox" run "$@" --bwrap "$recorder" -- true 2>/dev/null
    printf '%s\n%s\n' "$work/rec/$name-dry" "$data_fds" >"$work/rec/out"
    # A filtered run's script stops at its top (it needs agentbox's proxy); the recorder only
    # records what bwrap would get, so that guard goes.
    sed -e "s|^exec env -i $bwrap |exec env -i $recorder |" \
        -e "/^echo 'agentbox --dry-run: --net filtered needs agentbox run/,/^exit 2\$/d" \
        "$work/$name.dry.sh" >"$work/$name.dry-rec.sh"
    "${run_env[@]}" bash "$work/$name.dry-rec.sh"
    [[ $(cat "$work/rec/$name.open") == "$data_fds" ]] ||
        fail "$name: agentbox run passes fds '$(cat "$work/rec/$name.open")'," \
            "--dry-run shows '$data_fds'"
}

# bench_same_as_dry NAME: after bench_record NAME, fails unless `agentbox run` gave bwrap the very
# argv and fd bytes that its --dry-run script gives it.
bench_same_as_dry() {
    local name=$1 fd
    cmp -s "$work/rec/$name.argv" "$work/rec/$name-dry.argv" ||
        fail "agentbox run execs a different argv than --dry-run prints"
    for fd in $data_fds; do
        cmp -s "$work/rec/$name.fd$fd" "$work/rec/$name-dry.fd$fd" ||
            fail "fd $fd carries different bytes in agentbox run and --dry-run"
    done
}
