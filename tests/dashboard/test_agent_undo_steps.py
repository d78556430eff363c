"""A bot journals a step with its own undo data (an IIS binding) through certfleet's API; rollback reads it back."""

from __future__ import annotations

from fastapi.testclient import TestClient

from certfleet.bots import service as bot_service
from certfleet.jobs.api_store import API_PREFIX, ApiJobStore
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, Deployment, DeploymentTarget, Server, ServerConnection
from tests.dashboard.conftest import Accounts


def test_a_bot_journals_an_undo_step_and_the_restore_plan_carries_it_back(
    client: TestClient, accounts: Accounts
) -> None:
    with session_scope() as s:
        made = bot_service.create_bot(s, bot_service.BotFields(name="win-bot"), "test")
        server = Server(description="iis", host="10.0.0.5", ports=[443], connection=ServerConnection.SMB,
                        server_type="iis", app_path="Default Web Site", keystore_folder="C:\\certs",
                        username="u", password="p", smb_share="C$", bot_id=made.bot.id)  # fmt: skip
        cert = Certificate(common_name="shop.example.test", sans=["shop.example.test"], serial_number="0A")
        target = DeploymentTarget(server=server, port=443, server_name="shop.example.test")
        cert.targets.append(target)
        s.add_all([server, cert])
        s.flush()
        deployment = Deployment(certificate_id=cert.id, target_id=target.id, serial_number="0A", previous_serial="09")
        s.add(deployment)
        s.flush()
        deployment_id, token = deployment.id, made.token
    client.base_url = client.base_url.join(API_PREFIX)  # type: ignore[assignment]
    client.headers["Authorization"] = f"Bearer {token}"
    store = ApiJobStore("http://testserver", token, client=client)

    binding = {"info": "*:443:shop.example.test", "sni": True, "thumbprint": "CD" * 20, "store": "My"}
    undo = {"site": "Default Web Site", "port": 443, "thumbprint": "AB" * 20, "imported": True, "bindings": [binding]}
    pfx = store.journal(deployment_id, "replace-file", path="C:\\certs\\a.pfx", backup_path="C:\\certs\\a.pfx.bak")
    store.update_step(pfx, existed_before=False)
    step = store.journal(deployment_id, "iis-binding", path="IIS site 'Default Web Site' port 443", undo=undo)
    plan = store.restore_plan(deployment_id)
    assert plan.touched
    assert [(item.step_id, item.action, item.undo) for item in plan.items] == [
        (step, "iis-binding", undo),  # newest first: the binding is put back before the file under it
        (pfx, "replace-file", None),
    ]
