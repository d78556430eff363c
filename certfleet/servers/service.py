"""Registering servers for agentless (SSH) deployment: validate, create, update, check connectivity.

See the package docstring (`certfleet.servers`) for the API the dashboard and CLI build on.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import posixpath
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy import select

from certfleet import fields
from certfleet.connectors.errors import ConnectorError, PermanentConnectorError
from certfleet.connectors.servers import commands
from certfleet.connectors.servers.server_kinds import ServerSpec, TargetSpec
from certfleet.connectors.servers.ssh import SshTransport, fingerprint, load_private_key
from certfleet.input_model import InputModel
from certfleet.jobs.models import ServerAccess
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import Bot, Server, ServerConnection, ServerStatus, utcnow
from certfleet.servers import maintenance, paths
from certfleet.servers.access import HANDLERS, server_spec, ssh_transport


class ServerType(enum.StrEnum):
    NGINX = "nginx"
    APACHE = "apache"
    TOMCAT = "tomcat"
    JETTY = "jetty"
    JBOSS = "jboss"
    WEBLOGIC = "weblogic"
    IIS = "iis"  # Windows (SMB) only


class ServerTypeInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str  # as the Server Type drop-down shows it
    path_field: str  # the form's name for the type-specific path field
    path_label: str
    path_example: str
    default_ports: list[int]
    version_example: str


SERVER_TYPES: dict[ServerType, ServerTypeInfo] = {
    ServerType.NGINX: ServerTypeInfo(
        label="Nginx",
        path_field="nginx_path",
        path_label="Nginx Path",
        path_example="/etc/nginx/",
        default_ports=[443],
        version_example="Nginx 1.22",
    ),
    ServerType.APACHE: ServerTypeInfo(
        label="Apache HTTP",
        path_field="apache_path",
        path_label="Apache HTTP Path",
        path_example="/etc/httpd/ or /etc/apache2/",
        default_ports=[443],
        version_example="Apache 2.4",
    ),
    ServerType.TOMCAT: ServerTypeInfo(
        label="Tomcat",
        path_field="tomcat_path",
        path_label="Tomcat Path",
        path_example="/opt/tomcat",
        default_ports=[8443],
        version_example="Tomcat 10",
    ),
    ServerType.JETTY: ServerTypeInfo(
        label="Jetty",
        path_field="jetty_path",
        path_label="Jetty Path",
        path_example="/var/lib/jetty9 (the Jetty base)",
        default_ports=[8443],
        version_example="Jetty 9.4",
    ),
    ServerType.JBOSS: ServerTypeInfo(
        label="JBoss / WildFly",
        path_field="jboss_path",
        path_label="JBoss Path",
        path_example="/opt/jboss/",
        default_ports=[8443],
        version_example="WildFly 30",
    ),
    ServerType.WEBLOGIC: ServerTypeInfo(
        label="WebLogic",
        path_field="weblogic_path",
        path_label="WebLogic Path",
        path_example="/u01/oracle/user_projects/domains/base_domain",
        default_ports=[7002],
        version_example="WebLogic 14.1",
    ),
    ServerType.IIS: ServerTypeInfo(
        label="IIS",
        path_field="iis_site",
        path_label="IIS Site Name",
        path_example="Default Web Site",
        default_ports=[443],
        version_example="IIS 10",
    ),
}
_PATH_FIELDS = {info.path_field: kind for kind, info in SERVER_TYPES.items()}
# Server types certfleet deploys to on Windows (over SMB), with their Windows path examples.
WINDOWS_TYPES: dict[ServerType, str] = {
    ServerType.APACHE: "C:\\Apache24",
    ServerType.TOMCAT: "C:\\Program Files\\Apache Software Foundation\\Tomcat 9.0",
    ServerType.IIS: "Default Web Site",
}
_IIS_SITE_MAX = 259
CONNECTION_ALIASES = {
    "ssh": "ssh",
    "linux": "ssh",
    "linux (ssh)": "ssh",
    "smb": "smb",
    "windows": "smb",
    "windows (smb)": "smb",
}
_ADMIN_SHARE = re.compile(r"^([A-Za-z])\$$")
_SHARE_NAME = re.compile(r"^[^\\/<>:\"|?*\[\];=+,]{1,80}$")
_NETBIOS_DOMAIN = re.compile(r"^[^\\/:*?\"<>|@\s]{1,15}$")
_WINDOWS_USER = re.compile(r"^[^\\/\[\]:;|=,+*?<>\"@]{1,104}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")
_SERVICE = commands.SERVICE_NAME
_HOST_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|rsa-sha2-(256|512))\s+[A-Za-z0-9+/=]+$")


def _ports(value: Any) -> Any:
    """The form sends "443, 8443"; the API sends [443, 8443]."""
    if isinstance(value, str):
        parts = [p for p in re.split(r"[\s,;]+", value.strip()) if p]
        for p in parts:
            if not p.isdigit():
                raise ValueError(f"{p!r} is not a port number; give numbers such as 443, 8443")
        return [int(p) for p in parts]
    return value


def _empty_to_none(value: Any) -> Any:
    """An empty value ("", what a form sends for an empty field) means none; only whitespace is refused, never
    taken for none. For secrets and pasted keys, whose spaces may be part of the value."""
    if isinstance(value, str):
        if value == "":
            return None
        if value.isspace():
            raise ValueError("only whitespace; send an empty value for none")
    return value


def _blank_to_none(value: Any) -> Any:
    """As `_empty_to_none`; a value with whitespace around it is refused too (stored as sent or refused)."""
    value = _empty_to_none(value)
    if isinstance(value, str):
        fields.refuse_edge_space(value)
    return value


Port = Annotated[int, Field(ge=1, le=65535)]
SmbTimeout = Annotated[int, Field(ge=1, le=3600)]
_SMB_TIMEOUTS = {"smb_connect_timeout": 15, "smb_io_timeout": 60, "smb_rpc_timeout": 60}


def _refuse(problem: Callable[[Any], str | None]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        message = problem(value)
        if message:
            raise ValueError(message)
        return value

    return check


# A maintenance window (certfleet.servers.maintenance): "" or null clears the cron expression and the duration.
MaintenanceCron = Annotated[
    str | None, BeforeValidator(_blank_to_none), AfterValidator(_refuse(maintenance.cron_problem))
]
MaintenanceMinutes = Annotated[
    int | None, BeforeValidator(_blank_to_none), AfterValidator(_refuse(maintenance.duration_problem))
]
TimeZone = Annotated[str, AfterValidator(_refuse(maintenance.timezone_problem))]
Optional = Annotated[str | None, BeforeValidator(_blank_to_none)]
OptionalPasted = Annotated[str | None, BeforeValidator(_empty_to_none)]  # a pasted key line: parsed, not stored
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_empty_to_none)]


def validate_host(value: str) -> str:
    """The address exactly as written (never trimmed, lowered or rewritten), or refused."""
    if not value:
        raise ValueError("give the server's IP address")
    fields.refuse_edge_space(value)
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if value.startswith("[") and value.endswith("]"):
        raise ValueError(f"{value!r}: give the IPv6 address without brackets (e.g. 2001:db8::10)")
    if re.fullmatch(r"[\d.]+", value) or ":" in value:
        raise ValueError(f"{value!r} is not a valid IP address (e.g. 192.0.2.10 or 2001:db8::10)")
    if not _HOSTNAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid IP address or host name")
    return value


def _absolute(value: str | None, label: str) -> str | None:
    """The path exactly as given, or refused by the one path rule (`certfleet.servers.paths`)."""
    if value is None:
        return None
    return paths.check_path(value, label, directory=True)


def _allowed_paths(value: Any) -> Any:
    """The form sends one folder per line; the API a list."""
    if isinstance(value, str):
        return [line for line in value.splitlines() if line.strip()]
    return value


def _iis_site(value: str) -> str:
    """An IIS site name exactly as given (quotes, `$`, `;`, backticks are data to certfleet's script; IIS itself
    says whether such a site exists)."""
    if not value or len(value) > _IIS_SITE_MAX:
        raise ValueError(f"the IIS Site Name must be 1-{_IIS_SITE_MAX} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("the IIS Site Name contains a control character (newline, tab...)")
    return value


def windows_user_problem(value: str) -> str | None:
    """Why `value` is not a Windows logon name: `user`, `DOMAIN\\user` or `user@domain.example`."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "username: contains a control character"
    if "\\" in value:
        domain, _, user = value.partition("\\")
        if not _NETBIOS_DOMAIN.fullmatch(domain):
            return (
                f"username: the domain {domain!r} before '\\' is not a Windows domain name (1-15 characters, no spaces)"
            )
    elif "@" in value:
        user, _, domain = value.rpartition("@")
        if not domain or not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?", domain):
            return f"username: the domain {domain!r} after '@' is not a DNS domain (user@corp.example.com)"
    else:
        user = value
    if not _WINDOWS_USER.fullmatch(user):
        return (
            f"username: {user!r} is not a Windows user name (1-104 characters, none of \\ / [ ] : ; | = , + * ? "
            '< > " @); write DOMAIN\\user or user@domain'
        )
    return None


