#!/usr/bin/env bash
# clang's -Wthread-safety over rung's own sources: checks every ABSL_GUARDED_BY and
# ABSL_EXCLUSIVE_LOCKS_REQUIRED against the code (gcc, which builds rung, ignores them).
# Syntax only, with the flags of the build in ${RUNG_BUILD_DIR:-build} (its
# compile_commands.json), two files at a time. Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${RUNG_BUILD_DIR:-build}
command -v clang++ >/dev/null || { echo "thread-safety: clang++ is missing (deploy/install-deps.sh installs it)" >&2; exit 1; }
[ -f "$build/compile_commands.json" ] || { echo "thread-safety: no $build/compile_commands.json; build first" >&2; exit 1; }
start=$(date +%s)
# One line per translation unit under server/, worker/, common/ and client/: the directory and
# the compiler's arguments, with gcc's output flags swapped for clang's syntax check.
/usr/bin/python3 - "$build/compile_commands.json" "$PWD" >"$build/thread-safety.args" <<'EOF'
import json, re, shlex, sys
root = sys.argv[2] + "/"
LOCKS = re.compile(r"absl/synchronization/mutex\.h|ABSL_(GUARDED_BY|EXCLUSIVE_LOCKS_REQUIRED|LOCKS_EXCLUDED)")

def uses_locks(path):
    # The file, or one of rung's headers it includes, holds a mutex or a lock annotation.
    text = open(path).read()
    if LOCKS.search(text):
        return True
    for header in re.findall(r'#include "((?:server|worker|common|client)/[^"]+)"', text):
        try:
            if LOCKS.search(open(root + header).read()):
                return True
        except OSError:
            pass
    return False

for entry in json.load(open(sys.argv[1])):
    src = entry["file"]
    if not src.startswith(root) or not src[len(root):].split("/")[0] in ("server", "worker", "common", "client"):
        continue
    if not uses_locks(src):
        continue
    args = shlex.split(entry["command"])[1:]
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("-o", "-c"):
            skip = a == "-o"
            continue
        if a.startswith("-W"):  # the build's warnings are gcc's business; only this one here
            continue
        out.append(a)
    print(entry["directory"], shlex.join(out + ["-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety",
                                                 "-Wno-unknown-warning-option"]))
EOF
files=$(wc -l <"$build/thread-safety.args")
# shellcheck disable=SC2016
xargs -P 2 -L 1 sh -c 'cd "$0" && exec clang++ "$@"' <"$build/thread-safety.args" 2>&1 |
  tee "$build/thread-safety.log" | grep -E "warning: |error: " || true
if grep -qE "error: " "$build/thread-safety.log"; then
  echo "thread-safety: clang found lock annotations that the code breaks (see above)" >&2
  exit 1
fi
echo "thread-safety: $files files checked by clang -Wthread-safety in $(( $(date +%s) - start )) s, no findings"
