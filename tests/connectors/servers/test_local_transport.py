"""The local agent writes files atomically with the right modes, runs commands, and restores backups."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from certfleet.connectors.base import CertificateBundle
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers.local import LocalTransport
from certfleet.connectors.servers.pem_files import PemFilesTarget

BUNDLE = CertificateBundle(leaf_pem=b"LEAF\n", chain_pem=b"INTERMEDIATE\n", key_pem=b"KEY\n")


def test_write_atomic_sets_mode_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(b"old")
    path.chmod(0o644)
    LocalTransport().write_atomic(str(path), b"new key", 0o600)
    assert path.read_bytes() == b"new key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem"]


def test_write_into_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PermanentConnectorError, match=r"directory .*/nope does not exist"):
        LocalTransport().write_atomic(str(tmp_path / "nope" / "cert.pem"), b"x", 0o644)


def test_copy_keeps_mode(tmp_path: Path) -> None:
    src = tmp_path / "key.pem"
    src.write_bytes(b"secret")
    src.chmod(0o600)
    LocalTransport().copy(str(src), str(tmp_path / "key.bak"))
    assert (tmp_path / "key.bak").read_bytes() == b"secret"
    assert stat.S_IMODE((tmp_path / "key.bak").stat().st_mode) == 0o600


def test_run_reports_exit_code_and_output() -> None:
    result = LocalTransport().run(f"{sys.executable} -c \"import sys; print('hi'); sys.exit(3)\"", 10)
    assert (result.exit_code, result.output.strip()) == (3, "hi")


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("no-such-command-xyz --flag", "command not found: no-such-command-xyz"),
        (f"{sys.executable} -c 'import time; time.sleep(5)'", "did not finish within 0.3 s"),
        ("echo 'unterminated", "cannot parse command"),
    ],
)
def test_run_failures_are_clear(command: str, message: str) -> None:
    with pytest.raises(PermanentConnectorError, match=message):
        LocalTransport().run(command, 0.3)


def _target(tmp_path: Path, **kw: str | None) -> PemFilesTarget:
    return PemFilesTarget(
        transport=LocalTransport(),
        cert_path=str(tmp_path / "cert.pem"),
        key_path=str(tmp_path / "key.pem"),
        **kw,  # type: ignore[arg-type]
    )


def test_plan_full_chain_without_chain_file(tmp_path: Path) -> None:
    writes = _target(tmp_path).plan(BUNDLE)
    assert [(w.path, w.data, w.mode) for w in writes] == [
        (str(tmp_path / "cert.pem"), b"LEAF\nINTERMEDIATE\n", 0o644),
        (str(tmp_path / "key.pem"), b"KEY\n", 0o600),
    ]
    assert "KEY" not in repr(writes)


def test_plan_with_chain_file(tmp_path: Path) -> None:
    writes = _target(tmp_path, chain_path=str(tmp_path / "chain.pem")).plan(BUNDLE)
    assert [(Path(w.path).name, w.data) for w in writes] == [
        ("cert.pem", b"LEAF\n"),
        ("key.pem", b"KEY\n"),
        ("chain.pem", b"INTERMEDIATE\n"),
    ]


def test_snapshot_install_restore_is_byte_identical(tmp_path: Path) -> None:
    target = _target(tmp_path)
    (tmp_path / "cert.pem").write_bytes(b"OLD CERT")
    backups = [target.snapshot(str(tmp_path / n), str(tmp_path / f"{n}.bak")) for n in ("cert.pem", "key.pem")]
    assert [b.existed for b in backups] == [True, False]
    for write in target.plan(BUNDLE):
        target.install(write)
    assert (tmp_path / "key.pem").read_bytes() == b"KEY\n"
    for backup in backups:
        target.restore(backup)
    assert (tmp_path / "cert.pem").read_bytes() == b"OLD CERT"
    assert not (tmp_path / "key.pem").exists()  # it did not exist before


def test_failed_config_test_names_the_command_and_output(tmp_path: Path) -> None:
    target = _target(tmp_path, config_test_command=f"{sys.executable} -c \"print('bad cert'); exit(1)\"")
    with pytest.raises(PermanentConnectorError, match=r"config test .* failed with exit code 1: bad cert"):
        target.verify()


def test_reload_command_runs(tmp_path: Path) -> None:
    marker = tmp_path / "reloaded"
    _target(tmp_path, reload_command=f"touch {marker}").activate()
    assert marker.exists()


def test_snapshot_is_the_old_file_itself_and_survives_the_install(tmp_path: Path) -> None:
    """The backup is a second name of the old file: after the install (a rename) it is that file's only name and
    holds exactly the old bytes, mode and owner."""
    target = _target(tmp_path)
    cert = tmp_path / "cert.pem"
    cert.write_bytes(b"OLD CERT")
    cert.chmod(0o640)
    before = cert.stat()
    backup = target.snapshot(str(cert), str(tmp_path / "cert.pem.bak"))
    assert backup.existed
    assert (tmp_path / "cert.pem.bak").stat().st_ino == before.st_ino  # no bytes copied
    for write in target.plan(BUNDLE):
        target.install(write)
    kept = (tmp_path / "cert.pem.bak").stat()
    assert (kept.st_ino, kept.st_nlink, stat.S_IMODE(kept.st_mode)) == (before.st_ino, 1, 0o640)
    assert (tmp_path / "cert.pem.bak").read_bytes() == b"OLD CERT"
    assert cert.stat().st_ino != before.st_ino
    target.restore(backup)
    assert cert.read_bytes() == b"OLD CERT"
    assert stat.S_IMODE(cert.stat().st_mode) == 0o640


def test_snapshot_copies_a_file_with_other_names_and_a_symlink(tmp_path: Path) -> None:
    """A file that has another name (something may write into it through that one) and a symbolic link are copied:
    a write through the other name after the snapshot does not change the backup."""
    transport = LocalTransport()
    (tmp_path / "shared.pem").write_bytes(b"OLD")
    (tmp_path / "other-name.pem").hardlink_to(tmp_path / "shared.pem")
    (tmp_path / "real.pem").write_bytes(b"REAL")
    (tmp_path / "link.pem").symlink_to(tmp_path / "real.pem")
    assert transport.snapshot(str(tmp_path / "shared.pem"), str(tmp_path / "shared.bak"))
    assert transport.snapshot(str(tmp_path / "link.pem"), str(tmp_path / "link.bak"))
    (tmp_path / "other-name.pem").write_bytes(b"CHANGED IN PLACE")
    (tmp_path / "real.pem").write_bytes(b"CHANGED TOO")
    assert (tmp_path / "shared.bak").read_bytes() == b"OLD"
    assert (tmp_path / "link.bak").read_bytes() == b"REAL"
    assert not (tmp_path / "link.bak").is_symlink()


def test_snapshot_again_replaces_the_earlier_backup_and_a_missing_file_is_none(tmp_path: Path) -> None:
    """A retried backup step replaces its own earlier backup; a file that does not exist is not backed up."""
    transport = LocalTransport()
    (tmp_path / "cert.pem").write_bytes(b"FIRST")
    assert transport.snapshot(str(tmp_path / "cert.pem"), str(tmp_path / "cert.bak"))
    transport.write_atomic(str(tmp_path / "cert.pem"), b"SECOND", 0o644)
    assert transport.snapshot(str(tmp_path / "cert.pem"), str(tmp_path / "cert.bak"))
    assert (tmp_path / "cert.bak").read_bytes() == b"SECOND"
    assert not transport.snapshot(str(tmp_path / "absent.pem"), str(tmp_path / "absent.bak"))
    assert not (tmp_path / "absent.bak").exists()
