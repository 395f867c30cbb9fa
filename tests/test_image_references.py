"""Every container image named in the deployment files and the docs is a valid OCI reference
(lowercase repository, a valid tag), so a copied line pulls instead of failing with
"invalid reference format" (issue 20: `ghcr.io/OWNER/pgbackup-job` was not one)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent

# The grammar of github.com/distribution/reference (reference.go), which Docker, podman and
# Kubernetes use: [domain[:port]/]path-component(/path-component)*[:tag][@digest]
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
REFERENCE = re.compile(rf"^(?P<name>{_NAME})(?::{_TAG})?(?:@{_DIGEST})?$")

# A reference written in prose or a command: a registry host, then the rest up to a space,
# a quote, a backtick or a closing bracket.
_IN_TEXT = re.compile(
    r"(?<![\w./-])((?:ghcr\.io|docker\.io|quay\.io|public\.ecr\.aws|registry\.[\w.-]+)"
    r"/[^\s`'\"()\[\]<>,]+)"
)


def valid(reference: str) -> bool:
    match = REFERENCE.match(reference)
    if not match:
        return False
    name = match["name"]
    first, _, rest = name.partition("/")
    # the first part is a registry only with a dot, a port or "localhost" (as Docker reads
    # it); otherwise it is a path component and must be lowercase like the others
    registry = "." in first or ":" in first or first == "localhost"
    if (
        rest
        and not registry
        and not re.fullmatch(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", name)
    ):
        return False
    return len(name) <= 255


def test_the_grammar() -> None:
    for good in (
        "pgbackup-job",
        "pgbackup-job:local",
        "postgres:17",
        "ghcr.io/pgbackup-job/pgbackup-job:0.1.0",
        "localhost:5000/a/b_c__d:sha-abc1234",
        "chrislusf/seaweedfs:4.48",
        "debian@sha256:" + "a" * 64,
    ):
        assert valid(good), good
    for bad in (
        "ghcr.io/OWNER/pgbackup-job",
        "ghcr.io/OWNER/pgbackup-job:1",
        "pgbackup-job:",
        "ghcr.io/a/b:-tag",
        "a//b",
        "a/B",
        "Owner/pgbackup-job",
    ):
        assert not valid(bad), bad


def _text_files() -> list[Path]:
    files = [REPO / "README.md", REPO / "docker-compose.yml", REPO / "railway.toml"]
    files += sorted((REPO / "docs").rglob("*.md"))
    files += sorted((REPO / "k8s").glob("*.yaml"))
    files += sorted((REPO / ".github" / "workflows").glob("*.yml"))
    files += sorted((REPO / "deploy").rglob("*.y*ml"))
    return [f for f in files if f.is_file()]


def _yaml_images(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "image" and isinstance(v, str)]
        for value in node.values():
            found += _yaml_images(value)
        return found
    if isinstance(node, list):
        return [image for item in node for image in _yaml_images(item)]
    return []


def test_every_image_reference_in_text_is_valid() -> None:
    seen: list[str] = []
    bad: list[str] = []
    for path in _text_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for reference in _IN_TEXT.findall(line):
                reference = reference.rstrip(".:;")
                if "$" in reference or "{" in reference:
                    continue  # a shell or workflow expression, filled in at run time
                seen.append(reference)
                if not valid(reference):
                    bad.append(f"{path.relative_to(REPO)}:{number}: {reference}")
    assert not bad, "invalid image references:\n" + "\n".join(bad)
    assert any(r.startswith("ghcr.io/pgbackup-job/pgbackup-job") for r in seen)


@pytest.mark.parametrize(
    "path", ["docker-compose.yml", *sorted(p.name for p in (REPO / "k8s").glob("*.yaml"))]
)
def test_every_image_field_is_valid(path: str) -> None:
    file = REPO / path if path == "docker-compose.yml" else REPO / "k8s" / path
    images = [i for doc in yaml.safe_load_all(file.read_text()) for i in _yaml_images(doc)]
    assert all(valid(i) for i in images), images


def test_kustomize_sets_a_valid_image() -> None:
    """What `kubectl apply -k k8s/` runs: the image name and tag kustomization.yaml sets."""
    kustomization = yaml.safe_load((REPO / "k8s" / "kustomization.yaml").read_text())
    [image] = kustomization["images"]
    reference = f"{image['newName']}:{image['newTag']}"
    assert valid(reference), reference
    assert reference == "ghcr.io/pgbackup-job/pgbackup-job:0.1.0"


def test_railway_builds_the_image_or_names_a_valid_one() -> None:
    import tomllib

    railway = tomllib.loads((REPO / "railway.toml").read_text())
    image = railway.get("deploy", {}).get("image") or railway.get("build", {}).get("image")
    assert image is None or valid(image), image
    assert image or railway["build"]["builder"] == "DOCKERFILE"