def _connection(value: Any) -> Any:
    if isinstance(value, str):
        found = CONNECTION_ALIASES.get(value.strip().lower())
        if found is None:
            raise ValueError(f"connection must be ssh (Linux) or smb (Windows), not {value!r}")
        return found
    return value


class _Common(InputModel):
    model_config = ConfigDict(extra="forbid")  # values are stored as sent or refused, never trimmed

    @field_validator("username", check_fields=False)
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        return None if value is None else fields.refuse_edge_space(value)

    @field_validator("ssh_host_key", check_fields=False)
    @classmethod
    def _host_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.split()
        line = (
            " ".join(parts[-2:])
            if len(parts) >= 2 and not _HOST_KEY.fullmatch(" ".join(parts[:2]))
            else " ".join(parts[:2])
        )
        if not _HOST_KEY.fullmatch(line):
            raise ValueError(
                "the SSH host key must be an OpenSSH public key line such as 'ssh-ed25519 AAAA...' "
                "(from /etc/ssh/ssh_host_ed25519_key.pub on the server, or `ssh-keyscan`)"
            )
        return line

    @field_validator("ssh_private_key", check_fields=False)
    @classmethod
    def _private_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and "PRIVATE KEY-----" not in value.get_secret_value():
            raise ValueError(
                "the SSH private key must be an OpenSSH or PEM private key (-----BEGIN ... PRIVATE KEY-----)"
            )
        return value

    @field_validator("service_name", check_fields=False)
    @classmethod
    def _service(cls, value: str | None) -> str | None:
        if value is not None and not _SERVICE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a service name: use letters, digits and @ . _ : + - only, not starting with -"
            )
        return value

    @field_validator("config_test_command", "reload_command", check_fields=False)
    @classmethod
    def _command(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 500 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)):
            raise ValueError("a command is one line of at most 500 characters, without control characters")
        return value

    @field_validator("allowed_paths", check_fields=False)
    @classmethod
    def _allowed(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            return None
        windows = info.data.get("connection") == "smb"
        for number, path in enumerate(value):
            paths.check_path(path, f"allowed path {number + 1}", directory=True, windows=windows)
        if len(value) > 50:
            raise ValueError("at most 50 allowed paths")
        return value


class ServerInput(_Common):
    """Every field of the manual's Add Server form, plus SSH key auth, sudo and the host key.

    The type-specific path may be given as `app_path` or as the form's own field (`nginx_path`,
    `apache_path`, `tomcat_path`, `jetty_path`, `jboss_path`, `weblogic_path`) matching `server_type`.
    """

    connection: Annotated[str, BeforeValidator(_connection)] = Field(
        default="ssh", description="ssh: a Linux server over SSH; smb: a Windows server over SMB"
    )
    description: str = Field(min_length=1, max_length=200)
    ip_address: str = Field(description="IP address (or host name) the bot connects to")
    username: str = Field(min_length=1, max_length=120)
    password: OptionalSecret = None
    server_type: ServerType
    app_path: Optional = None
    nginx_path: Optional = None
    apache_path: Optional = None
    tomcat_path: Optional = None
    jetty_path: Optional = None
    jboss_path: Optional = None
    weblogic_path: Optional = None
    iis_site: Optional = Field(default=None, description="IIS: the site whose https bindings get the certificate")
    keystore_folder: Optional = Field(default=None, description="Key Store Folder Path")
    version: Optional = Field(default=None, max_length=40)
    ports: Annotated[list[Port], BeforeValidator(_ports)] = Field(min_length=1, description="TLS ports, e.g. [443]")
    service_name: Optional = None
    ssh_port: Port = 22
    ssh_private_key: OptionalSecret = None
    ssh_key_passphrase: OptionalSecret = None
    ssh_host_key: OptionalPasted = Field(default=None, description="pin this key; empty: pinned on first contact")
    use_sudo: bool = False
    config_test_command: Optional = Field(
        default=None,
        description="empty: the type's own; a known command of the type (GET /server-types); "
        "free-form text only for Admins with CERTFLEET_ALLOW_CUSTOM_COMMANDS on",
    )
    reload_command: Optional = Field(default=None, description="the same choice for the reload/restart")
    allowed_paths: Annotated[list[str], BeforeValidator(_allowed_paths)] = Field(
        default_factory=list,
        description="more folders deployment targets may write to, besides the type's path and key store folder",
    )
    smb_port: Port = 445
    smb_share: Optional = Field(default=None, description="Windows: the share, C$ (administrative) or a named one")
    smb_share_folder: Optional = Field(
        default=None, description="Windows, a named share: the folder it exposes, e.g. D:\\web (C$ is C:\\)"
    )
    smb_encrypt: bool = Field(default=False, description="Windows: ask for SMB 3 encryption even if not required")
    smb_connect_timeout: SmbTimeout = Field(default=15, description="Windows: seconds to connect and log in")
    smb_io_timeout: SmbTimeout = Field(default=60, description="Windows: seconds for each file read, write or listing")
    smb_rpc_timeout: SmbTimeout = Field(default=60, description="Windows: seconds for each service-manager call")
    maintenance_cron: MaintenanceCron = Field(
        default=None,
        description="maintenance window: when it opens, a cron expression of five fields in the server's time zone "
        "(e.g. '0 2 * * SAT'); deployments wait for it. Empty: deploy at any time",
    )
    maintenance_duration_minutes: MaintenanceMinutes = Field(
        default=None, description="how long the maintenance window stays open, 1 to 10080 minutes (e.g. 240)"
    )
    maintenance_timezone: TimeZone = Field(
        default=maintenance.DEFAULT_TIMEZONE, description="IANA time zone the cron expression is read in"
    )
    bot_id: int | None = None

    @field_validator("ip_address")
    @classmethod
    def _ip(cls, value: str) -> str:
        return validate_host(value)

    @field_validator("server_type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        if isinstance(value, str):
            lowered = value.strip().lower()
            aliases = {"apache http": "apache", "httpd": "apache", "wildfly": "jboss", "jboss / wildfly": "jboss"}
            lowered = aliases.get(lowered, lowered)
            if lowered not in {t.value for t in ServerType}:
                known = ", ".join(t.value for t in ServerType)
                raise ValueError(f"unknown server type {value!r}; choose one of: {known}")
            return lowered
        return value

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, value: list[int]) -> list[int]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _paths_and_auth(self) -> ServerInput:
        info = SERVER_TYPES[self.server_type]
        windows = self.connection == "smb"
        if self.server_type is ServerType.IIS and not windows:
            raise ValueError('IIS is reached over SMB: choose the connection Windows (SMB) ("connection": "smb")')
        given = {f: getattr(self, f) for f in _PATH_FIELDS if getattr(self, f) is not None}
        wrong = [f for f in given if f != info.path_field]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} does not apply to a {info.label} server; give {info.path_field}")
        path = self.app_path or given.get(info.path_field)
        example = WINDOWS_TYPES.get(self.server_type, info.path_example) if windows else info.path_example
        if path is None:
            raise ValueError(f"give the {info.path_label} (for example {example})")
        if windows:
            self._check_windows()
        if self.server_type is ServerType.IIS:
            self.app_path = _iis_site(path)
        else:
            self.app_path = paths.check_path(path, info.path_label, directory=True, windows=windows)
        for f in given:
            setattr(self, f, self.app_path)
        if self.keystore_folder is not None:
            paths.check_path(self.keystore_folder, "Key Store Folder Path", directory=True, windows=windows)
        if windows:
            return self
        for name in ("smb_share", "smb_share_folder"):
            if getattr(self, name) is not None:
                raise ValueError(f"{name} applies to Windows (SMB) servers only; this server is reached over SSH")
        if self.smb_port != 445 or self.smb_encrypt:
            raise ValueError("smb_port and smb_encrypt apply to Windows (SMB) servers only")
        changed = [name for name, default in _SMB_TIMEOUTS.items() if getattr(self, name) != default]
        if changed:
            raise ValueError(f"{', '.join(changed)} apply to Windows (SMB) servers only")
        if self.password is None and self.ssh_private_key is None:
            raise ValueError("give a password or an SSH private key to log in with")
        if self.ssh_private_key is not None:
            try:
                load_private_key(
                    self.ssh_private_key.get_secret_value(),
                    self.ssh_key_passphrase.get_secret_value() if self.ssh_key_passphrase else None,
                )
            except ConnectorError as exc:
                raise ValueError(str(exc)) from None
        return self

    def _check_windows(self) -> None:
        """A Windows server: Apache or Tomcat, a password, a Windows logon name, a share; no SSH settings."""
        if self.server_type not in WINDOWS_TYPES:
            choices = " or ".join(SERVER_TYPES[t].label for t in WINDOWS_TYPES)
            raise ValueError(
                f"certfleet does not deploy to {SERVER_TYPES[self.server_type].label} on Windows (SMB); "
                f"choose {choices}"
            )
        problem = windows_user_problem(self.username)
        if problem is not None:
            raise ValueError(problem)
        if self.password is None:
            raise ValueError("give the password of the Windows account (SMB logs in with NTLM)")
        if self.server_type is ServerType.IIS:
            if self.keystore_folder is None:
                raise ValueError(
                    "give the Key Store Folder Path (e.g. C:\\certs): the PKCS#12 is written there, then imported "
                    "into Cert:\\LocalMachine\\My"
                )
        elif self.service_name is None:
            raise ValueError(
                "give the Service Name (e.g. Apache2.4, Tomcat9): a Windows server is restarted by its service "
                "after each deployment"
            )
        ssh_only = {
            "ssh_private_key": self.ssh_private_key is not None,
            "ssh_key_passphrase": self.ssh_key_passphrase is not None,
            "ssh_host_key": self.ssh_host_key is not None,
            "use_sudo": self.use_sudo,
            "ssh_port": self.ssh_port != 22,
            "config_test_command": self.config_test_command is not None,
            "reload_command": self.reload_command is not None,
        }
        wrong = [name for name, set_ in ssh_only.items() if set_]
        if wrong:
            raise ValueError(
                f"{', '.join(wrong)} do not apply to a Windows (SMB) server: it is restarted by its Service Name"
            )
        if self.smb_share is None:
            raise ValueError("give the SMB share: C$ (the administrative share of drive C:) or a named share")
        if not _SHARE_NAME.fullmatch(self.smb_share):
            raise ValueError(f"smb_share {self.smb_share!r} is not a share name (1-80 characters, no \\ / : * ? etc.)")
        admin = _ADMIN_SHARE.fullmatch(self.smb_share)
        if self.smb_share_folder is None:
            if admin is None:
                raise ValueError(
                    f"give the folder the share {self.smb_share} exposes (smb_share_folder, e.g. D:\\web): "
                    "certfleet maps the server's paths into it"
                )
        else:
            found = paths.windows_path_problem(self.smb_share_folder, directory=True)
            if found is not None or self.smb_share_folder.startswith("\\\\"):
                raise ValueError(
                    f"smb_share_folder {self.smb_share_folder!r} must be a drive folder such as D:\\web"
                    + (f": it {found[0]}" if found else "")
                )
            if admin is not None and self.smb_share_folder.lower().rstrip("\\") != f"{admin.group(1).lower()}:":
                raise ValueError(
                    f"the share {self.smb_share} is the drive {admin.group(1)}:\\; leave smb_share_folder empty"
                )


