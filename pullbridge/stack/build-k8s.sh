#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kubectl from the Go module
# proxy into a per-version cache, the way Kubernetes' release does it.
#
# Why a throwaway consumer module: k8s.io/kubernetes points its staging modules
# at ./staging, which a module download does not have.  A consumer module that
# requires k8s.io/kubernetes and replaces every staging module with its
# published v0.X.Y release builds the same tree.
#
# usage: build-k8s.sh VERSION OUTDIR      (VERSION like v1.36.2)
set -euo pipefail
version=${1:?usage: build-k8s.sh VERSION OUTDIR}
out=${2:?usage: build-k8s.sh VERSION OUTDIR}
staging_version="v0.${version#v1.}"
proxy=${GOPROXY_URL:-https://proxy.golang.org}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

echo "build-k8s: reading k8s.io/kubernetes@$version go.mod"
curl -fsS "$proxy/k8s.io/kubernetes/@v/$version.mod" -o kubernetes.mod
go_line=$(awk '/^go [0-9]/{print $2; exit}' kubernetes.mod)
staging=$(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' kubernetes.mod | sort -u)
[ -n "$staging" ] || { echo "build-k8s: no staging replaces found in go.mod" >&2; exit 1; }

cat > go.mod <<MOD
module pullbridge.local/k8sbuild

go $go_line

require k8s.io/kubernetes $version
MOD
for m in $staging; do
  go mod edit -replace "$m=$m@$staging_version"
done
echo "build-k8s: $(echo "$staging" | wc -l) staging modules replaced with $staging_version"

major=1
minor=$(echo "$version" | cut -d. -f2)
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

export CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$out.partial"
for cmd in kube-apiserver kube-controller-manager kubectl; do
  echo "build-k8s: building $cmd $version"
  go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ldflags" \
    -o "$out.partial/$cmd" "k8s.io/kubernetes/cmd/$cmd"
done
"$out.partial/kube-apiserver" --version
rm -rf "$out"
mv "$out.partial" "$out"
echo "build-k8s: done in $out"
