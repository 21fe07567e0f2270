#!/usr/bin/env bash
# burrow's one entry point for people and CI.
#
#   ./run.sh demo [--once]   server + two agents forwarding a port on loopback (--once: check, exit)
#   ./run.sh test            install what is missing, build, run every test (ctest)
#   ./run.sh test --asan     the unit and simulator tests under ASan+UBSan (build-asan/)
#   ./run.sh deps            install missing build and test packages with apt-get
#   ./run.sh build           configure and build into build/
#   ./run.sh natlab [--pairs a/b,..] [--check-paths] [--keep] [--json FILE]
#                            agents behind real NATs in network namespaces (root); without
#                            options also the 5 s UDP timeout and relayed server restart checks
#   ./run.sh docker-test     build the images, run the docker-compose NAS/laptop demos, check them
#   ./run.sh bench [--quick] burrow beside direct TCP, kcptun, wireguard-go and Nebula:
#                            docs/benchmarks.{md,json,png} (--quick: one short run into
#                            build/bench-quick/; root for loss and the namespaced peers)
#   ./run.sh fuzz [--seconds N] [--merge] [TARGET...]
#                            libFuzzer targets (tests/fuzz/) for N s each (default 60), build-fuzz/
#   ./run.sh soak [--minutes N] [tests/soak/soak.py options]
#                            two agents behind the NAT lab's NATs under mixed traffic for N min
#                            (default 10) with faults on a schedule; fails on a lost byte, a
#                            failed connection, a leak or growth (root): build/soak/report.json
#                            and summary.txt. Not part of `test`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"
JOBS=$(nproc 2>/dev/null || echo 2)

# Every Debian package the build, the tests and the tools need. Nothing else is assumed.
PACKAGES=(
    cmake ninja-build g++ pkg-config git ccache coturn openssl
    libuv1-dev libmbedtls-dev libsodium-dev libcli11-dev catch2 libtomlplusplus-dev
    libspdlog-dev nlohmann-json3-dev libhttp-parser-dev libminiupnpc-dev libnatpmp-dev
    miniupnpd-iptables
    libhiredis-dev redis-server
    clang libclang-rt-14-dev
    iproute2 iptables conntrack iperf3 python3 curl socat procps dnsmasq bind9-dnsutils
    wrk nginx
    python3-prometheus-client prometheus
    chromium
)
# What ./run.sh bench needs besides: the tunnels it compares burrow with (kcptun, wireguard-go
# with wg from wireguard-tools, Nebula with nebula-cert), perf for syscall counts, matplotlib
# for the plot. Kept apart so `./run.sh test` does not install them.
BENCH_PACKAGES=(kcptun wireguard-go wireguard-tools nebula linux-perf python3-matplotlib)
# What ./run.sh docker-test needs besides: the engine, compose, and debootstrap for the base
# image when no registry is reachable. Kept apart so `./run.sh test` never installs a daemon.
DOCKER_PACKAGES=(docker.io docker-compose debootstrap)

say() { printf '==> %s\n' "$*"; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 2; }

missing_packages() {  # missing_packages PACKAGE...
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}

install_missing() {  # install_missing PACKAGE...
    local missing
    missing=$(missing_packages "$@" | tr '\n' ' ')
    if [ -z "${missing// /}" ]; then
        say "deps: all $# packages present"
        return 0
    fi
    say "deps: installing $missing"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    $sudo apt-get install -y -qq --no-install-recommends $missing
}

cmd_deps() { install_missing "${PACKAGES[@]}"; }

# ccache (in PACKAGES) keeps compiled objects between builds and between clones: paths under
# $ROOT are hashed relative to it and the build folder is not hashed, so a fresh clone of the
# same sources on this machine (CI's) compiles nothing that an earlier build here compiled.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$ROOT} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-true}
configure() {  # configure DIR [cmake args...]
    local dir=$1; shift
    local launcher=()
    command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    if [ ! -f "$dir/build.ninja" ]; then
        cmake -S "$ROOT" -B "$dir" -G Ninja "${launcher[@]}" "$@" >/dev/null
    fi
}

cmd_build() {
    configure build
    ninja -C build -j "$JOBS"
}

