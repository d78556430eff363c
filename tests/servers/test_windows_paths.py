"""Windows path rules for servers reached over SMB: drive and UNC paths only, no traversal, no device names."""

from __future__ import annotations

import pytest

from certfleet.servers import paths


@pytest.mark.parametrize(
    "value",
    [
        "C:\\Apache24",
        "C:\\Apache24\\",
        "C:\\Program Files\\Apache Software Foundation\\Tomcat 9.0",
        "d:\\web\\certs",
        "\\\\fileserver\\certs",
        "\\\\10.0.0.5\\C$\\Apache24\\conf",
        "C:\\certs\\console.pem",  # CON only as the whole name
        "C:\\certs\\my.nul.pem",
    ],
)
def test_plain_windows_folders_are_kept_exactly(value: str) -> None:
    assert paths.check_path(value, "Tomcat Path", directory=True, windows=True) == value


@pytest.mark.parametrize(
    ("value", "rule", "words"),
    [
        ("C:\\certs\\..\\Windows\\win.ini", "dot-segment", "`..`"),
        ("C:\\certs\\.\\site.pem", "dot-segment", "`.`"),
        ("C:\\certs\\CON", "windows-reserved", "'CON'"),
        ("C:\\certs\\nul.txt", "windows-reserved", "'nul'"),
        ("C:\\certs\\LPT1.pem", "windows-reserved", "'LPT1'"),
        ("C:\\certs\\com9", "windows-reserved", "'com9'"),
        ("C:\\certs/site.pem", "windows-separator", "backslashes"),
        ("C:\\certs\\a:b.pem", "windows-character", "':'"),
        ("C:\\certs\\site?.pem", "windows-character", "'?'"),
        ("C:\\certs\\site.pem.", "windows-name", "drops them"),
        ("C:\\certs \\site.pem", "windows-name", "drops them"),
        ("C:\\certs\\\\site.pem", "normal", "empty part"),
        ("C:\\certs\\site.pem\\", "normal", "empty part"),
        ("/etc/nginx/site.pem", "absolute", "absolute Windows path"),
        ("certs\\site.pem", "absolute", "absolute Windows path"),
        ("C:certs\\site.pem", "absolute", "absolute Windows path"),
        ("\\\\\\share\\x", "unc", "host"),
        ("\\\\host\\\\x", "unc", "share"),
        ("\\\\host\\c$\\..\\x", "dot-segment", "`..`"),
        ("C:\\Windows\\System32\\x.pem", "system-location", "C:\\Windows"),
        ("c:\\windows", "system-location", "C:\\Windows"),
        ("C:\\certs\\site\x00.pem", "control", "control character"),
        ("", "absolute", "empty"),
    ],
)
def test_bad_windows_paths_are_refused_naming_field_and_rule(value: str, rule: str, words: str) -> None:
    with pytest.raises(paths.PathRefused) as refused:
        paths.check_path(value, "cert path", windows=True)
    assert refused.value.rule == rule
    assert str(refused.value).startswith("cert path")
    assert words in str(refused.value)


def test_a_trailing_backslash_is_a_folder_only() -> None:
    assert paths.windows_path_problem("C:\\certs\\", directory=True) is None
    assert paths.windows_path_problem("C:\\certs\\", directory=False) == (
        "contains an empty part (`\\\\` inside, or a trailing `\\` on a file)",
        "normal",
    )


def test_discovery_tells_files_under_a_windows_folder() -> None:
    from certfleet.tasks.discovery import _inside

    assert _inside("C:\\certs\\site.pem", "C:\\certs")
    assert _inside("C:\\certs\\sub\\site.pem", "C:\\certs\\")
    assert not _inside("C:\\certs2\\site.pem", "C:\\certs")
    assert _inside("/etc/ssl/site.pem", "/etc/ssl/")
    assert not _inside("/etc/ssl2/site.pem", "/etc/ssl")
