"""deploy/monitoring/: the alert rules (plain and as a PrometheusRule) and the Grafana dashboard.

promtool (Debian's ``prometheus`` package; scripts/install-deps.sh installs it) checks the rules
and runs their unit tests (deploy/monitoring/tests/rules.test.yml); these tests fail, not skip,
without it. Every metric the rules and the dashboard name must be one the job publishes
(``backup.metrics``), so a rename cannot leave a dead panel or an alert that never fires.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from backup import metrics

REPO = Path(__file__).resolve().parent.parent
# The docs page of the metrics, the alerts and their runbooks (README links to it).
METRICS_PAGE = REPO / "docs" / "metrics.md"
MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "pgbackup-rules.yml"
OPERATOR_RULE = MONITORING / "prometheusrule.yaml"
RULE_TESTS = MONITORING / "tests" / "rules.test.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"

PUBLISHED = {**metrics.DEFINITIONS, **metrics.COMMAND_DEFINITIONS, **metrics.VERIFY_DEFINITIONS}
METRIC_NAME = re.compile(r"\bpgbackup_[a-z_]+\b")
ALERTS = {
    "PgBackupTooOld",
    "PgBackupFailing",
    "PgBackupVerifyFailing",
    "PgBackupVerifyStale",
    "PgBackupSizeDropped",
    "PgBackupCommandFailed",
    "PgBackupMetricsMissing",
}


def promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: apt-get install prometheus (scripts/install-deps.sh test)")
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def rules() -> list[dict]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panel_exprs() -> dict[str, str]:
    """``panel title / refId`` -> PromQL, every query of every panel."""
    return {
        f"{panel['title']} / {target['refId']}": target["expr"]
        for panel in dashboard()["panels"]
        for target in panel["targets"]
    }


def test_the_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    assert {rule["alert"] for rule in rules()} == ALERTS
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fired == ALERTS
    assert quiet == ALERTS


def test_the_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    """The unit tests pin the thresholds docs/metrics.md documents: one moved, they fail."""
    (tmp_path / "tests").mkdir()
    shutil.copy(RULE_TESTS, tmp_path / "tests" / RULE_TESTS.name)
    text = RULES.read_text()
    for old, new in (
        ("> 26 * 3600", "> 30 * 3600"),
        ("0.5 * max_over_time", "0.3 * max_over_time"),
    ):
        assert old in text
        (tmp_path / RULES.name).write_text(text.replace(old, new))
        result = promtool("test", "rules", str(tmp_path / "tests" / RULE_TESTS.name))
        assert result.returncode != 0, f"{old} -> {new} went unnoticed"


def test_every_alert_has_a_severity_and_a_runbook_in_the_docs() -> None:
    readme = METRICS_PAGE.read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in readme.splitlines()
        if line.startswith("#")
    }
    for rule in rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        anchor = rule["annotations"]["runbook_url"].rpartition("#")[2]
        assert anchor == rule["alert"].lower()
        assert rule["annotations"]["runbook_url"].startswith(
            "https://github.com/OWNER/pgbackup-job/blob/main/docs/metrics.md#"
        ), rule["alert"]
        assert anchor in anchors, f"docs/metrics.md has no section {rule['alert']}"


def test_the_prometheusrule_holds_exactly_the_rules(tmp_path: Path) -> None:
    generated = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "prometheusrule.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert generated.returncode == 0, generated.stderr
    resource = yaml.safe_load(OPERATOR_RULE.read_text())
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", resource["metadata"]["name"])
    assert set(resource) == {"apiVersion", "kind", "metadata", "spec"}
    assert resource["spec"] == yaml.safe_load(RULES.read_text())
    # The operator hands spec to Prometheus as a rules file: promtool checks it as one.
    spec = tmp_path / "spec.yml"
    spec.write_text(yaml.safe_dump(resource["spec"]))
    result = promtool("check", "rules", str(spec))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_and_the_dashboard_name_only_published_metrics() -> None:
    used = {
        "rules": set(METRIC_NAME.findall(RULES.read_text())),
        "PrometheusRule": set(METRIC_NAME.findall(OPERATOR_RULE.read_text())),
        "dashboard": set(METRIC_NAME.findall(DASHBOARD.read_text())),
    }
    for where, names in used.items():
        assert names, where
        assert names <= set(PUBLISHED), (
            f"{where} names unpublished metrics: {names - set(PUBLISHED)}"
        )
    panels = " ".join(panel_exprs().values())
    for name in (
        "pgbackup_last_success_timestamp_seconds",
        "pgbackup_last_duration_seconds",
        "pgbackup_last_size_bytes",
        "pgbackup_consecutive_failures",
        "pgbackup_last_restore_test_seconds",
        "pgbackup_last_verify_success",
        "pgbackup_last_verify_success_timestamp_seconds",
    ):
        assert name in panels, name


def test_every_panel_query_parses(tmp_path: Path) -> None:
    """promtool parses PromQL in rules: each query becomes a recording rule, its dashboard
    variables replaced by a value."""
    exprs = panel_exprs()
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            exprs[f"variable {variable['name']}"] = re.fullmatch(
                r"label_values\((.*), *\w+\)", variable["query"]["query"]
            ).group(1)
    recording = [
        {"record": f"pgbackup:panel_{i}", "expr": re.sub(r"\$\{?\w+\}?", ".*", expr)}
        for i, expr in enumerate(exprs.values())
    ]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": recording}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr + "\n".join(exprs)


def test_the_dashboard_asks_for_its_data_source_database_and_destination() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("database", "destination"):
        assert variables[name]["type"] == "query"
        assert variables[name]["includeAll"] and variables[name]["multi"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            if "pgbackup_command" not in target["expr"]:
                assert 'database=~"$database"' in target["expr"], panel["title"]
                assert 'destination=~"$destination"' in target["expr"], panel["title"]
    titles = " ".join(panel["title"].lower() for panel in board["panels"])
    for topic in ("last successful backup", "duration", "size", "failures", "restore", "verify"):
        assert topic in titles, topic


def test_the_docs_document_every_metric_and_the_monitoring_files() -> None:
    readme = METRICS_PAGE.read_text()
    for name in PUBLISHED:
        assert f"`{name}`" in readme, name
    for path in (RULES, OPERATOR_RULE, RULE_TESTS, DASHBOARD):
        assert str(path.relative_to(REPO)) in readme, path.name
