#!/usr/bin/env bash
# Lays out rung's C++ sources as .clang-format says. With --check, changes nothing and exits
# non-zero naming the files that are not laid out so (scripts/test.sh runs that).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "format: clang-format is missing (deploy/install-deps.sh installs it)" >&2; exit 1; }
mapfile -t files < <(git ls-files '*.cc' '*.h')
if [ "${1:-}" = "--check" ]; then
  bad=()
  for f in "${files[@]}"; do
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done
  if [ ${#bad[@]} -gt 0 ]; then
    echo "format: not laid out as .clang-format says (run bash scripts/format.sh): ${bad[*]}" >&2
    exit 1
  fi
  echo "format: ${#files[@]} files laid out as .clang-format says"
  exit 0
fi
clang-format -i "${files[@]}"
