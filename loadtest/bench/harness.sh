# shellcheck shell=bash
# loadtest/bench/harness.sh — shell functions shared by loadtest/compare and
# loadtest/bench/validate-load-tool (sourced, not run). The scripts that source it set
# SCRIPT_NAME first; it sets traps so that every process they start is stopped by its
# PID on exit, failure, Ctrl-C or TERM — never by name.

die() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; exit 1; }
say() { printf '%s\n' "$*" >&2; }

# ------------------------------------------------------------------ processes we own
pids=()          # every long-lived process started here, in start order
workdir=""       # scratch directory (configs, logs), removed on exit

stop_pid() {     # stop_pid PID — TERM, wait up to 5 s, then KILL; reaps it
    local pid="$1"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            say "PID $pid ignored TERM for 5 s; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

forget_pid() {   # forget_pid PID — drop a stopped process from the list
    local kept=() p
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
    pids=("${kept[@]}")
}

# shellcheck disable=SC2317  # called from the traps below
cleanup() {
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[$i]}"; done
    pids=()
    if [ -n "$workdir" ]; then rm -rf "$workdir"; fi
    workdir=""
}
trap cleanup EXIT
trap 'say ""; say "$SCRIPT_NAME: interrupted, stopping everything it started"; exit 130' INT
trap 'exit 143' TERM

run_waited() {   # run_waited OUTFILE CMD... — CMD in the background, waited on, so that a
                 # signal to this script stops it at once (the traps kill it by PID)
    local out="$1" pid rc=0
    shift
    "$@" >"$out" 2>&1 </dev/null &
    pid=$!
    pids+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

wait_port() {    # wait_port ADDR PID — until ADDR accepts connections; fails if PID dies or after 15 s
    local addr="$1" pid="$2" deadline=$((SECONDS + 15))
    until port_busy "$addr"; do
        kill -0 "$pid" 2>/dev/null || return 1
        [ "$SECONDS" -lt "$deadline" ] || { say "nothing listens on $addr after 15 s"; return 1; }
        sleep 0.1
    done
}

wait_http() {    # wait_http URL PID — until URL answers 200, or PID dies, or 15 s
    local url="$1" pid="$2" deadline=$((SECONDS + 15))
    while [ "$SECONDS" -lt "$deadline" ]; do
        kill -0 "$pid" 2>/dev/null || return 1
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)" = 200 ] && return 0
        sleep 0.1
    done
    say "no 200 from $url within 15 s"
    return 1
}

check_body() {   # check_body URL BYTES — URL answers 200 with BYTES bytes of body
    local got
    got="$(curl -s -o /dev/null -w '%{http_code} %{size_download}' --max-time 5 "$1" || true)"
    [ "$got" = "200 $2" ] || die "GET $1 gave '${got:-no answer}' (want '200 $2': status, body bytes)"
}

start_upstream() { # start_upstream ADDR BYTES CPU [serve options...] — portico-load serve, pinned
    local addr="$1" bytes="$2" cpu="$3"
    shift 3
    port_busy "$addr" && die "$addr is already in use"
    taskset -c "$cpu" "$LOAD_BIN" serve --listen "$addr" --body-bytes "$bytes" --workers 1 --cpus "$cpu" "$@" \
        >"$workdir/upstream-${addr##*:}.log" 2>&1 </dev/null &
    pids+=("$!")
    wait_port "$addr" "${pids[-1]}" \
        || { cat "$workdir/upstream-${addr##*:}.log" >&2; die "upstream on $addr did not start (log above)"; }
}

# ------------------------------------------------------------------ measuring processes
descendants() {  # descendants PID — PID and all its descendants, one per line
    local root="$1" stat line rest pid
    local -A parent=()
    local -a f
    for stat in /proc/[0-9]*/stat; do
        { read -r line <"$stat"; } 2>/dev/null || continue
        pid="${line%% *}"
        rest="${line##*) }"
        read -r -a f <<<"$rest"
        parent[$pid]="${f[1]}"
    done
    local -A inside=(["$root"]=1)
    local p changed=1
    while [ "$changed" = 1 ]; do
        changed=0
        for p in "${!parent[@]}"; do
            if [ -z "${inside[$p]:-}" ] && [ -n "${inside[${parent[$p]}]:-}" ]; then inside[$p]=1; changed=1; fi
        done
    done
    printf '%s\n' "${!inside[@]}"
}

# utime+stime (clock ticks) of PID and its descendants (nginx: master + worker).
# /proc/PID/stat fields are counted after the last ')' since comm may hold spaces.
tree_ticks() {
    local total=0 p line rest
    local -a f
    [ -r "/proc/$1/stat" ] || { echo -1; return; }
    for p in $(descendants "$1"); do
        { read -r line <"/proc/$p/stat"; } 2>/dev/null || continue
        rest="${line##*) }"
        read -r -a f <<<"$rest"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

tree_peak_rss_kib() { # peak resident set (VmHWM) of PID and its descendants, summed, KiB
    local total=0 p v
    for p in $(descendants "$1"); do
        v="$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)"
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

affinity_of() {  # affinity_of PID — "tid:cpus ..." for every thread of PID
    local t out=""
    for t in /proc/"$1"/task/*; do
        out+="${t##*/}:$(awk '/^Cpus_allowed_list:/ {print $2}' "$t/status" 2>/dev/null) "
    done
    printf '%s' "${out% }"
}

machine_busy_pct() {  # CPU use of the whole machine over 1 s, in % of all cores
    local a b
    a="$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6; exit }' /proc/stat)"
    sleep 1
    b="$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6; exit }' /proc/stat)"
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); busy = y[1] - x[1]; idle = y[2] - x[2]
        printf "%.0f", (busy + idle > 0) ? 100 * busy / (busy + idle) : 0 }'
}

seconds_of() {   # seconds_of 10s|500ms|2m|30 — whole seconds, rounded up
    local d="$1"
    case "$d" in
        *ms) echo $(( (${d%ms} + 999) / 1000 )) ;;
        *h) echo $(( ${d%h} * 3600 )) ;;
        *m) echo $(( ${d%m} * 60 )) ;;
        *s) echo "${d%s}" ;;
        *) echo "$d" ;;
    esac
}

json_field() {   # json_field FILE EXPR — one value from a portico-load --json file (python3)
    python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)' "$1" "$2"
}

median() {       # median N... — the median of the numbers given
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) exit 1
        print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
