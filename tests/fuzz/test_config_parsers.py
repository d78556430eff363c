"""Fuzz the nginx and Apache configuration parsers and the XML editor.

Any text raises only the parser's documented error (NginxSyntaxError, ApacheSyntaxError,
PermanentConnectorError for XML); a value written back with `rewrite_args` reads back as exactly that
value, with the rest of the file unchanged.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers import apache_conf, nginx_conf
from certfleet.connectors.servers.xml_edit import XmlEditor

NGINX_SEED = """user www-data;
http {
    include mime.types;  # comment
    server {
        listen 443 ssl;
        server_name www.example.test "quoted name" 'single';
        ssl_certificate /etc/ssl/www.pem;
        ssl_certificate_key "/etc/ssl/www key.pem";
        location / { return 200 "a \\"b\\" c"; }
    }
}
"""

APACHE_SEED = """ServerRoot "/etc/apache2"
Listen 443
<VirtualHost *:443>
    ServerName www.example.test
    SSLCertificateFile "/etc/ssl/www cert.pem"
    SSLCertificateKeyFile /etc/ssl/www.key \\
        # continued
    <Directory "/var/www">
        Require all granted
    </Directory>
</VirtualHost>
"""

XML_SEED = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- server.xml -->
<Server port="8005">
  <Service name="Catalina">
    <Connector port="8443" protocol="HTTP/1.1" SSLEnabled="true">
      <SSLHostConfig hostName="www.example.test">
        <Certificate certificateKeystoreFile="conf/keystore.p12" type="RSA"/>
      </SSLHostConfig>
    </Connector>
    <![CDATA[ <Connector> in CDATA ]]>
  </Service>
</Server>
"""

# Characters that matter to the tokenizers, mixed with any other text.
_SYNTAX = st.sampled_from([*list("{};#\"'\\<>/ \t\n*:$"), "\\\n", "</", "<VirtualHost", "include"])
_TEXT = st.lists(st.one_of(_SYNTAX, st.text(max_size=8)), max_size=120).map("".join)


@st.composite
def _mutated_text(draw: st.DrawFn, seed: str) -> str:
    text = seed
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(_TEXT.filter(lambda t: len(t) < 12)) + text[at + draw(st.integers(0, 8)) :]
    return text


@given(st.one_of(_TEXT, _mutated_text(NGINX_SEED)))
def test_nginx_parse_raises_only_its_syntax_error(text: str) -> None:
    with contextlib.suppress(nginx_conf.NginxSyntaxError):
        nginx_conf.parse(text)


@given(st.one_of(_TEXT, _mutated_text(APACHE_SEED)))
def test_apache_parse_raises_only_its_syntax_error(text: str) -> None:
    with contextlib.suppress(apache_conf.ApacheSyntaxError):
        apache_conf.parse(text)


def _all(directives: list[nginx_conf.Directive]) -> list[nginx_conf.Directive]:
    out: list[nginx_conf.Directive] = []
    for d in directives:
        out.append(d)
        out += _all(d.block or [])
    return out


@given(st.text(max_size=40), st.data())
def test_nginx_rewritten_values_read_back_exactly(value: str, data: st.DataObject) -> None:
    directives = _all(nginx_conf.parse(NGINX_SEED))
    args = [a for d in directives for a in d.args]
    arg = data.draw(st.sampled_from(args))
    text = nginx_conf.rewrite_args(NGINX_SEED, [(arg, value)])
    after = [a.value for d in _all(nginx_conf.parse(text)) for a in d.args]
    assert after == [value if a is arg else a.value for a in args]


def _apache_all(directives: list[apache_conf.Directive]) -> list[apache_conf.Directive]:
    out: list[apache_conf.Directive] = []
    for d in directives:
        out.append(d)
        out += _apache_all(d.block or [])
    return out


@given(st.one_of(st.text(max_size=40), st.text(max_size=8).map(lambda t: t + "\\")), st.data())
def test_apache_rewritten_values_read_back_exactly(value: str, data: st.DataObject) -> None:
    directives = _apache_all(apache_conf.parse(APACHE_SEED))
    args = [a for d in directives if not d.name.startswith("<") for a in d.args]
    arg = data.draw(st.sampled_from(args))
    if "\n" in value or value.endswith("\\"):  # httpd cannot read these back: refused, not mangled
        with pytest.raises(apache_conf.ApacheSyntaxError, match="cannot be written in an Apache configuration"):
            apache_conf.rewrite_args(APACHE_SEED, [(arg, value)])
        return
    text = apache_conf.rewrite_args(APACHE_SEED, [(arg, value)])
    after = [a.value for d in _apache_all(apache_conf.parse(text)) if not d.name.startswith("<") for a in d.args]
    assert after == [value if a is arg else a.value for a in args]


@given(st.one_of(st.binary(max_size=2000), _mutated_text(XML_SEED.decode()).map(str.encode)), st.text(max_size=30))
def test_xml_editing_raises_only_the_connector_error(data: bytes, value: str) -> None:
    try:
        editor = XmlEditor("fuzz", "server.xml", data)
        for element in editor.root.iter():
            if isinstance(element.tag, str):
                editor.set_attributes(element, {"certificateKeystoreFile": value, "type": None})
        editor.insert_child(editor.root, 0, "Listener", {"className": value})
        result = editor.result()
    except PermanentConnectorError:
        return
    parsed = etree.fromstring(result, etree.XMLParser(resolve_entities=False, no_network=True))
    assert parsed[0].get("className") == value or not isinstance(parsed[0].tag, str)
