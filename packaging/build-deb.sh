#!/usr/bin/env bash
# Builds a .deb of agentbox (needs `cargo install cargo-deb` once): the release binary, its man
# page and shell completions, as listed in Cargo.toml's [package.metadata.deb].
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked
bin="$target/release/agentbox"
mkdir -p target/completions
"$bin" man > target/agentbox.1
"$bin" completions bash > target/completions/agentbox.bash
"$bin" completions zsh > target/completions/_agentbox
"$bin" completions fish > target/completions/agentbox.fish
if [[ $target != target ]]; then
    mkdir -p target/release && cp "$bin" target/release/agentbox
fi
cargo deb --no-build
ls target/debian/*.deb
