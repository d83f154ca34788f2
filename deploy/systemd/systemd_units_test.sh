#!/usr/bin/env bash
# Checks the systemd units and their environment files:
#  1. `systemd-analyze verify` accepts both units without a single message
#     (it reports unknown or misspelt options as warnings and still exits 0,
#     so any output counts as a failure);
#  2. the hardening and service settings the units promise are in effect
#     (the last assignment of each setting wins in systemd, so that is the
#     one checked);
#  3. the environment files set only variables dispatchd reads, with values
#     it accepts (the commented examples too), the agent's events directory
#     is the one its unit makes writable, and the controller's state
#     directory is its unit's StateDirectory.
#
# verify insists that ExecStart's binary exists, so each unit is copied to
# $TEST_TMPDIR with ExecStart pointing at the dispatchd built here instead of
# /usr/local/bin. SYSTEMD_UNIT_PATH confines unit lookup to that directory,
# with empty stand-ins for the targets the units depend on, so the result
# does not depend on the unit files (Docker's, for one) of the machine
# running the test. No systemd instance is needed.
set -euo pipefail

HERE=deploy/systemd
DISPATCHD="$PWD/cmd/dispatchd/dispatchd"
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

if ! command -v systemd-analyze >/dev/null; then
  echo "systemd-analyze not found: install Debian's systemd package" \
    "(scripts/install-deps.sh does)" >&2
  exit 1
fi
if [[ ! -x "$DISPATCHD" ]]; then
  echo "dispatchd binary missing at $DISPATCHD" >&2
  exit 1
fi
case "$DISPATCHD" in
  *%* | *[[:space:]]*)
    # Both mean something else on an ExecStart line.
    echo "cannot use $DISPATCHD in ExecStart: it contains % or whitespace" >&2
    exit 1
    ;;
esac

units_dir="$TEST_TMPDIR/units"
rm -rf "$units_dir"
mkdir -p "$units_dir"
for target in sysinit.target basic.target shutdown.target network-online.target \
    multi-user.target; do
  printf '[Unit]\nDescription=stand-in for %s\n' "$target" >"$units_dir/$target"
done

# --- 1. systemd-analyze verify ---------------------------------------------

for mode in controller agent; do
  unit="dispatchd-$mode.service"
  if ! grep -qx "ExecStart=/usr/local/bin/dispatchd $mode" "$HERE/$unit"; then
    fail "$unit: ExecStart must be exactly '/usr/local/bin/dispatchd $mode' (settings belong in $mode.env)"
    continue
  fi
  sed "s|^ExecStart=/usr/local/bin/dispatchd |ExecStart=$DISPATCHD |" \
    "$HERE/$unit" >"$units_dir/$unit"
  status=0
  output="$(SYSTEMD_UNIT_PATH="$units_dir" systemd-analyze verify --man=no \
    "$units_dir/$unit" 2>&1)" || status=$?
  if [[ $status -ne 0 || -n "$output" ]]; then
    fail "systemd-analyze verify $unit (exit status $status):"
    printf '%s\n' "$output" >&2
  fi
done

# --- 2. settings ----------------------------------------------------------

# The value of the last `key=` line of a unit, or "<unset>".
last_value() {
  local unit="$1" key="$2"
  local line
  line="$(grep -E "^${key}=" "$HERE/$unit" | tail -n 1)" || true
  if [[ -z "$line" ]]; then
    echo "<unset>"
  else
    echo "${line#*=}"
  fi
}

expect() {
  local unit="$1" key="$2" want="$3"
  local got
  got="$(last_value "$unit" "$key")"
  if [[ "$got" != "$want" ]]; then
    fail "$unit: $key is '$got', expected '$want'"
  fi
}

# Settings that are lists accumulate over lines: expect exactly one line.
expect_only() {
  local unit="$1" key="$2" want="$3"
  local count
  count="$(grep -cE "^${key}=" "$HERE/$unit")" || true
  if [[ "$count" -ne 1 ]]; then
    fail "$unit: expected one $key= line, found $count"
  fi
  expect "$unit" "$key" "$want"
}

# A dependency list must name `want` (other lines may add more units).
expect_dependency() {
  local unit="$1" key="$2" want="$3"
  if ! grep -E "^${key}=" "$HERE/$unit" | tr ' =' '\n\n' | grep -qx "$want"; then
    fail "$unit: $key= does not name $want"
  fi
}

for mode in controller agent; do
  unit="dispatchd-$mode.service"
  expect "$unit" Type exec
  expect "$unit" EnvironmentFile "-/etc/dispatchd/$mode.env"
  expect "$unit" Restart on-failure
  expect "$unit" RestartSec 5s
  expect "$unit" KillSignal SIGTERM
  expect "$unit" TimeoutStopSec 15s
  expect_dependency "$unit" After network-online.target
  expect_dependency "$unit" Wants network-online.target
  for key in NoNewPrivileges PrivateTmp PrivateDevices PrivateMounts \
      ProtectKernelTunables ProtectKernelModules ProtectKernelLogs \
      ProtectControlGroups ProtectClock ProtectHostname RestrictNamespaces \
      RestrictRealtime RestrictSUIDSGID LockPersonality MemoryDenyWriteExecute; do
    expect "$unit" "$key" yes
  done
  expect "$unit" ProtectSystem strict
  expect "$unit" ProtectHome yes
  expect "$unit" ProtectProc invisible
  expect "$unit" SystemCallArchitectures native
  expect_only "$unit" RestrictAddressFamilies "AF_UNIX AF_INET AF_INET6"
  # Further SystemCallFilter lines may only take calls away (~...).
  if [[ "$(grep -E '^SystemCallFilter=' "$HERE/$unit" | grep -vE '^SystemCallFilter=~')" \
      != "SystemCallFilter=@system-service" ]]; then
    fail "$unit: the allow list must be exactly SystemCallFilter=@system-service"
  fi
  for forbidden in AmbientCapabilities=CAP PermissionsStartOnly ExecStartPre=+ \
      ExecStart=+ ExecStart=! ; do
    if grep -q "^${forbidden}" "$HERE/$unit"; then  # basic regex: + and ! are literal
      fail "$unit: must not use ${forbidden}"
    fi
  done
