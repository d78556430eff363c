"""Config-test and reload commands: a per-type choice of known verbs, built with every value quoted; a
free-form command runs only with CERTFLEET_ALLOW_CUSTOM_COMMANDS on, and a stored one is refused at deploy
time when it is off. Run through the handlers on the local file system (real commands, no shell)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import cast

import pytest

from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers import commands
from certfleet.connectors.servers.apache import ApacheHandler
from certfleet.connectors.servers.local import LocalTransport
from certfleet.connectors.servers.nginx import NginxHandler
from certfleet.connectors.servers.server_kinds import ServerSpec, TargetSpec
from certfleet.connectors.servers.tomcat import TomcatHandler
from certfleet.connectors.servers.transport import CommandResult, Transport


def _nginx(tmp_path: Path, **spec: str | None) -> NginxHandler:
    (tmp_path / "nginx.conf").write_text("events {}\n")
    return NginxHandler(
        LocalTransport(), ServerSpec(server_type="nginx", app_path=str(tmp_path), **spec), TargetSpec(443)
    )


@pytest.mark.parametrize(
    ("kind", "which", "text", "known"),
    [
        ("nginx", "config test", "nginx -t", True),
        ("nginx", "config test", "/usr/sbin/nginx -t", True),
        ("nginx", "reload", "systemctl reload", True),
        ("nginx", "reload", "/usr/bin/systemctl restart", True),
        ("apache", "config test", "apachectl configtest", True),
        ("apache", "reload", "/usr/sbin/apache2 -k graceful", True),
        ("tomcat", "reload", "systemctl restart", True),
        ("tomcat", "reload", "systemctl reload", False),  # Tomcat reads its keystore at start
        ("nginx", "config test", "apachectl configtest", False),  # another type's verb
        ("nginx", "config test", "nginx -t; touch /tmp/pwned", False),
        ("nginx", "config test", "/tmp/nginx -t", False),  # a program named nginx elsewhere
        ("nginx", "config test", "/tmp/sbin/nginx -t", False),
        ("nginx", "config test", "/home/deploy/bin/nginx -t", False),
        ("nginx", "config test", "/usr/local/nginx/sbin/nginx -t", True),
        ("nginx", "config test", "/usr/sbin/../../tmp/nginx -t", False),
        ("nginx", "config test", "/usr/sbin/nginx  -t", False),
        ("nginx", "reload", "systemctl reload nginx", False),  # the service comes from the Service Name field
        ("nginx", "reload", "sh -c 'nginx -s reload'", False),
    ],
)
def test_known_verbs_per_type(kind: str, which: str, text: str, known: bool) -> None:
    assert commands.is_known(kind, which, text) is known


def test_verbs_are_built_with_every_value_quoted(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    handler = _nginx(tmp_path, config_test_command="/usr/sbin/nginx -t", reload_command="systemctl reload",
                     service_name="nginx@site.service")  # fmt: skip
    assert handler.config_test_command() == f"/usr/sbin/nginx -t -q -c {conf}"
    assert handler.reload_command() == "systemctl reload nginx@site.service"
    spaced = tmp_path / "my nginx"
    spaced.mkdir()
    other = _nginx(spaced, reload_command="nginx -s reload")
    assert other.reload_command() == f"nginx -s reload -c '{spaced}/nginx.conf'"


def test_systemctl_without_a_service_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PermanentConnectorError, match="needs the Service Name"):
        _nginx(tmp_path, reload_command="systemctl reload").reload_command()


def test_a_service_name_cannot_smuggle_options_or_shell() -> None:
    for bad in ("-oProxyCommand=x", "nginx; rm -rf /", "nginx$(id)"):
        assert not commands.SERVICE_NAME.match(bad)


def test_each_type_keeps_its_default_when_nothing_is_chosen(tmp_path: Path) -> None:
    assert _nginx(tmp_path).config_test_command() == f"nginx -t -q -c {tmp_path / 'nginx.conf'}"
    assert _nginx(tmp_path).reload_command() == f"nginx -s reload -c {tmp_path / 'nginx.conf'}"
    assert _nginx(tmp_path, service_name="nginx").reload_command() == "systemctl reload nginx"
    (tmp_path / "apache2.conf").write_text("")
    apache = ApacheHandler(LocalTransport(), ServerSpec(server_type="apache", app_path=str(tmp_path)), TargetSpec(443))
    assert apache.chosen_verbs() == (commands.Verb("apache2", "-t"), commands.Verb("apache2", "-k graceful"))
    tomcat = TomcatHandler(
        LocalTransport(), ServerSpec(server_type="tomcat", app_path=str(tmp_path), service_name="tomcat9"),
        TargetSpec(8443),
    )  # fmt: skip
    assert tomcat.reload_command() == "systemctl restart tomcat9"


def test_a_stored_custom_command_is_refused_at_deploy_time_when_custom_commands_are_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pwned = tmp_path / "pwned"
    monkeypatch.delenv("CERTFLEET_ALLOW_CUSTOM_COMMANDS", raising=False)
    handler = _nginx(tmp_path, reload_command=f"touch {pwned}")
    with pytest.raises(PermanentConnectorError) as caught:
        handler.activate()
    assert "is a custom command and custom commands are turned off (CERTFLEET_ALLOW_CUSTOM_COMMANDS)" in str(
        caught.value
    )
    assert "`nginx -s reload`, `systemctl reload`, `systemctl restart`" in str(caught.value)
    assert not pwned.exists()

    monkeypatch.setenv("CERTFLEET_ALLOW_CUSTOM_COMMANDS", "true")  # a row that predates the choice keeps working
    handler.activate()
    assert pwned.exists()


def test_programs_are_found_on_the_server_outside_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH, as for a non-login SSH user

    class Shell:
        """The SSH transport runs a shell line; LocalTransport runs argv without one, so wrap it in sh."""

        label = "local"

        def run(self, command: str, timeout: float) -> CommandResult:
            return LocalTransport().run(f"/bin/sh -c {shlex.quote(command)}", timeout)

    shell = cast(Transport, Shell())
    found = commands.resolve(shell, commands.Verb("nginx", "-t"))
    expected = next(f"{d}/nginx" for d in commands.SEARCH_DIRS if Path(f"{d}/nginx").exists())
    assert found == commands.Verb(expected, "-t")
    assert commands.resolve(shell, commands.Verb("no-such-program", "-t")) == commands.Verb("no-such-program", "-t")
    # apache2 stands in for httpd (and back): whichever the distribution ships
    httpd = commands.resolve(shell, commands.Verb("httpd", "-t"))
    assert httpd is not None
    assert httpd.name in ("httpd", "apache2")
    assert httpd.program.startswith("/")


def _site(tmp_path: Path, cert: str, key: str, extra: str = "") -> NginxHandler:
    (tmp_path / "nginx.conf").write_text(
        f"events {{}}\nhttp {{ {extra}\n server {{ listen 443 ssl; server_name www.example.test;\n"
        f"  ssl_certificate {cert}; ssl_certificate_key {key}; }} }}\n"
    )
    return NginxHandler(
        LocalTransport(), ServerSpec(server_type="nginx", app_path=str(tmp_path)), TargetSpec(443, "www.example.test")
    )


@pytest.mark.parametrize(
    ("cert", "key", "extra", "denied"),
    [
        ("/etc/shadow", "{tmp}/site.key", "", "/etc/shadow"),
        ("{tmp}/site.pem", "/proc/self/environ", "", "/proc/self/environ"),
        ("{tmp}/../../../../dev/zero", "{tmp}/site.key", "", "/dev/zero"),
        ("{tmp}/site.pem", "{tmp}/site.key", "include /etc/shadow;", "/etc/shadow"),
    ],
)
def test_a_configuration_pointing_at_a_system_location_is_refused_before_reading_it(
    tmp_path: Path, cert: str, key: str, extra: str, denied: str
) -> None:
    """The paths in a server's own configuration were never validated by certfleet: the handler refuses
    them at check and deploy time, and reads nothing there (a bot may run as root)."""
    (tmp_path / "site.pem").write_text("not read: the check stops before\n")
    (tmp_path / "site.key").write_text("not read: the check stops before\n")
    handler = _site(tmp_path, cert.format(tmp=tmp_path), key.format(tmp=tmp_path), extra)
    with pytest.raises(PermanentConnectorError, match="which certfleet never reads or writes") as caught:
        handler.check_installed()
    assert denied in str(caught.value)
    assert "root:" not in str(caught.value)  # nothing of the file leaks into the message
