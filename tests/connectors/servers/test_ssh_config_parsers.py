"""The configuration parsers and editors behind the SSH handlers: nginx, Apache, Jetty ini, XML.

Each edit must change exactly what was asked and leave every other byte (comments, quotes, layout)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from lxml import etree

from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers import apache_conf, nginx_conf
from certfleet.connectors.servers.apache import ApacheHandler
from certfleet.connectors.servers.jetty import IniFile, deobfuscate
from certfleet.connectors.servers.local import LocalTransport
from certfleet.connectors.servers.nginx import NginxHandler
from certfleet.connectors.servers.server_kinds import ServerSpec, TargetSpec
from certfleet.connectors.servers.xml_edit import XmlEditor
from tests.integration.pki_kit import issued_bundle

# -- nginx ---------------------------------------------------------------------------------------------


def test_nginx_tokens_quotes_comments_and_spans() -> None:
    text = 'server { # main site\n  listen 443 ssl;\n  ssl_certificate "/etc/ssl/a b.pem"; # quoted\n}\n'
    (server,) = nginx_conf.parse(text, "site.conf")
    assert server.name == "server"
    listen, cert = server.block or []
    assert listen.values == ["443", "ssl"]
    assert cert.values == ["/etc/ssl/a b.pem"]
    assert text[cert.args[0].start : cert.args[0].end] == '"/etc/ssl/a b.pem"'
    assert cert.line == 3
    rewritten = nginx_conf.rewrite_args(text, [(cert.args[0], "/etc/ssl/new.pem")])
    assert rewritten == text.replace('"/etc/ssl/a b.pem"', "/etc/ssl/new.pem")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server { listen 443 }", "site.conf:1: missing ';' before '}'"),
        ("server { listen 443;", "unexpected end of file"),
        ("listen 443", "directive 'listen' is not terminated"),
        ('ssl_certificate "open', "site.conf:1: unterminated quoted string"),
    ],
)
def test_nginx_syntax_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(nginx_conf.NginxSyntaxError, match=message.replace("(", r"\(")):
        nginx_conf.parse(text, "site.conf")


@pytest.mark.parametrize(
    ("value", "port"),
    [("443", 443), ("*:8443", 8443), ("127.0.0.1:9443", 9443), ("[::]:443", 443), ("[::1]", 80), ("localhost", 80)],
)
def test_nginx_listen_ports(value: str, port: int) -> None:
    assert nginx_conf.listen_port(value) == port


def test_nginx_server_names() -> None:
    assert nginx_conf.name_matches("*.example.com", "www.example.com")
    assert nginx_conf.name_matches(".example.com", "example.com")
    assert nginx_conf.name_matches("www.example.*", "www.example.org")
    assert nginx_conf.name_matches(r"~^api\d+\.example\.com$", "api7.example.com")
    assert not nginx_conf.name_matches("example.com", "www.example.com")


def _nginx(tmp_path: Path, port: int, sni: str | None) -> NginxHandler:
    return NginxHandler(
        LocalTransport(),
        ServerSpec(server_type="nginx", app_path=str(tmp_path)),
        TargetSpec(port=port, server_name=sni),
    )


def test_nginx_picks_the_block_by_sni_then_default_and_inherits_from_http(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "nginx.conf").write_text(
        "events {}\nhttp {\n  ssl_certificate shared.pem;\n  ssl_certificate_key shared.key;\n"
        "  include conf.d/*.conf;\n}\n"
    )
    (tmp_path / "conf.d" / "a.conf").write_text("server { listen 443 ssl; server_name a.test; }\n")
    (tmp_path / "conf.d" / "b.conf").write_text(
        "server { listen 443 ssl default_server; server_name b.test;\n"
        "  ssl_certificate b.pem; ssl_certificate_key /keys/b.key; }\n"
    )
    site, _ = _nginx(tmp_path, 443, "a.test").locate()
    assert (site.cert_path, site.key_path) == (str(tmp_path / "shared.pem"), str(tmp_path / "shared.key"))
    site, _ = _nginx(tmp_path, 443, "unknown.test").locate()
    assert (site.cert_path, site.key_path) == (str(tmp_path / "b.pem"), "/keys/b.key")
    with pytest.raises(PermanentConnectorError, match=r"no server block .* listens on port 8443 \(ports: 443\)"):
        _nginx(tmp_path, 8443, None).locate()


def test_nginx_variables_in_paths_need_explicit_paths(tmp_path: Path) -> None:
    (tmp_path / "nginx.conf").write_text(
        "http { server { listen 443 ssl; ssl_certificate /c/$ssl_server_name.pem; ssl_certificate_key k; } }\n"
    )
    with pytest.raises(PermanentConnectorError, match="uses variables"):
        _nginx(tmp_path, 443, None).locate()


# -- Apache --------------------------------------------------------------------------------------------


def test_apache_sections_continuations_includes_and_defines(tmp_path: Path) -> None:
    (tmp_path / "sites").mkdir()
    (tmp_path / "httpd.conf").write_text(
        f'ServerRoot "{tmp_path}"\nDefine CERTS /etc/pki/tls\nInclude sites\n'
        "<IfModule ssl_module>\n  SSLCertificateFile ${CERTS}/global.crt\n</IfModule>\n"
    )
    (tmp_path / "sites" / "a.conf").write_text(
        "# comment <VirtualHost *:1>\n<VirtualHost *:443 \\\n    [::1]:8443>\n"
        '  ServerName a.test\n  SSLCertificateKeyFile "keys/a key.pem"\n</VirtualHost>\n'
    )
    handler = ApacheHandler(
        LocalTransport(),
        ServerSpec(server_type="apache", app_path=str(tmp_path)),
        TargetSpec(port=8443, server_name="a.test"),
    )
    site, tree = handler.locate()
    assert site.cert_path == "/etc/pki/tls/global.crt"  # inherited from the server config, variable expanded
    assert site.key_path == str(tmp_path / "keys" / "a key.pem")
    assert apache_conf.vhost_ports(["*:443", "[::1]:8443", "_default_:*", "host"]) == [443, 8443, None, None]
    text = tree.files[str(tmp_path / "sites" / "a.conf")]
    assert site.key is not None
    assert apache_conf.rewrite_args(text, [(site.key.args[0], "/k.pem")]) == text.replace('"keys/a key.pem"', "/k.pem")


def test_apache_unclosed_section_is_a_clear_error() -> None:
    with pytest.raises(apache_conf.ApacheSyntaxError, match="<VirtualHost> is never closed"):
        apache_conf.parse("<VirtualHost *:443>\n ServerName x\n", "x.conf")
    with pytest.raises(apache_conf.ApacheSyntaxError, match=r"x\.conf:2: </IfModule> closes VirtualHost"):
        apache_conf.parse("<VirtualHost *:443>\n</IfModule>\n", "x.conf")


def test_apache_combined_key_and_certificate_file(tmp_path: Path) -> None:
    (tmp_path / "httpd.conf").write_text("<VirtualHost *:443>\n  SSLCertificateFile combined.pem\n</VirtualHost>\n")
    handler = ApacheHandler(
        LocalTransport(), ServerSpec(server_type="apache", app_path=str(tmp_path)), TargetSpec(port=443)
    )
    bundle = issued_bundle("combined.test")
    (write,) = handler.plan(bundle)
    assert write.path == str(tmp_path / "combined.pem")
    assert write.data == bundle.fullchain_pem + bundle.key_pem
    assert write.mode == 0o600


# -- Jetty ini -----------------------------------------------------------------------------------------


def test_jetty_ini_keeps_lines_it_does_not_set() -> None:
    text = "# ssl\n--module=ssl\njetty.ssl.port=8443\n# jetty.sslContext.keyStoreType=JKS\nx=1\r\n"
    ini = IniFile.parse("ssl.ini", text)
    assert ini.enables_ssl
    assert ini.values == {"jetty.ssl.port": "8443", "x": "1"}
    out = ini.with_values({"jetty.ssl.port": "9443", "jetty.sslContext.keyStoreType": "PKCS12", "new.key": "v"})
    assert out == "# ssl\n--module=ssl\njetty.ssl.port=9443\njetty.sslContext.keyStoreType=PKCS12\nx=1\r\nnew.key=v\n"


def test_jetty_obfuscated_passwords() -> None:
    assert deobfuscate("OBF:1vny1zlo1x8e1vnw1vn61x8g1zlu1vn4") == "storepwd"
    assert deobfuscate("plain") == "plain"


# -- XML -----------------------------------------------------------------------------------------------

XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- <Certificate> in a comment is not an element -->
<Server>
  <Connector port="8443"
             SSLEnabled="true">
    <SSLHostConfig/>
  </Connector>
  <Connector port='9443' SSLEnabled="true"><Certificate type="RSA"/></Connector>
</Server>
"""


