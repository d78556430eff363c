from tests.discovery.fixtures import boot, farm, fleet, pki  # noqa: F401 - fixtures
