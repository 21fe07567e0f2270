#!/usr/bin/env bash
# Runs one mutation of tests/mutations/README.md: applies NAME.patch to the work tree (git
# apply), rebuilds what the mutation's tests need, runs each of them and requires it to FAIL
# with the line the README records, then reverts the patch and rebuilds again (always, failure
# and Ctrl-C included), so the tree and the build end as they began.
#
#   tests/mutations/run.sh NAME     (from anywhere; BUILD=DIR for another build dir than build/)
#   tests/mutations/run.sh --list
#
# Exit 0: every test failed as recorded (the checks can fail). 1: a test passed or failed some
# other way under the mutation. 2: the patch does not apply (the code moved: redo the change
# by hand as the README describes, then refresh the patch with git diff).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/mutations
BUILD=${BUILD:-build}
cd "$ROOT"

# mutation NAME -> "TARGETS" (ninja targets to rebuild, may be empty) and CHECKS: lines of
# "COMMAND<TAB>EXTENDED REGEX that the command's output must match".
define() {
    local name=$1
    targets=""
    checks=()
    case $name in
        lowest-stream-first)
            targets="unit_connection_test sim_transfer_test"
            checks=("$BUILD/unit_connection_test 'streams take turns*'	CHECK\( longest_wait <= kBulkStreams \)"
                    "$BUILD/sim_transfer_test 'interactive requests are answered*'	r.p99_ms <= 2 \\* rtt_ms \\* 1.25")
            ;;
        ipv6-bind-fails)
            targets="unit_udp_socket_test"
            checks=("$BUILD/unit_udp_socket_test 'udp: IPv6 loopback*'	bind udp \\[::\\]:0: address family not supported")
            ;;
        overlap-ignores-wildcards)
            targets="fuzz_replay_config"
            checks=("$BUILD/fuzz_replay_config tests/fuzz/corpus/config	fuzz invariant failed: !binds_collide")
            ;;
        direct-sessions-end-with-server)
            targets="burrow"
            checks=("python3 tests/e2e/agent_e2e.py $BUILD/burrow restart	the transfer on the direct path did not survive the server")
            ;;
        relayed-sessions-end-with-server)
            targets="sim_relay_test burrow"
            checks=("BURROW_RELAY_SEEDS=20 $BUILD/sim_relay_test 'a relayed transfer across*'	the restart cost the link|across the restart"
                    "flock /tmp/burrow-natlab.lock python3 tests/natlab/natlab.py $BUILD/burrow --pairs symmetric/symmetric --fault server --check-faults	reset forwarded connections")
            ;;
        no-relay-fallback)
            targets="burrow"
            checks=("flock /tmp/burrow-natlab.lock python3 tests/natlab/natlab.py $BUILD/burrow --pairs portrestricted/portrestricted --fault block --check-faults	block: no fall back to the relay during the 5 s block")
            ;;
        shared-port-forward)
            checks=("flock /tmp/burrow-natlab.lock python3 tests/natlab/nat_kinds.py shared	from a stranger: got True, want False")
            ;;
        router-dmz)
            checks=("flock /tmp/burrow-docker.lock ./run.sh docker-test	the NAT lab leaks")
            ;;
        *)
            return 1
            ;;
    esac
}

if [ "${1:-}" = "--list" ]; then
    for p in "$HERE"/*.patch; do basename "$p" .patch; done
    exit 0
fi
[ $# -eq 1 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
name=$1
patch=$HERE/$name.patch
[ -f "$patch" ] && define "$name" || { echo "mutations: no mutation $name (--list)" >&2; exit 2; }

files=$(git apply --numstat "$patch" | cut -f3)
# shellcheck disable=SC2086
git diff --quiet -- $files ||
    { echo "mutations: $files have local changes; commit or stash them first" >&2; exit 2; }
git apply --check "$patch" ||
    { echo "mutations: $name.patch does not apply; see README.md to redo it" >&2; exit 2; }

rebuild() {
    # shellcheck disable=SC2086
    [ -z "$targets" ] || nice -n 10 ninja -C "$BUILD" -j1 $targets >/dev/null
}
applied=0
restore() {
    if [ $applied -eq 1 ]; then
        git apply -R "$patch"
        applied=0
        echo "==> mutations: $name reverted; rebuilding ${targets:-nothing}"
        rebuild || echo "mutations: rebuild after the revert failed: run ninja yourself" >&2
    fi
}
trap restore EXIT
trap 'exit 130' INT TERM

git apply "$patch"
applied=1
echo "==> mutations: $name applied ($files); building ${targets:-nothing}"
rebuild

status=0
log=$(mktemp)
for check in "${checks[@]}"; do
    cmd=${check%%	*}
    want=${check#*	}
    echo "==> mutations: $cmd   (must fail with /$want/)"
    if bash -c "$cmd" >"$log" 2>&1; then
        echo "mutations: $name: PASSED under the mutation: the check cannot see it" >&2
        tail -20 "$log" >&2
        status=1
    elif line=$(grep -E -m1 -- "$want" "$log"); then
        echo "    failed as recorded: $line"
    else
        echo "mutations: $name: failed, but without /$want/:" >&2
        tail -30 "$log" >&2
        status=1
    fi
done
rm -f "$log"
exit $status
