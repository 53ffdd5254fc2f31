#!/bin/sh
# Regenerate the word lists in src/detect.rs from tools/gen_lists.py.
set -e
cd "$(dirname "$0")/.."
python3 tools/gen_lists.py > /tmp/lists.rs
python3 - <<'PY'
s = open("src/detect.rs").read()
a = s.index("// BEGIN GENERATED LISTS\n") + len("// BEGIN GENERATED LISTS\n")
b = s.index("// END GENERATED LISTS")
s = s[:a] + open("/tmp/lists.rs").read() + s[b:]
open("src/detect.rs", "w").write(s)
PY
cargo fmt
