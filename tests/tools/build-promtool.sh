#!/usr/bin/env bash
# Builds promtool (Prometheus's own rule checker and tester) from the Go module proxy, once per
# machine, into a cache keyed by version. Prints the binary's path on its last line.
#
#   tests/tools/build-promtool.sh                   build it if missing
#   VOLSYNC_DR_TOOLS_CACHE=/path tests/tools/...    use another cache directory
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
CACHE_ROOT="${VOLSYNC_DR_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/volsync-dr}"
BIN="$CACHE_ROOT/promtool-$PROMETHEUS_VERSION/bin"
log() { echo "build-promtool: $*" >&2; }

if [[ -x "$BIN/promtool" ]]; then
  log "promtool (prometheus $PROMETHEUS_VERSION): cached"
  echo "$BIN/promtool"
  exit 0
fi
command -v go >/dev/null || { log "go is required (Go 1.24 or newer)"; exit 1; }
start=$(date +%s)
log "promtool (prometheus $PROMETHEUS_VERSION): building (first time: a few minutes on 2 cores)"
mkdir -p "$BIN"
# A throwaway module pins the version: `go install pkg@version` refuses modules with replace
# directives, and this works either way.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(
  cd "$work"
  go mod init volsync-dr.invalid/promtool >/dev/null 2>&1
  export CGO_ENABLED=0 GOFLAGS=-mod=mod
  go get "github.com/prometheus/prometheus@$PROMETHEUS_VERSION" 2>&1 | grep -v "^go: downloading" >&2 || true
  go build -p 2 -trimpath -ldflags "-s -w" -o "$BIN/promtool.tmp" github.com/prometheus/prometheus/cmd/promtool
)
mv "$BIN/promtool.tmp" "$BIN/promtool"
log "promtool built in $(( $(date +%s) - start ))s"
echo "$BIN/promtool"
