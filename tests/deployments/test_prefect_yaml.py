"""prefect.yaml (`prefect deploy --all`) and `certfleet up` register the same deployments: names, pools, queues,
schedules and descriptions, so neither undoes the other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from certfleet.deployments.names import BOT_FLOWS, BOT_POOL, CENTRAL_FLOWS, PULL_STEPS, SCHEDULES
from certfleet.deployments.serve import FLOWS, runner_deployments

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"
LOCAL_BOT_QUEUE = "bot-1"  # the local bot is the first bot of a new database


def declared() -> dict[str, dict[str, Any]]:
    return {d["entrypoint"]: d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}


def test_every_flow_is_in_exactly_one_pool() -> None:
    assert {f.name for f in FLOWS} == set(CENTRAL_FLOWS) | set(BOT_FLOWS)
    assert not set(CENTRAL_FLOWS) & set(BOT_FLOWS)


def test_prefect_yaml_declares_what_certfleet_up_registers() -> None:
    in_yaml = declared()
    registered = runner_deployments(LOCAL_BOT_QUEUE)
    assert len(in_yaml) == len(registered)
    for deployment, f in zip(registered, FLOWS, strict=True):
        d = in_yaml[f"{f.fn.__module__}.{f.fn.__name__}"]
        assert d["name"] == deployment.name
        assert d["work_pool"]["name"] == deployment.work_pool_name
        assert d["work_pool"]["work_queue_name"] == deployment.work_queue_name
        assert d["description"] == deployment.description
        cron = d["schedules"][0]["cron"] if d.get("schedules") else None
        assert cron == SCHEDULES.get(f.name)


def test_the_pull_step_is_the_registered_one_and_needs_no_variable() -> None:
    assert yaml.safe_load(PREFECT_YAML.read_text())["pull"] == PULL_STEPS
    assert "{{" not in PREFECT_YAML.read_text()


def test_deployment_names_say_where_they_run() -> None:
    names = {d.name for d in runner_deployments(LOCAL_BOT_QUEUE)}
    assert names == {"central", "on-bots"}
    for d in runner_deployments(LOCAL_BOT_QUEUE):
        assert (d.work_pool_name == BOT_POOL) == (d.name == "on-bots")
