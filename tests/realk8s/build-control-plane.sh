#!/usr/bin/env bash
# Builds the real control plane the "real" test tier runs: kube-apiserver, kube-controller-manager,
# kube-scheduler (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3) and kwok (sigs.k8s.io/kwok),
# all from the Go module proxy, once per machine, into a cache keyed by version.
# Prints the directory holding the binaries on its last line.
#
#   tests/realk8s/build-control-plane.sh            build what is missing
#   VOLSYNC_DR_K8S_CACHE=/path tests/realk8s/...    use another cache directory
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.33.13}"
ETCD_VERSION="${ETCD_VERSION:-v3.5.21}"
KWOK_VERSION="${KWOK_VERSION:-v0.7.0}"
CACHE_ROOT="${VOLSYNC_DR_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/volsync-dr}"
BIN="$CACHE_ROOT/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin"
WORK="$CACHE_ROOT/build"
mkdir -p "$BIN" "$WORK"

command -v go >/dev/null || { echo "build-control-plane: go is required (Go 1.24 or newer)" >&2; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-mod=mod

log() { echo "build-control-plane: $*" >&2; }
elapsed() { echo "$(( $(date +%s) - $1 ))s"; }

# A staging module's tag is v0.<minor>.<patch> for Kubernetes v1.<minor>.<patch>.
STAGING_VERSION="v0.${K8S_VERSION#v1.}"

build_kubernetes() {
  local wanted=(kube-apiserver kube-controller-manager kube-scheduler) missing=()
  for b in "${wanted[@]}"; do [[ -x "$BIN/$b" ]] || missing+=("$b"); done
  if ((${#missing[@]} == 0)); then log "kubernetes $K8S_VERSION: cached"; return; fi
  local start; start=$(date +%s)
  local dir="$WORK/kubernetes-$K8S_VERSION"
  mkdir -p "$dir"
  log "kubernetes $K8S_VERSION: building ${missing[*]} (first time: 10-25 minutes on 2 cores)"
  (
    cd "$dir"
    if [[ ! -f go.mod ]]; then
      go mod init volsync-dr.invalid/k8sbins >/dev/null 2>&1
    fi
    # k8s.io/kubernetes requires its staging modules at v0.0.0 with replaces to ./staging, which a
    # dependent module ignores: pin each one to its published release instead.
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
    local replaces=()
    while read -r module; do
      replaces+=("-replace=$module=$module@$STAGING_VERSION")
    done < <(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod" | sort -u)
    go mod edit "${replaces[@]}"
    go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
    go mod tidy -e >/dev/null 2>&1 || true
    go get "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
    local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
    local pkgs=()
    for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
    go build -p 2 -trimpath -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 \
      -X k8s.io/component-base/version.gitMinor=$minor \
      -X k8s.io/component-base/version.gitTreeState=clean" \
      -o "$BIN/" "${pkgs[@]}"
  )
  log "kubernetes $K8S_VERSION: built in $(elapsed "$start")"
}

build_etcd() {
  if [[ -x "$BIN/etcd" ]]; then log "etcd $ETCD_VERSION: cached"; return; fi
  local start; start=$(date +%s)
  local dir="$WORK/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  log "etcd $ETCD_VERSION: building"
  (
    cd "$dir"
    # Its own module: sharing one with Kubernetes would let version selection move etcd's gRPC.
    [[ -f go.mod ]] || go mod init volsync-dr.invalid/etcdbin >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null
    go build -p 2 -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  )
  log "etcd $ETCD_VERSION: built in $(elapsed "$start")"
}

build_kwok() {
  if [[ -x "$BIN/kwok" ]]; then log "kwok $KWOK_VERSION: cached"; return; fi
  local start; start=$(date +%s)
  log "kwok $KWOK_VERSION: building"
  GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  log "kwok $KWOK_VERSION: built in $(elapsed "$start")"
}

total=$(date +%s)
build_etcd
build_kwok
build_kubernetes
log "control plane ready in $(elapsed "$total"): $BIN"
echo "$BIN"