class ServerUpdate(_Common):
    """Fields to change; omitted (None) fields keep their value. Secrets given replace the stored ones;
    `clear_password`/`clear_private_key` remove them; `clear_host_key` re-pins on the next contact."""

    description: str | None = Field(default=None, min_length=1, max_length=200)
    ip_address: str | None = None
    username: str | None = Field(default=None, min_length=1, max_length=120)
    password: OptionalSecret = None
    clear_password: bool = False
    server_type: ServerType | None = None
    app_path: Optional = None
    keystore_folder: Optional = None
    version: Optional = None
    ports: Annotated[list[Port] | None, BeforeValidator(_ports)] = None
    service_name: Optional = None
    ssh_port: Port | None = None
    ssh_private_key: OptionalSecret = None
    ssh_key_passphrase: OptionalSecret = None
    clear_private_key: bool = False
    ssh_host_key: OptionalPasted = None
    clear_host_key: bool = False
    use_sudo: bool | None = None
    config_test_command: Optional = Field(default=None, description='given as "" or null: back to the type\'s own')
    reload_command: Optional = Field(default=None, description='given as "" or null: back to the type\'s own')
    allowed_paths: Annotated[list[str] | None, BeforeValidator(_allowed_paths)] = None
    smb_port: Port | None = None
    smb_share: Optional = None
    smb_share_folder: Optional = None
    smb_encrypt: bool | None = None
    smb_connect_timeout: SmbTimeout | None = None
    smb_io_timeout: SmbTimeout | None = None
    smb_rpc_timeout: SmbTimeout | None = None
    maintenance_cron: MaintenanceCron = Field(default=None, description='given as "" or null: no window')
    maintenance_duration_minutes: MaintenanceMinutes = None
    maintenance_timezone: TimeZone | None = None
    bot_id: int | None = None


