#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each (default 10), from the
# committed seeds plus any corpus already in fuzz/corpus. Crashes are kept in
# fuzz/artifacts. Usage: fuzz/run-all.sh [SECONDS [TARGET...]]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-10}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(snp_report tdx_quote tdx_collateral certificates sealed_bundle phi_detect audit_log launch_measure)
export RUSTC_BOOTSTRAP=1   # cargo-fuzz passes -Z flags; this machine has only stable Rust
mkdir -p logs
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  log="logs/$target.log"
  if ! cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 > "$log" 2>&1; then
    echo "fuzz target $target FAILED; see fuzz/$log"
    tail -40 "$log"
    exit 1
  fi
  runs=$(grep -aE '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  echo "fuzz $target: ${seconds}s, ${runs:-?} executions, no crash"
done
