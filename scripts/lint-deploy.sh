#!/usr/bin/env bash
# Lint the deployment files. Exit non-zero when any check finds a problem.
#
#   scripts/lint-deploy.sh                    every check
#   scripts/lint-deploy.sh hadolint k8s       only those (hadolint, k8s, yamllint, schemas)
#
# hadolint  Dockerfile, failing on errors (warnings are printed)
# k8s       k8s/ rendered by `kubectl kustomize` (or kustomize), validated with
#           `kubernetes-validate --strict` against the Kubernetes schemas (offline), plus the
#           Secret example that the kustomization leaves out on purpose. Without kubectl or
#           kustomize, the kustomization's `resources` are read and concatenated instead (no
#           transformers applied), and the script says so (K8S_RENDER=concat forces that).
# yamllint  docker-compose.yml, .github/workflows/, k8s/, deploy/ with the repository's .yamllint
# schemas   docker-compose.yml against the Compose Specification's JSON schema, the workflows
#           against GitHub's workflow schema (each job with a timeout-minutes), with
#           check-jsonschema's own copies of the schemas (offline): what `docker compose config`
#           would refuse, without a Docker engine
#
# Tools are looked up in $VENV_BIN (default <repo>/.venv/bin), then on PATH.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_BIN="${VENV_BIN:-$REPO/.venv/bin}"
cd "$REPO" || exit 2

tool() {
    if [ -x "$VENV_BIN/$1" ]; then echo "$VENV_BIN/$1"; return 0; fi
    command -v "$1" 2>/dev/null && return 0
    echo "lint-deploy: $1 not found in $VENV_BIN or on PATH (pip install -e '.[test]')" >&2
    return 1
}

python_bin() {
    if [ -x "$VENV_BIN/python" ]; then echo "$VENV_BIN/python"; else command -v python3; fi
}

check_hadolint() {
    local hadolint
    hadolint=$(tool hadolint) || return 1
    "$hadolint" --no-color --failure-threshold error Dockerfile
}

# Render k8s/ the way `kubectl apply -k` would, on stdout.
render_k8s() {
    local bin=""
    if [ "${K8S_RENDER:-}" = concat ]; then
        echo "lint-deploy: K8S_RENDER=concat: not using kubectl or kustomize" >&2
    elif bin=$(tool kubectl 2>/dev/null); then
        echo "lint-deploy: rendering k8s/ with $bin kustomize" >&2
        "$bin" kustomize k8s/
        return
    elif bin=$(tool kustomize 2>/dev/null); then
        echo "lint-deploy: rendering k8s/ with $bin build" >&2
        "$bin" build k8s/
        return
    fi
    echo "lint-deploy: concatenating kustomization.yaml's resources" \
         "(no kubectl or kustomize: transformers such as images and labels not applied)" >&2
        "$(python_bin)" - <<'EOF'
import pathlib
import sys

import yaml

base = pathlib.Path("k8s")
kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
resources = kustomization.get("resources") or []
if not resources:
    sys.exit("k8s/kustomization.yaml lists no resources")
docs = []
for name in resources:
    path = base / name
    if path.is_dir():
        sys.exit(f"{path}: nested kustomizations need kubectl or kustomize")
    docs.append(path.read_text().strip())
print("\n---\n".join(docs))
EOF
}

check_k8s() {
    local validate rendered rc=0 out
    validate=$(tool kubernetes-validate) || return 1
    rendered=$(mktemp)
    out=$(mktemp)
    # shellcheck disable=SC2064
    trap "rm -f '$rendered' '$out'" RETURN
    render_k8s > "$rendered" || { echo "lint-deploy: rendering k8s/ failed" >&2; return 1; }
    "$validate" --strict "$rendered" k8s/secret.example.yaml 2>&1 | sed "s#$rendered#k8s/ (rendered)#" | tee "$out"
    rc=${PIPESTATUS[0]}
    # kubernetes-validate passes an empty document: make sure every resource was seen
    local expected seen
    expected=$(cat "$rendered" k8s/secret.example.yaml | grep -c '^kind:')
    seen=$(grep -c ' passed for resource ' "$out")
    if [ "$rc" = 0 ] && [ "$seen" != "$expected" ]; then
        echo "lint-deploy: $seen of $expected Kubernetes resources validated" >&2
        rc=1
    fi
    return "$rc"
}

check_yamllint() {
    local yamllint
    yamllint=$(tool yamllint) || return 1
    "$yamllint" --strict -c .yamllint docker-compose.yml .github/workflows/ k8s/ deploy/ .yamllint
}

check_schemas() {
    local cj rc=0
    cj=$(tool check-jsonschema) || return 1
    "$cj" --builtin-schema vendor.compose-spec docker-compose.yml || rc=1
    "$cj" --builtin-schema vendor.github-workflows .github/workflows/*.yml || rc=1
    "$cj" --builtin-schema custom.github-workflows-require-timeout .github/workflows/*.yml || rc=1
    return "$rc"
}

checks=("$@")
[ "${#checks[@]}" -gt 0 ] || checks=(hadolint k8s yamllint schemas)
failed=()
for c in "${checks[@]}"; do
    case "$c" in
        hadolint|k8s|yamllint|schemas) ;;
        *) echo "lint-deploy: unknown check '$c' (hadolint, k8s, yamllint, schemas)" >&2; exit 2 ;;
    esac
    echo "== $c"
    if "check_$c"; then echo "== $c: ok"; else echo "== $c: FAILED"; failed+=("$c"); fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "lint-deploy: failed: ${failed[*]}" >&2
    exit 1
fi
