#!/usr/bin/env bash
# `make fuzz`: builds every libFuzzer target of tests/fuzz/ with clang,
# AddressSanitizer and UndefinedBehaviorSanitizer (bazel --config=fuzz) and
# runs each in turn for FUZZ_SECONDS (default 60) over a working copy of its
# seed corpus. New inputs accumulate in fuzz-out/<target>/corpus (kept across
# runs; the seeds in tests/fuzz/corpus/ are never written), crashes, leaks
# and timeouts are saved as fuzz-out/<target>/crash-*, leak-*, timeout-*.
# Prints one summary line per target and exits 1 if any target failed.
#
#   FUZZ_SECONDS=600 make fuzz          ten minutes each
#   FUZZ_TARGETS="labels dispatcher" make fuzz
#   FUZZ_ARGS="-dict=..." make fuzz     extra libFuzzer flags
set -uo pipefail
cd "$(dirname "$0")/.."

BAZEL=${BAZEL:-bazel}
SECONDS_EACH=${FUZZ_SECONDS:-60}
OUT=${FUZZ_OUT:-fuzz-out}
TARGETS=${FUZZ_TARGETS:-$(ls tests/fuzz/corpus)}

# Longest input per target: room for what each parses (several pipelined
# requests, Docker answers with many labels, long paths).
max_len() {
  case "$1" in
    docker_json | docker_events_stream) echo 16384 ;;
    http_server | dispatcher | event_id) echo 4096 ;;
    *) echo 1024 ;;
  esac
}

labels=()
for t in $TARGETS; do labels+=("//tests/fuzz:${t}_fuzzer"); done
"$BAZEL" build --config=fuzz "${labels[@]}" || exit 1
bin=$("$BAZEL" info --config=fuzz bazel-bin 2>/dev/null)/tests/fuzz

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
summary=()
for t in $TARGETS; do
  work="$OUT/$t"
  mkdir -p "$work/corpus"
  cp -n tests/fuzz/corpus/"$t"/* "$work/corpus/" 2>/dev/null
  dict=()
  [ -f "tests/fuzz/dict/$t.dict" ] && dict=("-dict=tests/fuzz/dict/$t.dict")
  echo "== $t: ${SECONDS_EACH}s" >&2
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$bin/${t}_fuzzer" "$work/corpus" -max_total_time="$SECONDS_EACH" -max_len="$(max_len "$t")" \
    -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$work/" \
    "${dict[@]}" ${FUZZ_ARGS:-} >"$work/log.txt" 2>&1
  rc=$?
  elapsed=$(( $(date +%s) - start ))
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/log.txt" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -oE '(DONE|#[0-9]+ +[A-Z]+) +cov: [0-9]+ ft: [0-9]+' "$work/log.txt" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+')
  inputs=$(ls "$work/corpus" | wc -l)
  if [ $rc -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $rc): $(ls "$work" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' | tr '\n' ' ')"
    failed=1
    grep -E 'ERROR|invariant violated|runtime error' "$work/log.txt" | head -5 >&2
  fi
  summary+=("$(printf '%-22s %6ss  %10s runs  %-22s %6s inputs  %s' "$t" "$elapsed" "${runs:-?}" "${cov:-cov: ?}" "$inputs" "$result")")
done
printf '%s\n' "${summary[@]}"
exit $failed