class ServerView(BaseModel):
    """A server as the dashboard and API show it: never a secret, only whether one is set."""

    id: int
    connection: str
    description: str
    ip_address: str
    username: str | None
    has_password: bool
    has_private_key: bool
    server_type: str
    app_path: str | None
    keystore_folder: str | None
    version: str | None
    ports: list[int]
    service_name: str | None
    ssh_port: int
    ssh_host_key: str | None
    host_key_fingerprint: str | None
    use_sudo: bool
    config_test_command: str | None
    reload_command: str | None
    allowed_paths: list[str]
    smb_port: int
    smb_share: str | None
    smb_share_folder: str | None
    smb_encrypt: bool
    smb_connect_timeout: int
    smb_io_timeout: int
    smb_rpc_timeout: int
    maintenance_cron: str | None
    maintenance_duration_minutes: int | None
    maintenance_timezone: str
    bot_id: int | None
    status: str
    status_reason: str | None
    last_checked_at: datetime | None

    @classmethod
    def of(cls, server: Server) -> ServerView:
        return cls(
            id=server.id,
            connection=server.connection.value,
            description=server.description,
            ip_address=server.host,
            username=server.username,
            has_password=bool(server.password),
            has_private_key=bool(server.ssh_private_key),
            server_type=server.server_type,
            app_path=server.app_path,
            keystore_folder=server.keystore_folder,
            version=server.version,
            ports=list(server.ports or []),
            service_name=server.service_name,
            ssh_port=server.ssh_port,
            ssh_host_key=server.ssh_host_key,
            host_key_fingerprint=fingerprint(server.ssh_host_key) if server.ssh_host_key else None,
            use_sudo=server.use_sudo,
            config_test_command=server.config_test_command,
            reload_command=server.reload_command,
            allowed_paths=list(server.allowed_paths or []),
            smb_port=server.smb_port if server.smb_port is not None else 445,
            smb_share=server.smb_share,
            smb_share_folder=server.smb_share_folder,
            smb_encrypt=bool(server.smb_encrypt),
            smb_connect_timeout=server.smb_connect_timeout or 15,
            smb_io_timeout=server.smb_io_timeout or 60,
            smb_rpc_timeout=server.smb_rpc_timeout or 60,
            maintenance_cron=server.maintenance_cron,
            maintenance_duration_minutes=server.maintenance_duration_minutes,
            maintenance_timezone=server.maintenance_timezone or maintenance.DEFAULT_TIMEZONE,
            bot_id=server.bot_id,
            status=server.status.value,
            status_reason=server.status_reason,
            last_checked_at=server.last_checked_at,
        )


