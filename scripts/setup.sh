#!/usr/bin/env bash
# One idempotent setup for `make demo` and `make test`: a virtual environment with the
# project installed, and Prometheus + Alertmanager from Debian when we may install them.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

need_bins=()
command -v prometheus >/dev/null 2>&1 || need_bins+=(prometheus)
command -v promtool >/dev/null 2>&1 || need_bins+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need_bins+=(prometheus-alertmanager)  # the name the harness runs
command -v amtool >/dev/null 2>&1 || need_bins+=(prometheus-alertmanager)
# for the tests: kustomize builds (kubectl), the HTML report in headless Chromium, a
# self-signed certificate for the HTTPS client test (openssl)
command -v openssl >/dev/null 2>&1 || need_bins+=(openssl)
command -v kubectl >/dev/null 2>&1 || need_bins+=(kubectl)
command -v chromium >/dev/null 2>&1 || need_bins+=(chromium fonts-dejavu-core)
if ((${#need_bins[@]})); then
  pkgs=$(printf '%s\n' "${need_bins[@]}" | sort -u | tr '\n' ' ')
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: $pkgs"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # one package at a time: one that no configured apt source has (kubectl is not in
    # Debian's main archive) must not keep the others from installing
    for pkg in $pkgs; do
      apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null \
        || echo "setup: apt-get could not install $pkg; install it yourself (kubectl: https://kubernetes.io/docs/tasks/tools/)"
    done
  else
    echo "setup: binaries missing ($pkgs)."
    echo "       Install them (Debian/Ubuntu: sudo apt-get install --no-install-recommends $pkgs;"
    echo "       elsewhere: the release tarballs from prometheus.io) and put them on PATH."
    echo "       The harness runs without them; the live alert stack, the manifest and report tests need them."
  fi
fi

stamp="$VENV/.installed"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [[ -x $VENV/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
  exit 0
fi
echo "setup: creating $VENV and installing the project (torch==2.13.0 CPU first)"
[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first, pinned: any other spec may pull a multi-GB CUDA build.
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
# grafana-client -> niquests -> urllib3-future, which by default replaces urllib3 in the
# venv (and keeps doing so from a .pth file at every start); the kubernetes client and
# schemathesis need the real urllib3. URLLIB3_NO_OVERRIDE=1 with a source build keeps
# urllib3-future under its own name, where niquests finds it.
URLLIB3_NO_OVERRIDE=1 "$VENV/bin/python" -m pip install -q --no-binary urllib3-future -e ".[all,test]"
echo "$want" > "$stamp"
echo "setup: done ($VENV)"
