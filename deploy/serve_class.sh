#!/usr/bin/env bash
# Serve a class: K `streamlit run app.py` replicas on loopback ports behind nginx with sticky sessions.
#
#   deploy/serve_class.sh start [K]   # K replicas (default 3) on 127.0.0.1:8601.., nginx on $LISTEN
#   deploy/serve_class.sh status      # health of each replica and of nginx
#   deploy/serve_class.sh stop        # stop nginx and the replicas this script started
#
# Environment: LISTEN (nginx's address, default 127.0.0.1:8080; e.g. 0.0.0.0:80 for a lecture hall),
# FIRST_PORT (default 8601), PYTHON (default .venv/bin/python), NGINX (default nginx), RUN (the state folder:
# pids, logs, nginx's temp files). Without RUN, `start` makes a private folder with `mktemp -d` and notes its path
# in deploy/.run (read by `status` and `stop`); a RUN that `start` is given must not exist yet. `status` and
# `stop` use a state folder only when it is a real folder (not a link) owned by this user and writable by no one
# else, and `stop` signals only the processes it started (checked by their command line and owner).
# EXPLORER_BACKEND / RAY_ADDRESS pass through to every replica, so all of them can share one Ray Serve cluster.
set -euo pipefail
umask 077

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POINTER="$ROOT/deploy/.run"   # where `start` notes the folder it made (git ignores it)
LISTEN="${LISTEN:-127.0.0.1:8080}"
FIRST_PORT="${FIRST_PORT:-8601}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
NGINX="${NGINX:-nginx}"
WAIT_S="${WAIT_S:-120}"   # how long one replica may take to answer its health check

die() { echo "$*" >&2; exit 1; }

new_state() {  # a fresh private folder for `start`: RUN if given (it must not exist), else mktemp -d
    if [[ -n "${RUN:-}" ]]; then
        [[ -e "$RUN" || -L "$RUN" ]] && die "$RUN already exists: give RUN a new path, or stop what runs there first"
        mkdir -m 700 -- "$RUN" || die "cannot create $RUN"
    else
        [[ -e "$POINTER" ]] && die "already running (state in $(cat "$POINTER")); stop it first"
        RUN="$(mktemp -d -t explorer-class.XXXXXXXX)"
    fi
    printf '%s\n' "$RUN" >"$POINTER"
}

known_state() {  # the folder `start` made, checked: a real folder, ours, writable by no one else
    RUN="${RUN:-$(cat "$POINTER" 2>/dev/null || true)}"
    [[ -n "$RUN" ]] || die "nothing started from here (no deploy/.run); set RUN to the state folder"
    [[ -d "$RUN" && ! -L "$RUN" ]] || die "$RUN is not a folder (or is a link): not touching it"
    [[ "$(stat -c %u -- "$RUN")" == "$(id -u)" ]] || die "$RUN belongs to another user: not touching it"
    (( ($(stat -c '%#a' -- "$RUN") & 8#022) == 0 )) || die "$RUN is writable by others: not touching it"
}

ours() {  # pid port: whether pid is the replica this script started on that port, run by this user
    local cmd
    [[ "$1" =~ ^[0-9]+$ && "$2" =~ ^[0-9]+$ ]] || return 1
    [[ "$(stat -c %u "/proc/$1" 2>/dev/null)" == "$(id -u)" ]] || return 1
    cmd="$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null)" || return 1
    [[ "$cmd" == *"streamlit run app.py"*"--server.port $2 "* ]]
}

health() { curl -fsS --max-time 5 "http://$1/_stcore/health" 2>/dev/null; }

wait_healthy() {  # address, seconds
    local end=$((SECONDS + $2))
    until health "$1" >/dev/null; do
        if (( SECONDS >= end )); then echo "no answer from $1 within $2 s (see $RUN/*.log)" >&2; return 1; fi
        sleep 1
    done
}

start() {
    local k="${1:-3}" upstreams="" port pid
    [[ "$k" =~ ^[1-9][0-9]?$ ]] || die "K is a number of replicas from 1 to 99, not $k"
    new_state
    mkdir -m 700 "$RUN"/{client_body,proxy,fastcgi,uwsgi,scgi}
    set -o noclobber
    printf '%s\n' "$LISTEN" >"$RUN/listen"  # for `status`
    for ((i = 0; i < k; i++)); do
        port=$((FIRST_PORT + i))
        (cd "$ROOT" && exec "$PYTHON" -m streamlit run app.py --server.address 127.0.0.1 --server.port "$port" \
            --server.headless true) >"$RUN/replica-$port.log" 2>&1 &
        pid=$!
        echo "$pid $port" >>"$RUN/replicas.pid"
        upstreams+="        server 127.0.0.1:$port max_fails=3 fail_timeout=10s;"$'\n'
    done
    while read -r pid port; do wait_healthy "127.0.0.1:$port" "$WAIT_S"; echo "replica $port (pid $pid) ok"; done \
        <"$RUN/replicas.pid"
    UPSTREAMS="$upstreams" LISTEN="$LISTEN" RUN="$RUN" "$PYTHON" - "$ROOT/deploy/nginx.conf" "$RUN/nginx.conf" <<'PY'
import os, sys
text = open(sys.argv[1]).read()
for name in ("UPSTREAMS", "LISTEN", "RUN"):
    text = text.replace(f"@{name}@", os.environ[name].rstrip("\n"))
open(sys.argv[2], "w").write(text)
PY
    "$NGINX" -p "$RUN" -c "$RUN/nginx.conf" -t -q
    "$NGINX" -p "$RUN" -c "$RUN/nginx.conf"
    wait_healthy "$LISTEN" 10
    echo "serving $k replicas at http://$LISTEN/ (nginx pid $(cat "$RUN/nginx.pid"); state in $RUN)"
}

status() {
    local ok=0
    known_state
    LISTEN="$(cat "$RUN/listen" 2>/dev/null || echo "$LISTEN")"
    if [[ -e "$RUN/replicas.pid" ]]; then
        while read -r pid port; do
            echo "replica $port (pid $pid): $(health "127.0.0.1:$port" || echo down)"
        done <"$RUN/replicas.pid"
    else
        echo "no replicas started from $RUN"; ok=1
    fi
    echo "nginx at $LISTEN: $(health "$LISTEN" || echo down)"
    return $ok
}

stop() {
    known_state
    if [[ -f "$RUN/nginx.pid" && -f "$RUN/nginx.conf" ]]; then  # nginx reads its own pid file
        "$NGINX" -p "$RUN" -c "$RUN/nginx.conf" -s quit || true
        for _ in $(seq 20); do [[ -e "$RUN/nginx.pid" ]] || break; sleep 0.5; done
    fi
    if [[ -f "$RUN/replicas.pid" ]]; then
        while read -r pid port; do
            if ours "$pid" "$port"; then kill "$pid" && echo "stopping replica $port (pid $pid)"
            else echo "pid $pid is not a replica this script started on port $port: left alone" >&2; fi
        done <"$RUN/replicas.pid"
        while read -r pid port; do  # each replica gets 15 s to finish its sessions' runs
            for _ in $(seq 30); do ours "$pid" "$port" || break; sleep 0.5; done
        done <"$RUN/replicas.pid"
        rm -f "$RUN/replicas.pid"
    fi
    [[ "$(cat "$POINTER" 2>/dev/null)" == "$RUN" ]] && rm -f "$POINTER"
    echo "stopped; logs stay in $RUN"
}

case "${1:-}" in
    start) start "${2:-3}" ;;
    status) status ;;
    stop) stop ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
esac