class ConnectivityResult(BaseModel):
    server_id: int
    status: str  # "Active" or "Unreachable"
    reason: str | None  # why not Active, in words the user can act on
    host_key_fingerprint: str | None
    checked: list[str]  # what was verified, e.g. "login", "sudo", "/etc/nginx exists"


class ServerNotValid(ValueError):
    """Raised for inputs that are well-formed but inconsistent with the database (unknown bot, duplicate)
    or with what the caller may do; `field` names the input when one is to blame."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class CommandNotAllowed(ServerNotValid):
    """A free-form command from someone who may not set one (`admin_only`: the caller is no Admin)."""

    def __init__(self, message: str, field: str, *, admin_only: bool) -> None:
        super().__init__(message, field)
        self.admin_only = admin_only


def field_errors(exc: ValidationError) -> dict[str, str]:
    """{field: message} from a validation error, for forms (model-level errors under "__all__")."""
    out: dict[str, str] = {}
    for error in exc.errors():
        name = ".".join(str(p) for p in error["loc"]) or "__all__"
        message = str(error["msg"]).removeprefix("Value error, ")
        out.setdefault(name, message)
    return out


def create_server(data: ServerInput, *, actor: str, custom_commands: bool = False) -> ServerView:
    """Store a new SSH server (status Pending until a connectivity check); secrets encrypted at rest.

    `custom_commands`: the caller may set free-form commands (an Admin); they also need the setting on.
    """
    for name in ("config_test_command", "reload_command"):
        _check_command(data.server_type.value, name, None, getattr(data, name), custom_commands)
    _check_window(data)
    with session_scope() as s:
        _check_bot(s, data.bot_id)
        connection = ServerConnection(data.connection)
        windows = connection is ServerConnection.SMB
        same_place = s.scalars(
            select(Server).where(
                Server.host == data.ip_address,
                Server.connection == connection,
                (Server.smb_port == data.smb_port) if windows else (Server.ssh_port == data.ssh_port),
                Server.server_type == data.server_type.value,
            )
        )

        def folder(path: str | None) -> str:  # "/etc/nginx/" and "/etc/nginx" are one folder; C:\ is case-blind
            return (path or "").rstrip("\\").lower() if windows else (path or "").rstrip("/")

        wanted = folder(data.app_path)
        duplicate = next((x for x in same_place if folder(x.app_path) == wanted), None)
        if duplicate is not None:
            raise ServerNotValid(
                f"server {duplicate.id} ({duplicate.description!r}) already registers this {data.server_type.value} "
                f"at {data.ip_address}:{data.app_path}"
            )
        server = Server(
            description=data.description,
            host=data.ip_address,
            ports=data.ports,
            connection=connection,
            username=data.username,
            password=_secret(data.password),
            ssh_private_key=_secret(data.ssh_private_key),
            ssh_key_passphrase=_secret(data.ssh_key_passphrase),
            ssh_port=data.ssh_port,
            ssh_host_key=data.ssh_host_key,
            use_sudo=data.use_sudo,
            server_type=data.server_type.value,
            app_path=data.app_path,
            keystore_folder=data.keystore_folder,
            version=data.version,
            service_name=data.service_name,
            config_test_command=data.config_test_command,
            reload_command=data.reload_command,
            allowed_paths=list(data.allowed_paths),
            smb_port=data.smb_port,
            smb_share=data.smb_share,
            smb_share_folder=data.smb_share_folder,
            smb_encrypt=data.smb_encrypt,
            smb_connect_timeout=data.smb_connect_timeout,
            smb_io_timeout=data.smb_io_timeout,
            smb_rpc_timeout=data.smb_rpc_timeout,
            maintenance_cron=data.maintenance_cron,
            maintenance_duration_minutes=data.maintenance_duration_minutes,
            maintenance_timezone=data.maintenance_timezone,
            bot_id=data.bot_id,
            status=ServerStatus.PENDING,
            created_by=actor,
        )
        s.add(server)
        s.flush()
        commands_given = "".join(
            f"; {name}: {value!r}"
            for name, value in (
                ("config_test_command", data.config_test_command),
                ("reload_command", data.reload_command),
            )
            if value is not None
        )
        repo.audit(
            s,
            actor=actor,
            action="add-server",
            obj=server,
            detail=f"{server.server_type} at {server.host}{commands_given}",
        )
        return ServerView.of(server)


def update_server(server_id: int, data: ServerUpdate, *, actor: str, custom_commands: bool = False) -> ServerView:
    """Change a server; anything that affects how it is reached sets it back to Pending.

    A new address or SSH port, or a cleared/replaced host key, needs the credentials given again: the
    stored ones were given for the old host and must never follow an edit to another one.
    """
    with session_scope() as s:
        server = repo.get(s, Server, server_id)
        _check_bot(s, data.bot_id)
        merged = _merged_input(server, data)  # the whole server must still validate
        _require_credentials_again(server, data, merged)
        _check_window(merged)
        for name in ("config_test_command", "reload_command"):
            _check_command(
                merged.server_type.value, name, getattr(server, name), getattr(merged, name), custom_commands
            )
        changes: dict[str, Any] = {
            "description": merged.description,
            "host": merged.ip_address,
            "username": merged.username,
            "server_type": merged.server_type.value,
            "app_path": merged.app_path,
            "keystore_folder": merged.keystore_folder,
            "version": merged.version,
            "ports": merged.ports,
            "service_name": merged.service_name,
            "ssh_port": merged.ssh_port,
            "use_sudo": merged.use_sudo,
            "config_test_command": merged.config_test_command,
            "reload_command": merged.reload_command,
            "allowed_paths": merged.allowed_paths,
            "bot_id": merged.bot_id,
            "ssh_host_key": merged.ssh_host_key,
            "smb_port": merged.smb_port,
            "smb_share": merged.smb_share,
            "smb_share_folder": merged.smb_share_folder,
            "smb_encrypt": merged.smb_encrypt,
            "smb_connect_timeout": merged.smb_connect_timeout,
            "smb_io_timeout": merged.smb_io_timeout,
            "smb_rpc_timeout": merged.smb_rpc_timeout,
            "maintenance_cron": merged.maintenance_cron,
            "maintenance_duration_minutes": merged.maintenance_duration_minutes,
            "maintenance_timezone": merged.maintenance_timezone,
        }
        changed = [name for name, value in changes.items() if getattr(server, name) != value]
        # Commands run on every deploy: the audit keeps exactly what they were and became.
        shown: dict[str, str] = {
            name: f"{name}: {getattr(server, name)!r} -> {changes[name]!r}"
            for name in ("config_test_command", "reload_command", *_WINDOW_FIELDS)
            if name in changed
        }
        for name in changed:
            setattr(server, name, changes[name])
        for name, value, clear in (
            ("password", data.password, data.clear_password),
            ("ssh_private_key", data.ssh_private_key, data.clear_private_key),
            ("ssh_key_passphrase", data.ssh_key_passphrase, data.clear_private_key),
        ):
            if clear or value is not None:
                setattr(server, name, None if clear else _secret(value))
                changed.append(name)
        reach = {"host", "username", "ssh_port", "ssh_host_key", "use_sudo", "password", "ssh_private_key", "app_path"}
        reach |= {"smb_port", "smb_share", "smb_share_folder", "smb_encrypt"}
        if reach & set(changed):
            server.status = ServerStatus.PENDING
            server.status_reason = "changed: run the connectivity check"
        detail = ", ".join(shown.get(name, name) for name in sorted(changed)) or "no change"
        repo.audit(s, actor=actor, action="update-server", obj=server, detail=detail)
        return ServerView.of(server)


def get_server(server_id: int) -> ServerView:
    with session_scope() as s:
        return ServerView.of(repo.get(s, Server, server_id))


def list_servers() -> list[ServerView]:
    with session_scope() as s:
        return [ServerView.of(x) for x in s.scalars(select(Server).order_by(Server.id))]


class CheckOutcome(BaseModel):
    """What a connectivity check found, before it is recorded (it crosses the bot API as JSON)."""

    checked: list[str]
    reason: str | None = None  # None: the server is ready
    resolved: dict[str, str] = {}  # {column: absolute command} found on the server


def check_connectivity(server_id: int, *, actor: str = "certfleet") -> ConnectivityResult:
    """Log in, check sudo (when on) and that the configured paths exist; set Active or say why not.

    The check itself (`probe_server`) needs only the server's access; a bot runs it and records the outcome
    through certfleet's API (`record_check`). This is both, on the host that has the database.
    """
    from certfleet.jobs.db_store import server_access

    with session_scope() as s:
        access = server_access(repo.get(s, Server, server_id))
    return record_check(server_id, actor, probe_server(access))


def probe_server(access: ServerAccess, pin: Callable[[str], None] | None = None) -> CheckOutcome:
    """A local-agent server (this host's file system) needs no login: its directories must exist and be writable.
    Over SSH: log in (pinning the host key on first contact through `pin`), check sudo, the paths and the
    commands. Takes at most a few timeouts (connect, commands); never retries."""
    if access.connection == ServerConnection.LOCAL.value:
        found = [(access.app_path, "the installation path"), (access.keystore_folder, "the Key Store Folder Path")]
        checked, reason = _check_local_paths([(path, label) for path, label in found if path])
        return CheckOutcome(checked=checked, reason=reason)
    if access.connection == ServerConnection.SMB.value:
        return _probe_windows(access)
    if access.connection != ServerConnection.SSH.value:
        raise ServerNotValid(f"server {access.server_id} is not reached over SSH")
    transport = ssh_transport(access, cached=False, pin=pin)
    spec = server_spec(access)
    checked = []
    reason = None
    resolved: dict[str, str] = {}
    try:
        with transport:
            checked.append(f"login as {transport.settings.username}")
            if transport.settings.use_sudo:
                result = transport.run("true", 30)
                if result.exit_code != 0:
                    raise _NotReady(f"sudo does not work for {transport.settings.username}: {result.tail()}")
                checked.append("sudo")
            _require_path(transport, spec.app_path, f"the {_path_label(spec.server_type)}", checked)
            if access.keystore_folder:
                _require_path(transport, access.keystore_folder, "the Key Store Folder Path", checked, directory=True)
            config = _main_config(spec.server_type, spec.app_path)
            if config is not None:
                _require_path(transport, config, "the configuration file", checked, directory=False)
            app_stat = transport.stat(spec.app_path)
            if app_stat and app_stat.is_dir:
                _require_writable(transport, spec.app_path, f"the {_path_label(spec.server_type)}", checked)
            else:  # a configuration file: its folder
                folder = posixpath.dirname(spec.app_path)
                _require_writable(transport, folder, f"the folder of the {_path_label(spec.server_type)}", checked)
            if access.keystore_folder:
                _require_writable(transport, access.keystore_folder, "the Key Store Folder Path", checked)
            resolved = _resolve_commands(transport, spec, access.ports[0] if access.ports else 443, checked)
    except (ConnectorError, _NotReady, paths.PathRefused) as exc:
        reason = str(exc)
    return CheckOutcome(checked=checked, reason=reason, resolved=resolved)


def _probe_windows(access: ServerAccess) -> CheckOutcome:
    """Log in (NTLM), open the share, the configured folders and the service manager: says which step failed."""
    from certfleet.connectors.servers.scmr import ServiceControl
    from certfleet.servers.access import smb_transport

    checked: list[str] = []
    step = "login"
    try:
        transport = smb_transport(access, cached=False)
        with transport:
            session = transport.session()
            encrypted = " (SMB 3 encrypted)" if session.encrypt_data else ""
            checked.append(f"login as {transport.settings.username}{encrypted}")
            step = f"opening the share {transport.settings.share}"
            if (
                transport.list_dir(transport.settings.root()) == []
                and transport.stat(transport.settings.root()) is None
            ):
                raise _NotReady(f"the share {transport.settings.share} cannot be opened")
            checked.append(f"share {transport.settings.share}")
            iis = access.server_type == ServerType.IIS.value
            for path, label in ((None if iis else access.app_path, f"the {_path_label(access.server_type)}"),
                                (access.keystore_folder, "the Key Store Folder Path")):  # fmt: skip
                if not path:
                    continue
                step = f"looking at {label}"
                found = transport.stat(path)
                if found is None:
                    raise _NotReady(f"{label} {path} does not exist on the server")
                checked.append(f"{path} exists")
            if iis and access.keystore_folder:  # the PKCS#12 and its backup are written there
                step = "writing to the Key Store Folder Path"
                probe = f"{access.keystore_folder.rstrip(chr(92))}\\.certfleet-write-test-{secrets.token_hex(4)}"
                transport.write_atomic(probe, b"", 0o600)
                transport.remove(probe)
                checked.append(f"{access.keystore_folder} is writable (a test file was written and removed)")
            step = "opening the service manager"
            ServiceControl(transport).check()
            checked.append("service manager (svcctl)")
            if iis:  # the import and rebinding run through a PsExec-style service: ADMIN$ and service creation
                step = "opening the share ADMIN$ (a PsExec-style run copies its service program there)"
                transport.open_share("ADMIN$")
                checked.append("share ADMIN$")
                step = "asking the service manager for the right to create a service (PsExec-style run)"
                ServiceControl(transport).check(create_services=True)
                checked.append("may create services (PsExec-style PowerShell run)")
            if access.service_name:
                step = f"looking up the service {access.service_name}"
                ServiceControl(transport).state(access.service_name)
                checked.append(f"service {access.service_name}")
    except (ConnectorError, _NotReady, paths.PathRefused) as exc:
        return CheckOutcome(checked=checked, reason=f"{step}: {exc}")
    return CheckOutcome(checked=checked, reason=None)


def _check_local_paths(paths: list[tuple[str, str]]) -> tuple[list[str], str | None]:
    """A local-agent server lives on this host's file system: its directories must exist and be writable."""
    checked: list[str] = []
    if not paths:
        return checked, "set the installation path: deployments write certificates there"
    for path, label in paths:
        if not os.path.isdir(path):
            what = "is not a directory" if os.path.exists(path) else "does not exist"
            return checked, f"{label} {path} {what} on this host"
        if not os.access(path, os.W_OK | os.X_OK):
            return checked, f"{label} {path} is not writable by certfleet on this host"
        checked.append(f"{path} exists and is writable")
    return checked, None


def record_check(server_id: int, actor: str, outcome: CheckOutcome) -> ConnectivityResult:
    """Status, reason and the commands found on the server, audited."""
    checked, reason, resolved = outcome.checked, outcome.reason, outcome.resolved
    with session_scope() as s:
        server = repo.get(s, Server, server_id)
        for name, text in resolved.items():
            if getattr(server, name) != text:
                repo.audit(
                    s, actor=actor, action="resolve-server-command", obj=server,
                    detail=f"{name}: {getattr(server, name)!r} -> {text!r}",
                )  # fmt: skip
                setattr(server, name, text)
        server.status = ServerStatus.ACTIVE if reason is None else ServerStatus.UNREACHABLE
        server.status_reason = reason
        server.last_checked_at = utcnow()
        repo.audit(
            s,
            actor=actor,
            action="check-server",
            obj=server,
            outcome="success" if reason is None else "failure",
            detail=reason or "; ".join(checked),
        )
        key = server.ssh_host_key
        return ConnectivityResult(
            server_id=server_id,
            status=server.status.value,
            reason=reason,
            host_key_fingerprint=fingerprint(key) if key else None,
            checked=checked,
        )


class _NotReady(Exception):
    pass


def _resolve_commands(transport: SshTransport, spec: ServerSpec, port: int, checked: list[str]) -> dict[str, str]:
    """The config-test and reload verbs in effect, their programs found on the server: {column: verb}.

    Stored as absolute paths so a deploy never depends on the login's PATH (Debian keeps nginx and
    apachectl in /usr/sbin, outside a non-login user's PATH). A custom command is left as it is.
    """
    kind = HANDLERS.get(spec.server_type)
    if kind is None:  # a plain PEM server: its commands are its own
        return {}
    handler = kind(transport, spec, TargetSpec(port=port))
    out: dict[str, str] = {}
    for column, what, verb in zip(
        ("config_test_command", "reload_command"), ("config test", "reload"), handler.chosen_verbs(), strict=True
    ):
        if verb is None:
            continue
        found = commands.resolve(transport, verb)
        if found is None:
            raise _NotReady(
                f"the {what} command `{verb.text}` cannot run: no `{verb.name}` on {transport.label} (looked on the "
                f"PATH and in {', '.join(commands.SEARCH_DIRS)}); install it or choose another {what} command"
            )
        handler.build(found)  # a systemctl verb without a service name is refused here, not at deploy time
        out[column] = found.text
        checked.append(f"{what}: {found.text}")
    return out


def _require_path(
    transport: SshTransport, path: str, label: str, checked: list[str], *, directory: bool | None = None
) -> None:
    st = transport.stat(path)
    if st is None:
        raise _NotReady(f"{label} {path} does not exist on {transport.label}")
    if directory is True and not st.is_dir:
        raise _NotReady(f"{label} {path} on {transport.label} is not a directory")
    if directory is False and st.is_dir:
        raise _NotReady(f"{label} {path} on {transport.label} is a directory, not a file")
    checked.append(f"{path} exists")


def _require_writable(transport: SshTransport, folder: str, label: str, checked: list[str]) -> None:
    """Deployments write certificates, keys and backups there: try it with a temp file, as a deployment would."""
    probe = posixpath.join(folder, f".certfleet-write-test-{secrets.token_hex(4)}")
    try:
        transport.write_atomic(probe, b"", 0o600)
    except PermanentConnectorError as exc:
        raise _NotReady(f"{label} {folder} is not writable: {exc}") from None
    transport.remove(probe)
    checked.append(f"{folder} is writable (a test file was written and removed)")


def _main_config(server_type: str, app_path: str) -> str | None:
    """The file a handler starts from, when it is fixed by the path alone."""
    if app_path.endswith((".conf", ".xml")):
        return app_path
    return {
        "nginx": posixpath.join(app_path, "nginx.conf"),
        "tomcat": posixpath.join(app_path, "conf", "server.xml"),
        "weblogic": posixpath.join(app_path, "config", "config.xml"),
    }.get(server_type)


def _path_label(server_type: str) -> str:
    try:
        return SERVER_TYPES[ServerType(server_type)].path_label
    except ValueError:
        return "installation path"


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


_WINDOW_FIELDS = ("maintenance_cron", "maintenance_duration_minutes", "maintenance_timezone")


def _check_window(data: ServerInput) -> None:
    """Each field was checked on its own; a window needs its cron expression and its duration together."""
    try:
        maintenance.check(data.maintenance_cron, data.maintenance_duration_minutes, data.maintenance_timezone)
    except maintenance.WindowError as exc:
        raise ServerNotValid(str(exc), field=exc.field) from None


def _check_bot(session: Any, bot_id: int | None) -> None:
    if bot_id is not None and session.get(Bot, bot_id) is None:
        raise ServerNotValid(f"bot {bot_id} does not exist; choose a registered bot")


def _merged_input(server: Server, data: ServerUpdate) -> ServerInput:
    def pick(name: str, current: Any) -> Any:
        value = getattr(data, name)
        return current if value is None else value

    def command(name: str, current: Any) -> Any:
        # given as "" or null: back to the type's own; omitted: kept
        return getattr(data, name) if name in data.model_fields_set else current

    has_secret = bool(
        (data.password is not None or (server.password and not data.clear_password))
        or (data.ssh_private_key is not None or (server.ssh_private_key and not data.clear_private_key))
    )
    key = data.ssh_private_key or (
        SecretStr(server.ssh_private_key) if server.ssh_private_key and not data.clear_private_key else None
    )
    passphrase = data.ssh_key_passphrase or (
        SecretStr(server.ssh_key_passphrase) if server.ssh_key_passphrase and not data.clear_private_key else None
    )
    return ServerInput(
        connection=server.connection.value,
        description=pick("description", server.description),
        ip_address=pick("ip_address", server.host),
        username=pick("username", server.username or ""),
        password=SecretStr("set") if has_secret and key is None else None,
        server_type=pick("server_type", server.server_type),
        app_path=pick("app_path", server.app_path),
        keystore_folder=pick("keystore_folder", server.keystore_folder),
        version=pick("version", server.version),
        ports=pick("ports", server.ports),
        service_name=pick("service_name", server.service_name),
        ssh_port=pick("ssh_port", server.ssh_port),
        ssh_private_key=key,
        ssh_key_passphrase=passphrase,
        ssh_host_key=None if data.clear_host_key else pick("ssh_host_key", server.ssh_host_key),
        use_sudo=pick("use_sudo", server.use_sudo),
        config_test_command=command("config_test_command", server.config_test_command),
        reload_command=command("reload_command", server.reload_command),
        allowed_paths=pick("allowed_paths", list(server.allowed_paths or [])),
        smb_port=pick("smb_port", server.smb_port if server.smb_port is not None else 445),
        smb_share=pick("smb_share", server.smb_share),
        smb_share_folder=pick("smb_share_folder", server.smb_share_folder),
        smb_encrypt=pick("smb_encrypt", bool(server.smb_encrypt)),
        smb_connect_timeout=pick("smb_connect_timeout", server.smb_connect_timeout or 15),
        smb_io_timeout=pick("smb_io_timeout", server.smb_io_timeout or 60),
        smb_rpc_timeout=pick("smb_rpc_timeout", server.smb_rpc_timeout or 60),
        maintenance_cron=command("maintenance_cron", server.maintenance_cron),
        maintenance_duration_minutes=command("maintenance_duration_minutes", server.maintenance_duration_minutes),
        maintenance_timezone=pick("maintenance_timezone", server.maintenance_timezone or "UTC"),
        bot_id=pick("bot_id", server.bot_id),
    )


def _require_credentials_again(server: Server, data: ServerUpdate, merged: ServerInput) -> None:
    """Refuse an edit that would send the stored password or key to another host than it was given for."""
    reasons = []
    if merged.ip_address != server.host:
        reasons.append("the address changed")
    if merged.ssh_port != server.ssh_port:
        reasons.append("the SSH port changed")
    if merged.smb_port != server.smb_port:
        reasons.append("the SMB port changed")
    if data.clear_host_key and server.ssh_host_key:
        reasons.append("the pinned host key was cleared")
    elif merged.ssh_host_key and server.ssh_host_key and merged.ssh_host_key != server.ssh_host_key:
        reasons.append("the pinned host key changed")
    if not reasons:
        return
    why = " and ".join(reasons)
    if server.password and data.password is None and not data.clear_password:
        raise ServerNotValid(f"give the password again: {why}", field="password")
    if server.ssh_private_key and data.ssh_private_key is None and not data.clear_private_key:
        raise ServerNotValid(f"give the SSH private key again: {why}", field="ssh_private_key")


def _check_command(kind: str, field: str, old: str | None, new: str | None, custom_allowed: bool) -> None:
    """A known verb of the type is anyone's choice; a new free-form command needs an Admin and the setting."""
    what = "config test" if field == "config_test_command" else "reload"
    if new is None or new == old or commands.is_known(kind, what, new):
        return
    known = ", ".join(f"`{c}`" for c in commands.choices(kind, what)) or "none besides the type's own"
    if not custom_allowed:
        raise CommandNotAllowed(
            f"{field}: `{new}` is not a known {what} command of a {kind} server (known: {known}; or leave it "
            "empty for the type's own); free-form commands may be set by an Admin only",
            field,
            admin_only=True,
        )
    if not commands.custom_commands_allowed():
        raise CommandNotAllowed(
            f"{field}: `{new}` is not a known {what} command of a {kind} server (known: {known}); free-form "
            f"commands are turned off ({commands.ALLOW_CUSTOM_ENV})",
            field,
            admin_only=False,
        )


assert set(HANDLERS) | {ServerType.IIS.value} == {t.value for t in ServerType}, "every server type has a handler"