def _editor() -> XmlEditor:
    return XmlEditor("test", "server.xml", XML.encode())


def test_xml_attributes_change_in_place_and_new_ones_follow_the_layout() -> None:
    editor = _editor()
    first, second = editor.root.findall("Connector")
    editor.set_attributes(first, {"port": "8444", "maxThreads": "8"})
    editor.set_attributes(second, {"port": "9444", "SSLEnabled": None})
    assert editor.result().decode() == XML.replace(
        'port="8443"\n             SSLEnabled="true">',
        ('port="8444"\n             SSLEnabled="true"\n             maxThreads="8">'),
    ).replace("port='9443' SSLEnabled=\"true\">", "port='9444'>")


def test_xml_children_inserted_with_their_siblings_indentation() -> None:
    editor = _editor()
    host_config = editor.root.find("Connector/SSLHostConfig")
    assert host_config is not None
    editor.insert_child(host_config, 0, "Certificate", {"type": "EC", "note": 'a "quoted" <value>'})
    out = editor.result().decode()
    assert out == XML.replace(
        "    <SSLHostConfig/>\n",
        "    <SSLHostConfig>\n"
        '        <Certificate type="EC" note=\'a "quoted" &lt;value&gt;\'/>\n'
        "    </SSLHostConfig>\n",
    )
    parsed = etree.fromstring(out.encode())
    assert parsed.find("Connector/SSLHostConfig/Certificate").get("note") == 'a "quoted" <value>'  # type: ignore[union-attr]


