#!/usr/bin/env bash
# Compiles and runs every program of cpp.jsonl and go.jsonl inside a root filesystem
# that has g++ and go (a Debian trixie one: g++ 14, Go 1.24), and checks each against
# its expected status:
#   program (canonical)      compiles, exits 0 within the time limit      -> passed
#   broken "failed"          compiles, exits non-zero within the limit    -> failed
#   broken "compile_error"   the compiler exits non-zero                  -> compile_error
#   broken "timeout"         compiles, still running after the limit      -> timeout
#
# usage: verify.sh ROOTFS            (run as root: it uses chroot)
# env:   TIME_LIMIT   seconds a program may run (default 5)
#        CXX_STD      the -std= given to g++ (default c++17)
#        ONLY         cpp or go, to check one language only
# Needs python3 on the host (to read the JSONL). Works in ROOTFS/tmp/ds-humaneval-PID,
# removed at the end. Exits 0 only when every program behaves as expected.
set -euo pipefail

ROOTFS=${1:?usage: verify.sh ROOTFS}
ROOTFS=$(cd "$ROOTFS" && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TIME_LIMIT=${TIME_LIMIT:-5}
CXX_STD=${CXX_STD:-c++17}
LANGS=${ONLY:-cpp go}

[ -x "$ROOTFS/bin/bash" ] || { echo "no $ROOTFS/bin/bash: not a root filesystem" >&2; exit 2; }
[ -e "$ROOTFS/proc/self" ] || echo "note: $ROOTFS/proc is not mounted; GOROOT is set for go instead" >&2

NAME=ds-humaneval-$$
SCRATCH=$ROOTFS/tmp/$NAME
mkdir -p "$SCRATCH"
trap 'rm -rf "$SCRATCH"' EXIT

# One directory per program: <lang>-<task number>-<variant>/ holding main.cpp or main.go,
# `expected` and a one-line `label`.
python3 - "$HERE" "$SCRATCH" $LANGS <<'PY'
import json, os, sys
here, scratch, langs = sys.argv[1], sys.argv[2], sys.argv[3:]
for lang in langs:
    source = "main.cpp" if lang == "cpp" else "main.go"
    with open(os.path.join(here, f"{lang}.jsonl"), encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            number = int(row["task_id"].split("/")[1])
            cases = [("canonical", row["program"], "passed")]
            cases += [(b.get("description", f"broken {i}"), b["program"], b["expected"])
                      for i, b in enumerate(row["broken"])]
            for i, (what, program, expected) in enumerate(cases):
                d = os.path.join(scratch, f"{lang}-{number:03d}-{i}")
                os.makedirs(d)
                with open(os.path.join(d, source), "w", encoding="utf-8") as out:
                    out.write(program)
                with open(os.path.join(d, "expected"), "w") as out:
                    out.write(expected + "\n")
                with open(os.path.join(d, "label"), "w") as out:
                    out.write(f"{row['task_id']} [{what}]\n")
PY

cat >"$SCRATCH/run.sh" <<'SH'
#!/bin/bash
# Runs inside the chroot: $1 = scratch dir, $2 = time limit, $3 = C++ standard.
cd "$1"
limit=$2 std=$3
export HOME=/tmp GOCACHE=/opt/gocache GOFLAGS=-trimpath GOTELEMETRY=off GOTOOLCHAIN=local GOPROXY=off
# Without /proc the go command cannot find its own GOROOT (a trimmed binary): name it.
if [ ! -e /proc/self/exe ] && [ -z "${GOROOT:-}" ] && command -v go >/dev/null; then
    export GOROOT=$(dirname "$(dirname "$(readlink -f "$(command -v go)")")")
fi
ok=0 bad=0
declare -A tally
for d in */; do
    d=${d%/}
    lang=${d%%-*} expected=$(cat "$d/expected") label=$(cat "$d/label")
    if [ "$lang" = cpp ]; then
        (cd "$d" && timeout 120 g++ -std="$std" -O2 -o prog main.cpp) >"$d/compile.log" 2>&1 && crc=0 || crc=$?
    else
        (cd "$d" && timeout 120 go build -o prog main.go) >"$d/compile.log" 2>&1 && crc=0 || crc=$?
    fi
    rc=-
    if [ "$crc" -ne 0 ]; then
        got=compile_error
    else
        # (the braces keep bash's "Aborted" notices for assert failures off the report)
        { (cd "$d" && timeout -k 2 "$limit" ./prog) >"$d/run.log" 2>&1 && rc=0 || rc=$?; } 2>/dev/null
        case $rc in
            0) got=passed ;;
            124|137) got=timeout ;;
            *) got=failed ;;
        esac
    fi
    key="$lang $expected"
    tally[$key]=$(( ${tally[$key]:-0} + 1 ))
    if [ "$got" = "$expected" ]; then
        ok=$((ok + 1))
        printf 'ok    %-4s %-14s %s (compile rc=%s, run rc=%s)\n' "$lang" "$expected" "$label" "$crc" "$rc"
        if [ "$expected" = compile_error ]; then
            grep -m1 -E 'error|\.go:[0-9]+' "$d/compile.log" | sed 's/^/      | /' || true
        elif [ "$expected" = failed ]; then
            head -n1 "$d/run.log" | sed 's/^/      > /'
        fi
    else
        bad=$((bad + 1))
        printf 'WRONG %-4s expected %s, got %s: %s (compile rc=%s, run rc=%s)\n' "$lang" "$expected" "$got" "$label" "$crc" "$rc"
        sed 's/^/      | /' "$d/compile.log" | head -20
        [ -f "$d/run.log" ] && sed 's/^/      > /' "$d/run.log" | head -10
    fi
done
echo
for key in $(printf '%s\n' "${!tally[@]}" | tr ' ' '_' | sort); do
    printf '%-22s %3d programs\n' "${key/_/ }" "${tally[${key/_/ }]}"
done
echo "$ok passed, $bad failed"
[ "$bad" -eq 0 ]
SH

chroot "$ROOTFS" /bin/bash "/tmp/$NAME/run.sh" "/tmp/$NAME" "$TIME_LIMIT" "$CXX_STD"
