"""docs/prometheus/alerts.yml and docs/grafana/certfleet.json: valid, and they name only series /metrics exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from certfleet.renewal.runs import record_completed
from tests.dashboard.conftest import Accounts, auth

DOCS = Path(__file__).resolve().parents[2] / "docs"
RULES = DOCS / "prometheus" / "alerts.yml"
GRAFANA = DOCS / "grafana" / "certfleet.json"
SERIES = re.compile(r"\bcertfleet_\w+")


def exported(client: TestClient, accounts: Accounts) -> set[str]:
    record_completed()
    response = client.get("/metrics", headers=auth(accounts, "viewer"))
    assert response.status_code == 200
    return {family.name for family in text_string_to_metric_families(response.text)}


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run scripts/install-system-packages.sh (Debian package prometheus)"
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_promtool_accepts_the_example_scrape_configuration(tmp_path: Path) -> None:
    """The README's Prometheus configuration, with its rules file and a token file beside it, as it says."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run scripts/install-system-packages.sh (Debian package prometheus)"
    for source in (RULES, DOCS / "prometheus" / "prometheus.yml"):
        shutil.copy(source, tmp_path / source.name)
    (tmp_path / "certfleet-token").write_text("cfu_example\n")
    result = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=tmp_path, capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert (job["metrics_path"], job["authorization"]["type"]) == ("/metrics", "Bearer")


def test_the_rules_and_the_dashboard_name_only_exported_series(client: TestClient, accounts: Accounts) -> None:
    names = exported(client, accounts)
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= {"CertificateExpiringWithin7Days", "RenewalRunNotCompleted",
                                          "BotHeartbeatMissing", "DeploymentsFailing"}  # fmt: skip
    used = {name for r in rules for name in SERIES.findall(r["expr"])}
    dashboard = json.loads(GRAFANA.read_text())
    used_in_grafana = {
        name for panel in dashboard["panels"] for target in panel["targets"] for name in SERIES.findall(target["expr"])
    }
    assert used
    assert used_in_grafana
    assert used - names == set()
    assert used_in_grafana - names == set()
    # Imported, it asks for the Prometheus data source, which every panel uses.
    (variable,) = dashboard["templating"]["list"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} == {"${" + variable["name"] + "}"}
    assert "certfleet_certificate_expiry_timestamp_seconds" in used