cmd_test() {
    local asan=0
    for a in "$@"; do
        case "$a" in
            --asan) asan=1 ;;
            *) die "test: unknown option $a" ;;
        esac
    done
    cmd_deps
    if [ "$asan" -eq 1 ]; then
        configure build-asan -DBURROW_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DBURROW_BENCH=OFF
        ninja -C build-asan -j "$JOBS"
        say "test: unit and simulator tests under ASan+UBSan"
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
            ctest --test-dir build-asan -L 'unit|sim' --output-on-failure -j "$JOBS"
    else
        cmd_build
        say "test: every test"
        ctest --test-dir build --output-on-failure -j "$JOBS"
    fi
}

# BURROW=path/to/burrow runs the demo with that binary instead of building (ctest does).
cmd_demo() {
    local burrow=${BURROW:-}
    if [ -z "$burrow" ]; then
        cmd_deps
        cmd_build
        burrow="$ROOT/build/burrow"
    fi
    exec python3 "$ROOT/examples/demo.py" "$burrow" "$@"
}

cmd_natlab() {
    cmd_build
    say "natlab: are the lab's NATs what they claim?"
    python3 tests/natlab/nat_kinds.py
    say "natlab: the matrix of NAT pairs"
    python3 tests/natlab/natlab.py build/burrow "$@"
    if [ $# -eq 0 ]; then
        say "natlab: symmetric NATs with a 5 s UDP timeout, a request after 60 s idle"
        python3 tests/natlab/natlab.py build/burrow --check-paths --pairs symmetric/symmetric \
            --udp-timeout 5 --idle 60
        say "natlab: a server restart in the middle of a relayed transfer"
        python3 tests/natlab/natlab.py build/burrow --pairs symmetric/symmetric --fault server \
            --check-faults
        say "natlab: issue 17's IPv6 rows"
        python3 tests/natlab/natlab.py build/burrow --check-paths \
            --pairs symmetric+dual/symmetric+dual,portrestricted+v6/portrestricted+v6,portrestricted+v4/portrestricted+v6
        say "natlab: control over IPv6 (the server's name): an IPv4-only peer, netcheck per family"
        python3 tests/natlab/natlab.py build/burrow --check-paths --server-name --stun-server \
            --netcheck --pairs portrestricted+v4/portrestricted+dual,symmetric+dual/portrestricted+dual
        say "natlab: IPv6 between two dual-stack agents blackholed mid-transfer"
        python3 tests/natlab/natlab.py build/burrow --check-paths --fault blackhole6 \
            --check-faults --pairs portrestricted+dual/portrestricted+dual
        say "natlab: the server's STUN ports blocked, coturn alone gives the reflexive addresses"
        python3 tests/natlab/natlab.py build/burrow --check-paths --stun-server \
            --block-server-stun --pairs portrestricted/portrestricted
    fi
}

cmd_docker_test() {
    # docker/test.sh holds the per-variant path expectations (EXPECT_PATH_* at its top).
    install_missing "${DOCKER_PACKAGES[@]}"
    "$ROOT/docker/test.sh" "$@"
}

# Debian's interpreter, where python3-matplotlib is installed (a pyenv or venv python3 earlier
# in PATH would not see it, and the plot would be skipped).
cmd_bench() {
    cmd_deps
    install_missing "${BENCH_PACKAGES[@]}"
    cmd_build
    local py=python3
    [ -x /usr/bin/python3 ] && py=/usr/bin/python3
    exec "$py" "$ROOT/tests/bench/run_bench.py" --burrow "$ROOT/build/burrow" "$@"
}

# Builds the libFuzzer targets with clang into build-fuzz/ and runs each for --seconds on a
# scratch copy of its corpus (tests/fuzz/corpus/<target>/ stays as committed unless --merge,
# which adds the inputs that found new coverage). Two targets run at a time, one process each,
# so the machine's cores are not oversubscribed. Exit 1 if any target crashed.
cmd_fuzz() {
    local seconds=60 merge=0 only=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --seconds) [ $# -ge 2 ] || die "fuzz: --seconds needs a value"; seconds=$2; shift 2 ;;
            --merge) merge=1; shift ;;
            -*) die "fuzz: unknown option $1" ;;
            *) only+=("$1"); shift ;;
        esac
    done
    [[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] ||
        die "fuzz: --seconds must be a positive number"
    cmd_deps
    configure build-fuzz -DBURROW_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ -DBURROW_BENCH=OFF \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo
    ninja -C build-fuzz -j "$JOBS"

    local targets=() f name
    for f in tests/fuzz/*_fuzz.cc; do
        name=$(basename "$f" _fuzz.cc)
        if [ ${#only[@]} -eq 0 ] || [[ " ${only[*]} " == *" $name "* ]]; then targets+=("$name"); fi
    done
    [ ${#targets[@]} -gt 0 ] || die "fuzz: no such target: ${only[*]}"

    local out=build-fuzz/runs
    rm -rf "$out"
    mkdir -p "$out"
    # A run: the target on a scratch corpus; crash inputs land in $out/<target>/artifacts/.
    run_one() {
        local t=$1 dir=$out/$1
        mkdir -p "$dir/corpus" "$dir/artifacts"
        cp tests/fuzz/corpus/"$t"/* "$dir/corpus/" 2>/dev/null || true
        # set -e is inherited by this background subshell: catch the target's exit code or a
        # crash would end the subshell before rc is written.
        local rc=0
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
            "build-fuzz/${t}_fuzz" -max_total_time="$seconds" -timeout=25 -print_final_stats=1 \
            -artifact_prefix="$dir/artifacts/" "$dir/corpus" >"$dir/log" 2>&1 || rc=$?
        echo "$rc" >"$dir/rc"
    }
    say "fuzz: ${#targets[@]} targets, ${seconds}s each, 2 at a time; logs in $out/<target>/log"
    local running=0 t
    for t in "${targets[@]}"; do
        run_one "$t" &
        running=$((running + 1))
        if [ "$running" -ge 2 ]; then wait -n || true; running=$((running - 1)); fi
    done
    wait || true

    local failed=0 rc execs cov ft crashes
    printf '%-12s %12s %8s %8s %8s\n' target executions cov ft crashes
    for t in "${targets[@]}"; do
        rc=$(cat "$out/$t/rc" 2>/dev/null || echo 1)
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t/log" | tail -1)
        # libFuzzer's last status line ("#N  DONE  cov: C ft: F ...", or the last pulse).
        cov=$(grep -o 'cov: [0-9]*' "$out/$t/log" | tail -1 | cut -d' ' -f2)
        ft=$(grep -o 'ft: [0-9]*' "$out/$t/log" | tail -1 | cut -d' ' -f2)
        crashes=$(find "$out/$t/artifacts" -type f | wc -l)
        if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
        printf '%-12s %12s %8s %8s %8s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$crashes"
        if [ "$crashes" -ne 0 ]; then
            failed=1
            find "$out/$t/artifacts" -type f -printf '    crash input: %p\n'
            grep -A 25 -m 1 'ERROR: \|runtime error\|==ERROR\|deadly signal' "$out/$t/log" | sed 's/^/    /' || true
        fi
        if [ "$merge" -eq 1 ] && [ "$rc" -eq 0 ]; then
            "build-fuzz/${t}_fuzz" -merge=1 tests/fuzz/corpus/"$t" "$out/$t/corpus" \
                >"$out/$t/merge.log" 2>&1 || die "fuzz: merge of $t failed (see $out/$t/merge.log)"
        fi
    done
    [ "$failed" -eq 0 ] ||
        die "fuzz: a target crashed; fix it, then add its input to tests/fuzz/corpus/<target>/"
}

# The soak (tests/soak/soak.py): the lab's namespaces and NATs, a server and two agents, bulk,
# short and idle connections, faults every 20 s; report in build/soak/.
cmd_soak() {
    cmd_build
    python3 tests/soak/soak.py build/burrow "$@"
}

case "${1:-}" in
    deps) shift; cmd_deps "$@" ;;
    build) shift; cmd_deps; cmd_build "$@" ;;
    test) shift; cmd_test "$@" ;;
    demo) shift; cmd_demo "$@" ;;
    natlab) shift; cmd_deps; cmd_natlab "$@" ;;
    bench) shift; cmd_bench "$@" ;;
    fuzz) shift; cmd_fuzz "$@" ;;
    soak) shift; cmd_deps; cmd_soak "$@" ;;
    docker-test) shift; cmd_docker_test "$@" ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
        [ -n "${1:-}" ] && die "unknown command: $1"
        exit 2
        ;;
esac