done

# The controller: no privileges at all.
unit=dispatchd-controller.service
expect "$unit" DynamicUser yes
expect_only "$unit" CapabilityBoundingSet ""
expect "$unit" PrivateUsers yes
expect "$unit" LogsDirectory dispatchd
expect "$unit" StateDirectory dispatchd-controller
if grep -qE '^(User|Group)=' "$HERE/$unit"; then
  fail "$unit: sets User= or Group=; it runs as its DynamicUser"
fi

# The agent: root with four capabilities, and the events directory writable.
unit=dispatchd-agent.service
expect_only "$unit" CapabilityBoundingSet "CAP_DAC_OVERRIDE CAP_FOWNER CAP_CHOWN CAP_LEASE"
expect "$unit" StateDirectory dispatchd
expect_only "$unit" ReadWritePaths "-/var/lib/dispatchd/events"
expect_dependency "$unit" After docker.service
expect_dependency "$unit" Wants docker.service
# Docker restarting must not stop the agent: it retries by itself.
if grep -E '^(Requires|BindsTo|PartOf|Requisite)=' "$HERE/$unit" | grep -q docker; then
  fail "$unit: must not stop with docker.service (Wants= and After= only)"
fi

# --- 3. environment files ---------------------------------------------------

help="$("$DISPATCHD" --help)"
for mode in controller agent; do
  env_file="$HERE/$mode.env"
  active=()
  examples=()
  while IFS= read -r line; do
    # Assignments, active or commented out as an example.
    if [[ "$line" =~ ^(#?)([A-Z][A-Z0-9_]*)=(.*)$ ]]; then
      name="${BASH_REMATCH[2]}"
      if [[ -z "${BASH_REMATCH[1]}" ]]; then
        active+=("$name=${BASH_REMATCH[3]}")
      else
        examples+=("$name=${BASH_REMATCH[3]}")
      fi
      case "$name" in
        DISPATCHD_*)
          flag="${name#DISPATCHD_}"
          flag="--$(tr 'A-Z_' 'a-z-' <<<"$flag")"
          if ! grep -qE -- "(^|[[:space:]])${flag}([[:space:]]|$)" <<<"$help"; then
            fail "$env_file: $name names no flag of dispatchd ($flag)"
          fi
          ;;
        DISPATCHER_LABEL_NAMESPACE | DISPATCHER_EVENT_NAMESPACE | \
          DISPATCHER_FORWARD_DESTINATION | DISPATCHER_FORWARD_DELIMITER | DOCKER_HOST) ;;
        *) fail "$env_file: dispatchd does not read $name" ;;
      esac
    elif [[ -n "$line" && "$line" != \#* ]]; then
      fail "$env_file: not a VAR=value line or a comment: $line"
    fi
  done <"$env_file"
  # dispatchd parses its whole environment before it looks at --version, so
  # this exits 0 only if every value is valid (a log level, a number, ...).
  for set in active examples; do
    declare -n vars="$set"
    if ! output="$(env -i "${vars[@]}" "$DISPATCHD" "$mode" --version 2>&1)"; then
      fail "$env_file: dispatchd $mode rejects the $set settings: $output"
    fi
    unset -n vars
  done
done

events_dir="$(grep -E '^DISPATCHD_EVENTS_DIR=' "$HERE/agent.env" | tail -n 1)" || true
events_dir="${events_dir#*=}"
writable="$(last_value dispatchd-agent.service ReadWritePaths)"
if [[ "$events_dir" != "${writable#-}" ]]; then
  fail "agent.env: DISPATCHD_EVENTS_DIR '$events_dir' is not the unit's ReadWritePaths '$writable'"
fi
case "$events_dir" in
  "/var/lib/$(last_value dispatchd-agent.service StateDirectory)/"*) ;;
  *) fail "agent.env: DISPATCHD_EVENTS_DIR '$events_dir' is outside the unit's StateDirectory" ;;
esac

state_dir="$(grep -E '^DISPATCHD_STATE_DIR=' "$HERE/controller.env" | tail -n 1)" || true
state_dir="${state_dir#*=}"
if [[ "$state_dir" != "/var/lib/$(last_value dispatchd-controller.service StateDirectory)" ]]; then
  fail "controller.env: DISPATCHD_STATE_DIR '$state_dir' is not the controller unit's StateDirectory"
fi
if [[ "$(last_value dispatchd-controller.service StateDirectory)" == \
    "$(last_value dispatchd-agent.service StateDirectory)" ]]; then
  fail "the controller's StateDirectory is the agent's: a DynamicUser unit would take it over"
fi

if [[ $failures -ne 0 ]]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "systemd units: all checks passed"
