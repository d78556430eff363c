"""Fixtures shared by the discovery and inventory tests (imported by both conftest files)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from certfleet.discovery.testbed import TlsFarm
from certfleet.models.bootstrap import Bootstrapped, initialize
from tests.discovery.certs import NAMES, Served, make_fleet
from tests.pki.conftest import PKI

VHOST = "vhost.example.test"


@pytest.fixture(scope="session")
def pki() -> PKI:
    return PKI()


@pytest.fixture(scope="session")
def fleet(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Served]:
    return make_fleet(pki, tmp_path_factory.mktemp("fleet"))


@dataclass
class Farm:
    """Listeners on 127.0.0.1: one per test certificate, the good one a second time, and a virtual host
    that serves the good certificate for SNI `VHOST` and the SHA-1 one otherwise."""

    ports: dict[str, int]  # certificate kind -> port
    second_good: int
    vhost: int
    farm: TlsFarm


@pytest.fixture(scope="module")
def farm(fleet: dict[str, Served], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    specs = [fleet[name].spec() for name in NAMES]
    specs.append(fleet["good"].spec())
    specs.append(fleet["sha1"].spec(sni={VHOST: fleet["good"]}))
    with TlsFarm(specs, tmp_path_factory.mktemp("farm")) as running:
        ports = [port for _, port in running.endpoints]
        yield Farm(dict(zip(NAMES, ports, strict=False)), ports[len(NAMES)], ports[len(NAMES) + 1], running)


@pytest.fixture
def boot(database: str) -> Bootstrapped:
    return initialize()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
