#!/usr/bin/env bash
# Serve a class: K `streamlit run app.py` replicas on loopback ports behind nginx with sticky sessions.
#
#   deploy/serve_class.sh start [K]   # K replicas (default 3) on 127.0.0.1:8601.., nginx on $LISTEN
#   deploy/serve_class.sh status      # health of each replica and of nginx
#   deploy/serve_class.sh stop        # stop nginx and the replicas this script started
#
# Environment: LISTEN (nginx's address, default 127.0.0.1:8080; e.g. 0.0.0.0:80 for a lecture hall),
# FIRST_PORT (default 8601), PYTHON (default .venv/bin/python), RUN (state folder, default
# ${XDG_RUNTIME_DIR:-/tmp}/explorer-class), NGINX (default nginx). EXPLORER_BACKEND / RAY_ADDRESS pass through
# to every replica, so all of them can share one Ray Serve cluster for the heavy work.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="${RUN:-${XDG_RUNTIME_DIR:-/tmp}/explorer-class}"
LISTEN="${LISTEN:-127.0.0.1:8080}"
FIRST_PORT="${FIRST_PORT:-8601}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
NGINX="${NGINX:-nginx}"
WAIT_S="${WAIT_S:-120}"   # how long one replica may take to answer its health check

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
    mkdir -p "$RUN"/{client_body,proxy,fastcgi,uwsgi,scgi}
    if [[ -e "$RUN/replicas.pid" ]]; then echo "already running (pids in $RUN); stop it first" >&2; exit 1; fi
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
    echo "serving $k replicas at http://$LISTEN/ (nginx pid $(cat "$RUN/nginx.pid"))"
}

status() {
    local ok=0
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
    if [[ -e "$RUN/nginx.pid" ]]; then
        "$NGINX" -p "$RUN" -c "$RUN/nginx.conf" -s quit || kill "$(cat "$RUN/nginx.pid")" || true
        for _ in $(seq 20); do [[ -e "$RUN/nginx.pid" ]] || break; sleep 0.5; done
    fi
    if [[ -e "$RUN/replicas.pid" ]]; then
        while read -r pid port; do kill "$pid" 2>/dev/null && echo "stopping replica $port (pid $pid)" || true; done \
            <"$RUN/replicas.pid"
        while read -r pid port; do  # each replica gets 15 s to finish its sessions' runs
            for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        done <"$RUN/replicas.pid"
        rm -f "$RUN/replicas.pid"
    fi
}

case "${1:-}" in
    start) start "${2:-3}" ;;
    status) status ;;
    stop) stop ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
esac
