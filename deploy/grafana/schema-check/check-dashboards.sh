#!/usr/bin/env bash
# Type-checks Grafana dashboards against the Dashboard type that Grafana
# publishes in @grafana/schema, since no Grafana runs in the tests.
#
#   check-dashboards.sh CHECK_DIR DASHBOARD.json...
#
# CHECK_DIR holds package.json and package-lock.json, which pin
# @grafana/schema and typescript. Run by `bazel test //deploy:grafana_dashboards_schema_test`.
#
# Each dashboard becomes a .ts file that assigns the file's text, verbatim, to
# a constant typed Dashboard, and `tsc --noEmit --strict` checks them all.
# An object literal (rather than importing the JSON with resolveJsonModule)
# keeps string literals as literals, so enum-like fields are checked, and makes
# TypeScript reject properties the schema does not declare. The text starts
# on the .ts file's first line, so TypeScript's line numbers are the JSON
# file's.
#
# Nothing is stripped before the check: these dashboards are provisioned from
# files, not imported through Grafana's UI, so they need none of the fields
# an export adds for import (__inputs, __requires, __elements, a numeric id),
# and a dashboard carrying one fails here until it is removed.
#
# Where the packages come from: the test runs `npm ci --prefer-offline` into
# its own temporary folder, using the npm cache of the user running Bazel when
# it can write there. A clean clone on a fresh machine thus needs no
# hand-made node_modules, and the rest of the build stays offline; the price is
# that this test needs the npm registry (or a warm npm cache) whenever Bazel
# reruns it, and a few seconds for the install.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 CHECK_DIR DASHBOARD.json..." >&2
  exit 2
fi
check_dir=$1
shift

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "FAIL: $tool is not installed (make deps installs it)" >&2
    exit 1
  fi
done

if [ -n "${TEST_TMPDIR:-}" ]; then
  work=$TEST_TMPDIR/schema-check
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi

# A Bazel test has no HOME of the user's (unset, or its temporary folder);
# npm's usual cache lives in the user's home directory, and reusing it lets
# --prefer-offline skip downloads made before.
if [ -z "${npm_config_cache:-}" ]; then
  home=$(getent passwd "$(id -u)" | cut -d: -f6 || true)
  if [ -n "$home" ] && mkdir -p "$home/.npm" 2>/dev/null && [ -w "$home/.npm" ]; then
    export npm_config_cache=$home/.npm
  else
    export npm_config_cache=$work/npm-cache
  fi
fi

cp "$check_dir/package.json" "$check_dir/package-lock.json" "$work/"
if ! (cd "$work" && npm ci --prefer-offline --ignore-scripts --no-audit --no-fund \
        --loglevel=error >npm-ci.log 2>&1); then
  echo "FAIL: npm ci of $check_dir/package-lock.json did not succeed:" >&2
  cat "$work/npm-ci.log" >&2
  exit 1
fi

# One generated file per dashboard; names.tsv maps it back to the dashboard.
mkdir -p "$work/dashboards"
header="import type { Dashboard } from '@grafana/schema'; export const dashboard: Dashboard = "
: >"$work/names.tsv"
status=0
i=0
for dashboard in "$@"; do
  i=$((i + 1))
  # Strict JSON first: TypeScript would also accept comments and trailing
  # commas, which Grafana does not.
  if ! error=$(node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' \
                 "$dashboard" 2>&1); then
    echo "FAIL $dashboard: not valid JSON" >&2
    echo "$error" | grep -m1 -E 'SyntaxError|Error' >&2 || true
    status=1
    continue
  fi
  ts=dashboard$i.ts
  {
    printf '%s' "$header"
    cat "$dashboard"
    printf ';\n'
  } >"$work/dashboards/$ts"
  printf '%s\t%s\n' "$ts" "$dashboard" >>"$work/names.tsv"
done

if [ ! -s "$work/names.tsv" ]; then
  exit "$status"
fi

cd "$work/dashboards"
tsc_status=0
"$work/node_modules/.bin/tsc" --noEmit --strict --pretty false \
  --target es2022 --module esnext --moduleResolution bundler \
  ./*.ts >"$work/tsc.log" 2>&1 || tsc_status=$?

# TypeScript names the generated file: name the dashboard instead
# (dashboard1.ts(40,9): error ... -> deploy/.../x.json:40:9: error ...), and
# keep the indented lines that explain an error with it.
awk -F '\t' -v out="$work/report" -v header_length=${#header} '
  NR == FNR { name[$1] = $2; next }
  match($0, /^dashboard[0-9]+\.ts\([0-9]+,[0-9]+\): /) {
    ts = substr($0, 1, index($0, "(") - 1)
    split(substr($0, length(ts) + 2), pos, /[,)]/)
    if (pos[1] == 1) pos[2] -= header_length  # the column in the JSON text
    file = out "." ts
    print name[ts] ":" pos[1] ":" pos[2] ": " substr($0, RLENGTH + 1) > file
    next
  }
  /^[ \t]/ && file != "" { print > file; next }
  { file = "" }
' "$work/names.tsv" "$work/tsc.log"

while IFS=$'\t' read -r ts dashboard; do
  if [ -s "$work/report.$ts" ]; then
    echo "FAIL $dashboard does not match @grafana/schema's Dashboard type:" >&2
    cat "$work/report.$ts" >&2
    status=1
  else
    echo "ok   $dashboard"
  fi
done <"$work/names.tsv"

# Anything else tsc said (a broken install, an option it rejects).
if [ "$tsc_status" -ne 0 ]; then
  other=$(grep -v -E '^(dashboard[0-9]+\.ts\(|[[:space:]])' "$work/tsc.log" || true)
  if [ -n "$other" ] || [ "$status" -eq 0 ]; then
    echo "FAIL: tsc exited with $tsc_status:" >&2
    cat "$work/tsc.log" >&2
    status=1
  fi
fi
exit "$status"
