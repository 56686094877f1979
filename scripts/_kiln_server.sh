# Sourced by scripts/client-tests and scripts/load-test: starts `kiln serve` on a free loopback
# port (KILN_URL is exported) and stops it on exit.
# KILN_BIN, else the newer of target/release/kiln and target/debug/kiln, else a release build.
kiln_bin() {
    if [ -n "${KILN_BIN:-}" ]; then echo "$KILN_BIN"; return; fi
    local b
    b=$(ls -t target/release/kiln target/debug/kiln 2>/dev/null | head -1 || true)
    if [ -n "$b" ]; then echo "$b"; return; fi
    echo "building target/release/kiln ..." >&2
    cargo build --release -p kiln-server >&2
    echo target/release/kiln
}

kiln_start() {
    local bin port log
    bin=$(kiln_bin)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    log=${KILN_SERVER_LOG:-$(mktemp -t kiln-serve.XXXXXX.log)}
    export KILN_MODELS=${KILN_MODELS:-$HOME/.kiln/models}
    export KILN_URL="http://127.0.0.1:$port"
    KILN_HOST="127.0.0.1:$port" OLLAMA_HOST= "$bin" serve >"$log" 2>&1 &
    KILN_PID=$!
    trap 'kill "$KILN_PID" 2>/dev/null; wait "$KILN_PID" 2>/dev/null' EXIT
    for _ in $(seq 1 600); do
        if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$KILN_URL/" 2>/dev/null; then
            echo "kiln serve ($bin) is up at $KILN_URL (log: $log)"
            return 0
        fi
        if ! kill -0 "$KILN_PID" 2>/dev/null; then
            echo "kiln serve exited early; log:" >&2; cat "$log" >&2; return 1
        fi
        sleep 0.1
    done
    echo "kiln serve did not come up in 60 s; log:" >&2; cat "$log" >&2; return 1
}
