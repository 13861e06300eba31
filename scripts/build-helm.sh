#!/usr/bin/env bash
# Builds the Helm v3 client the chart tests run, from the Go module proxy only, once per machine, into a
# cache folder keyed by version; prints the binary's path. Helm is Apache-2.0 and its go.mod has no
# replace directives, so `go install helm.sh/helm/v3/cmd/helm@version` builds it directly.
# `--check` builds nothing: it prints the path if Helm is built, else fails (tests use it).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

HELM_VERSION=v3.19.5
GO_MIN=1.24 # the `go` line of that release's go.mod

tool_cached helm "$HELM_VERSION" helm
if [ "${1:-}" = "--check" ]; then
  echo "build-helm: Helm ${HELM_VERSION} is not built yet ($bin); run: bash scripts/build-helm.sh (a few minutes)" >&2
  exit 1
fi

if ! command -v go >/dev/null 2>&1; then
  echo "build-helm: Go is not installed (no 'go' on PATH); install Go >= ${GO_MIN} to build Helm ${HELM_VERSION}" >&2
  exit 1
fi
go_have="$(go env GOVERSION | sed 's/^go//')"
if [ "$(printf '%s\n%s\n' "$GO_MIN" "$go_have" | sort -V | head -1)" != "$GO_MIN" ]; then
  echo "build-helm: Go ${go_have} is too old; Helm ${HELM_VERSION} needs Go >= ${GO_MIN}" >&2
  exit 1
fi

go_tool_workdir

module="helm.sh/helm/v3@${HELM_VERSION}"
echo "build-helm: fetching ${module}" >&2
src="$(go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [ -z "$src" ] || [ ! -f "${src}/LICENSE" ]; then
  echo "build-helm: no LICENSE file for ${module}; refusing to build" >&2
  exit 1
fi
if ! grep -Eq 'Apache License' "${src}/LICENSE" || ! grep -Eq 'Version 2\.0' "${src}/LICENSE"; then
  echo "build-helm: ${module} is not licensed under the Apache License 2.0; refusing to build" >&2
  exit 1
fi

# Same stamps as Helm's Makefile: the version `helm version` prints, and the Kubernetes version that
# `helm template`/`helm lint` assume (client-go v0.N.x is Kubernetes 1.N).
client_go="$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "${src}/go.mod")"
if [ -z "$client_go" ]; then
  echo "build-helm: cannot read the k8s.io/client-go version from ${src}/go.mod" >&2
  exit 1
fi
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in lint/rules chartutil; do
  ldflags+=" -X helm.sh/helm/v3/pkg/${pkg}.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/${pkg}.k8sVersionMinor=${client_go}"
done

echo "build-helm: building (a few minutes on 2 cores)" >&2
start=$SECONDS
GOBIN="$work/bin" go install -trimpath -ldflags="$ldflags" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
mv -f "$work/bin/helm" "${bin}.tmp.$$"
mv -f "${bin}.tmp.$$" "$bin"
echo "build-helm: built $("$bin" version --short) in $((SECONDS - start))s" >&2
echo "$bin"
