"""Write deploy/monitoring/prometheusrule.yaml from deploy/monitoring/pgbackup-rules.yml.

The PrometheusRule (Prometheus Operator) holds exactly the groups of the plain rules file, so
the two cannot drift: edit the rules file, then run ``python scripts/prometheusrule.py``
(``--check``: exit 1 when the PrometheusRule is not what this would write; the tests run it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"
RULES = MONITORING / "pgbackup-rules.yml"
TARGET = MONITORING / "prometheusrule.yaml"

HEADER = """\
# Generated from pgbackup-rules.yml by scripts/prometheusrule.py: edit that file, then run it.
# kubectl apply -f deploy/monitoring/prometheusrule.yaml   (needs the Prometheus Operator's CRD)
# The operator loads the rules its Prometheus' ruleSelector matches: add the label it selects
# (kube-prometheus-stack: release: <the Helm release's name>) under metadata.labels.
# yamllint disable rule:line-length
"""


def render(rules_text: str) -> str:
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "pgbackup",
            "labels": {
                "app.kubernetes.io/name": "pgbackup-job",
                "app.kubernetes.io/part-of": "pgbackup-job",
            },
        },
        "spec": yaml.safe_load(rules_text),
    }
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=1_000_000, allow_unicode=True)


def main(argv: list[str]) -> int:
    text = render(RULES.read_text())
    if "--check" in argv:
        if TARGET.read_text() != text:
            print(f"{TARGET} is out of date: python scripts/prometheusrule.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
