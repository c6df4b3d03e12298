# Sourced by the bench/*.sh scripts: what they share, so the three measure the same project.

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
