"""The discovery store a bot's scans go through: what crosses the bot API survives the trip byte for byte, and a
bot opens runs only as itself, scans only its own servers and records only into its own runs."""

from __future__ import annotations

import pytest

from certfleet.bots import service as bot_service
from certfleet.discovery.scanner import ScanOptions
from certfleet.inventory.record import Miss, Sighting
from certfleet.jobs.db_store import NotYourServer
from certfleet.jobs.discovery import DbDiscoveryStore, DiscoveryError, MissWire, SightingWire
from certfleet.models.bootstrap import initialize
from certfleet.models.db import session_scope
from certfleet.models.orm import BotPurpose, LocationStatus, Server, ServerConnection


def test_a_sighting_and_a_miss_survive_the_json_trip() -> None:
    sighting = Sighting((b"\x30\x82\x00\xff" + bytes(range(256)), b"\x00"), "file", "file:7:/etc/x.pem", host="h",
                        server_id=7, path="/etc/x.pem", chain_is_ordered=False)  # fmt: skip
    wire = SightingWire.model_validate_json(SightingWire.of(sighting).model_dump_json())
    assert wire.sighting() == sighting
    miss = Miss("tls:10.0.0.1:443:", "refused", LocationStatus.MISSING)
    assert MissWire.model_validate_json(MissWire.of(miss).model_dump_json()).miss() == miss


def _bot(name: str, purpose: BotPurpose) -> int:
    with session_scope() as s:
        return bot_service.create_bot(s, bot_service.BotFields(name=name, purpose=purpose), "test").bot.id


def _server(bot_id: int | None) -> int:
    with session_scope() as s:
        server = Server(description="web", host="127.0.0.1", ports=[443], connection=ServerConnection.LOCAL,
                        server_type="nginx", app_path="/srv/web", bot_id=bot_id)  # fmt: skip
        s.add(server)
        s.flush()
        return server.id


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_bot_scans_only_as_itself_and_only_its_own_servers(database: str) -> None:
    initialize()
    east, west = _bot("east", BotPurpose.DISCOVERY), _bot("west", BotPurpose.PROVISIONING)
    east_server, west_server = _server(east), _server(west)
    as_east, as_west = DbDiscoveryStore(bot_id=east), DbDiscoveryStore(bot_id=west)
    options = ScanOptions(10, 1.0, 1.0)

    with pytest.raises(NotYourServer, match=f"cannot run a discovery as bot {west}"):
        as_east.open_endpoint_run(west, ["10.0.0.1"], "443", options, None)
    # Without targets a bot scans its own servers' ports; a provisioning-only bot may do that, but not scan networks.
    opened = as_west.open_endpoint_run(None, None, "443", options, None)
    assert (opened.bot_id, opened.targets) == (west, ["127.0.0.1:443"])
    with pytest.raises(DiscoveryError, match="only provisions"):
        as_west.open_endpoint_run(None, ["10.0.0.0/30"], "443", options, None)

    with pytest.raises(NotYourServer, match=f"server {west_server} .* is not mapped to this bot"):
        as_east.open_files_run(None, [west_server], [], None)
    files = as_east.open_files_run(None, None, [], None)
    assert files.server_ids == [east_server]
    with pytest.raises(NotYourServer, match="is not this bot's"):
        as_west.file_scan_job(files.run_id, east_server, [])
    with pytest.raises(NotYourServer, match="is not this bot's"):
        as_west.finish(files.run_id, "Failed")
    job = as_east.file_scan_job(files.run_id, east_server, [])
    assert (job.server.server_id, job.folders) == (east_server, ["/srv/web"])
    # Recording a file of another bot's server into its own run is refused too.
    foreign = Sighting((b"x",), "file", f"file:{west_server}:/srv/web/a.pem", server_id=west_server)
    with pytest.raises(NotYourServer):
        as_east.record(files.run_id, [foreign], [])