def test_xml_text_and_insert_order() -> None:
    data = b"<d>\n  <s>\n    <n>a</n>\n    <t/>\n  </s>\n</d>\n"
    editor = XmlEditor("test", "config.xml", data)
    s = editor.root[0]
    editor.set_text(s[0], "b & c")
    editor.set_text(s[1], "x")
    editor.insert_child(s, 1, "one", text="1")
    editor.insert_child(s, 1, "two", text="2")
    assert (
        editor.result()
        == b"<d>\n  <s>\n    <n>b &amp; c</n>\n    <one>1</one>\n    <two>2</two>\n    <t>x</t>\n  </s>\n</d>\n"
    )


def test_xml_that_does_not_parse_is_refused() -> None:
    with pytest.raises(PermanentConnectorError, match=r"server\.xml is not well-formed XML"):
        XmlEditor("tomcat", "server.xml", b"<Server><Service></Server>")


def test_nginx_one_file_for_chain_and_key(tmp_path: Path) -> None:
    (tmp_path / "nginx.conf").write_text(
        "http { server { listen 443 ssl; ssl_certificate site.pem; ssl_certificate_key site.pem; } }\n"
    )
    bundle = issued_bundle("one-file.test")
    (write,) = _nginx(tmp_path, 443, None).plan(bundle)
    assert (write.path, write.data, write.mode) == (
        str(tmp_path / "site.pem"),
        bundle.fullchain_pem + bundle.key_pem,
        0o600,
    )


@pytest.mark.parametrize("kind", ["nginx", "apache"])
def test_a_key_that_is_not_the_certificates_is_refused_before_planning_any_write(tmp_path: Path, kind: str) -> None:
    """As the Java handlers do: the pair is checked before a file is touched, not by the config test after."""
    if kind == "nginx":
        (tmp_path / "nginx.conf").write_text(
            "http { server { listen 443 ssl; ssl_certificate site.pem; ssl_certificate_key site.key; } }\n"
        )
        handler: NginxHandler | ApacheHandler = _nginx(tmp_path, 443, None)
    else:
        (tmp_path / "httpd.conf").write_text(
            "<VirtualHost *:443>\n  SSLCertificateFile site.pem\n  SSLCertificateKeyFile site.key\n</VirtualHost>\n"
        )
        handler = ApacheHandler(
            LocalTransport(), ServerSpec(server_type="apache", app_path=str(tmp_path)), TargetSpec(port=443)
        )
    good, other = issued_bundle("pair.test"), issued_bundle("other.test")
    assert [w.path for w in handler.plan(good)] == [str(tmp_path / "site.pem"), str(tmp_path / "site.key")]
    mismatched = dataclasses.replace(good, key_pem=other.key_pem)
    with pytest.raises(PermanentConnectorError, match="the private key to install does not match the certificate"):
        handler.plan(mismatched)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{'nginx' if kind == 'nginx' else 'httpd'}.conf"]
