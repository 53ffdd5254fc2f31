# Sourced by the scripts: one build cache outside the clone, so a fresh clone
# (as CI makes) reuses what the last run built.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cloister/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
