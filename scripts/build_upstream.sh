#!/usr/bin/env bash
# Build the upstream Go programs the tests and `make stack` run, and cache them OUTSIDE the repository:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/vfo-otel/upstream/<name>-<hash-of-inputs>/bin/<name>
#
# The hash covers everything that decides the binary: the pinned module versions, the ocb manifest (for
# the collector), the Go client's sources (for the Go client), the recipe revision below and `go version`.
# A second run with the same inputs finds the directory and builds nothing. Every build goes through the
# Go module proxy only (go install module@version, or ocb which runs go build on the manifest's modules);
# no source is vendored here and no prebuilt binary is downloaded.
#
# Usage:
#   scripts/build_upstream.sh [NAME...]     build what is missing (default: all), print one line per binary
#   scripts/build_upstream.sh --path NAME   print the cached binary's path; exit 1 when it is not built
#
# NAMEs: otelcol (vfo-otelcol via ocb), prometheus (Prometheus 3, native OTLP receiver), goclient (the
# small OTel Go SDK client of tests/upstream/goclient).
# Each build records its wall-clock seconds in <dir>/build-seconds (docs/deploy.md quotes them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# ---- pinned versions -----------------------------------------------------------------------------
OCB_VERSION=v0.161.0                      # go.opentelemetry.io/collector/cmd/builder (= manifest's release)
PROMETHEUS_MODULE_VERSION=v0.316.0        # github.com/prometheus/prometheus v0.316.0 = Prometheus 3.16.0
RECIPE_REVISION=2                         # bump when a recipe below changes in a way the inputs don't show

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/vfo-otel/upstream"

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then PATH="$PATH:/usr/local/go/bin"; else
    echo "build_upstream: no Go toolchain (go) on PATH or in /usr/local/go/bin" >&2; exit 2
  fi
fi
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

hash_inputs() {  # name, then files/strings; prints 16 hex chars
  {
    printf '%s\n' "$@"
    go version
    echo "recipe=$RECIPE_REVISION"
    for f in "$@"; do [ -f "$f" ] && { echo "== $f"; cat "$f"; }; done
  } | sha256sum | cut -c1-16
}

inputs_of() {
  case "$1" in
    otelcol) echo otelcol "ocb=$OCB_VERSION" collector-config/builder-config.yaml ;;
    prometheus) echo prometheus "prometheus=$PROMETHEUS_MODULE_VERSION" ;;
    goclient) echo goclient tests/upstream/goclient/go.mod tests/upstream/goclient/go.sum \
                tests/upstream/goclient/main.go ;;
    *) echo "build_upstream: unknown name $1" >&2; exit 2 ;;
  esac
}

dir_of() {
  # shellcheck disable=SC2046
  echo "$CACHE_ROOT/$1-$(hash_inputs $(inputs_of "$1"))"
}

bin_name() { case "$1" in otelcol) echo vfo-otelcol ;; *) echo "$1" ;; esac; }

build_otelcol() {  # $1 = work dir; leaves bin/vfo-otelcol
  local w=$1
  GOBIN="$w/tools" go install "go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION"
  cp collector-config/builder-config.yaml "$w/manifest.yaml"
  (cd "$w" && ./tools/builder --config manifest.yaml)
  mkdir -p "$w/bin"; mv "$w/vfo-otelcol/vfo-otelcol" "$w/bin/vfo-otelcol"
}

build_prometheus() {
  # remove_all_sd: Prometheus's own build tag that leaves out every cloud service discovery (AWS, Azure,
  # GCE, Kubernetes, ...): metrics arrive over OTLP here, nothing is scraped, and the build is much
  # shorter. The version is stamped so `prometheus --version` tells it.
  local w=$1
  GOBIN="$w/bin" go install -tags remove_all_sd \
    -ldflags "-X github.com/prometheus/common/version.Version=3.16.0 -X github.com/prometheus/common/version.Revision=module-$PROMETHEUS_MODULE_VERSION" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_MODULE_VERSION"
}

build_goclient() {
  local w=$1
  mkdir -p "$w/bin"
  (cd tests/upstream/goclient && go build -o "$w/bin/goclient" .)
}

build_one() {
  local name=$1 dir bin
  dir=$(dir_of "$name"); bin="$dir/bin/$(bin_name "$name")"
  if [ -x "$bin" ]; then echo "$name: cached $bin"; return; fi
  mkdir -p "$CACHE_ROOT"
  local work; work=$(mktemp -d "$CACHE_ROOT/.build-$name-XXXXXX")
  echo "$name: building into $dir (cold builds take minutes; see docs/deploy.md)" >&2
  local t0 t1; t0=$(date +%s)
  if ! "build_$name" "$work" >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2; echo "$name: build FAILED (log: $work/build.log)" >&2; exit 1
  fi
  t1=$(date +%s)
  echo $((t1 - t0)) >"$work/build-seconds"
  rm -rf "$dir"; mv "$work" "$dir"
  echo "$name: built $bin in $((t1 - t0)) s"
}

if [ "${1:-}" = "--path" ]; then
  name=${2:?--path NAME}; bin="$(dir_of "$name")/bin/$(bin_name "$name")"
  [ -x "$bin" ] || { echo "build_upstream: $name not built (run make upstream): $bin" >&2; exit 1; }
  echo "$bin"; exit 0
fi

names=("$@"); [ ${#names[@]} -gt 0 ] || names=(otelcol prometheus goclient)
# One build at a time per cache (two cores; and two runs must not race to fill the same directory).
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock"
flock 9
for n in "${names[@]}"; do build_one "$n"; done
