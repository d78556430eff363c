"""The path rule (targets, server paths, key store folders, discovery folders) and the SNI name rule:
a value is returned exactly as given or refused with the rule it breaks."""

from __future__ import annotations

import pytest

from certfleet.servers import paths
from certfleet.servers.dns_names import NameRefused, check_server_name


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("/etc/shadow", "system-location"),
        ("/etc/passwd", "system-location"),
        ("/etc/sudoers", "system-location"),
        ("/etc/sudoers.d/certfleet", "system-location"),
        ("/etc/ssh/ssh_host_ed25519_key", "system-location"),
        ("/bin/sh", "system-location"),
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", "system-location"),
        ("/proc/self/environ", "system-location"),
        ("/dev/zero", "system-location"),
        ("/sys/kernel/notes", "system-location"),
        ("/boot/vmlinuz", "system-location"),
        ("/", "system-location"),
        ("/etc/nginx/../../etc/passwd", "dot-segment"),
        ("/etc/nginx/./site.pem", "dot-segment"),
        ("/etc/nginx//site.pem", "normal"),
        ("/etc/nginx/site.pem/", "normal"),
        ("etc/nginx/site.pem", "absolute"),
        ("~/site.pem", "absolute"),
        ("/etc/nginx/site\0.pem", "control"),
        ("/etc/nginx/site.pem\n/etc/shadow", "control"),
        ("/etc/nginx/\tsite.pem", "control"),
        ("/etc/nginx/site\u202e.pem", "control"),  # a right-to-left override hides the real name
    ],
)
def test_a_path_breaking_a_rule_is_refused_with_that_rule(value: str, rule: str) -> None:
    with pytest.raises(paths.PathRefused) as caught:
        paths.check_path(value, "cert path")
    assert caught.value.rule == rule
    assert str(caught.value).startswith("cert path")
    assert f"(rule: {rule})" in str(caught.value)


def test_dot_dot_is_refused_not_resolved() -> None:
    with pytest.raises(paths.PathRefused, match=r"contains a `\.` or `\.\.` part.*never resolved"):
        paths.check_path("/etc/nginx/../../etc/passwd", "cert path")


@pytest.mark.parametrize(
    "value",
    ["/etc/nginx/certs/site.pem", "/etc/ssl/private/site.key", "/opt/tomcat/conf/keystore.p12", "/srv/a b/ü.pem"],
)
def test_a_good_path_comes_back_exactly_as_given(value: str) -> None:
    assert paths.check_path(value, "cert path") == value


def test_a_folder_may_end_with_one_slash_and_is_kept_so() -> None:
    assert paths.check_path("/etc/nginx/", "Nginx Path", directory=True) == "/etc/nginx/"
    with pytest.raises(paths.PathRefused):
        paths.check_path("/etc/nginx//", "Nginx Path", directory=True)


def test_windows_paths_only_where_asked_for() -> None:
    assert paths.check_path("C:\\certs\\site.pfx", "cert path", windows=True) == "C:\\certs\\site.pfx"
    with pytest.raises(paths.PathRefused, match="absolute"):
        paths.check_path("C:\\certs\\site.pfx", "cert path")
    with pytest.raises(paths.PathRefused, match="dot-segment"):
        paths.check_path("C:\\certs\\..\\Windows\\win.ini", "cert path", windows=True)
    with pytest.raises(paths.PathRefused, match="system-location"):
        paths.check_path("C:\\Windows\\System32\\x.pem", "cert path", windows=True)


def test_roots_allow_their_folders_only() -> None:
    roots = paths.server_roots("/etc/nginx/", "/etc/ssl/certfleet", ["/srv/tls"])
    assert roots == ["/etc/nginx/", "/etc/ssl/certfleet", "/srv/tls"]
    for inside in ("/etc/nginx/site.pem", "/etc/ssl/certfleet/a/b.pem", "/srv/tls/x.key"):
        paths.require_within(inside, roots, "cert path")
    for outside in ("/etc/nginxevil/site.pem", "/etc/ssl/other.pem", "/tmp/x.pem"):
        with pytest.raises(paths.PathRefused, match="allowed-roots"):
            paths.require_within(outside, roots, "cert path")
    # a configuration file named as the type path allows its folder
    assert paths.server_roots("/etc/nginx/nginx.conf", None, None) == ["/etc/nginx"]


@pytest.mark.parametrize(
    "value", ["/etc/shadow", "/etc/nginx/../shadow/../../proc/self/environ", "/dev/null", "/proc/1/root/x"]
)
def test_paths_read_from_a_server_configuration_are_refused_in_system_locations(value: str) -> None:
    with pytest.raises(paths.PathRefused, match="system-location"):
        paths.refuse_denied(value, "nginx on web-1")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$(touch /tmp/pwned)", "is not a DNS name"),
        ("`id`.example.com", "is not a DNS name"),
        ("www.example.com\r\nHost: evil", "control character"),
        ("www.example.com\0", "control character"),
        ("-oProxyCommand=touch /tmp/pwned", "is not a DNS name"),
        ("-oProxyCommand=x", "is not a DNS name"),
        ("\u0430pple.com", "give the name's A-label form, here xn--pple-43d.com"),  # Cyrillic a
        ("b\u00fccher.example", "here xn--bcher-kva.example"),
        ("xn--zz.example", "invalid A-label"),
        ("192.0.2.10", "is an IP address"),
        ("www.example.com.", "ends with a dot"),
        ("0x7f.1", "last label is all digits"),
        ("a" * 64 + ".example", "is not a DNS name"),
        ("", "is empty"),
    ],
)
def test_a_hostile_server_name_is_refused(value: str, expected: str) -> None:
    with pytest.raises(NameRefused, match=expected.replace("(", r"\(").replace(".", r"\.")):
        check_server_name(value)


@pytest.mark.parametrize("value", ["www.example.com", "WWW.Example.COM", "xn--bcher-kva.example", "a-b.c-d.test"])
def test_a_dns_name_is_stored_exactly_as_given(value: str) -> None:
    assert check_server_name(value) == value
