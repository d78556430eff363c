"""What a job on a bot needs and reports: plain pydantic values that cross the bot API as JSON.

A bot holds no database and no master key. Everything a deployment needs (the server's address and
credentials, the target, the bundle) reaches it as one of these values, from the database directly on the
central host or from certfleet's API on a remote bot. Secrets are plain strings kept out of every repr; they
never go into Prefect parameters, results or logs (tasks pass ids only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from certfleet.connectors.base import Backup, CertificateBundle


class ServerAccess(BaseModel):
    """One registered server: how to reach it (connection and credentials) and what runs on it."""

    model_config = ConfigDict(frozen=True)

    server_id: int
    description: str
    host: str
    connection: str  # "local" | "ssh" | "smb" (ServerConnection values)
    bot_id: int | None = None
    ports: list[int] = []
    ssh_port: int = 22
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    ssh_private_key: str | None = Field(default=None, repr=False)
    ssh_key_passphrase: str | None = Field(default=None, repr=False)
    ssh_host_key: str | None = None
    use_sudo: bool = False
    server_type: str
    app_path: str | None = None
    keystore_folder: str | None = None
    service_name: str | None = None
    version: str | None = None
    config_test_command: str | None = None
    reload_command: str | None = None
    smb_port: int = 445
    smb_share: str | None = None
    smb_share_folder: str | None = None
    smb_encrypt: bool = False
    smb_connect_timeout: int = 15
    smb_io_timeout: int = 60
    smb_rpc_timeout: int = 60


class TargetJob(BaseModel):
    """One deployment target of one certificate, with the server it lives on."""

    model_config = ConfigDict(frozen=True)

    certificate_id: int
    target_id: int
    deployment_id: int | None = None
    common_name: str
    port: int
    server_name: str  # SNI name (the target's, else the certificate's common name)
    cert_path: str | None = None
    key_path: str | None = None
    chain_path: str | None = None
    serial_number: str | None = None  # the certificate being deployed
    previous_serial: str | None = None  # what the target served before this deployment
    issuer_pem: str | None = None  # the chain above the certificate being deployed: the probe checks its signature
    # The certificate being deployed, exactly (SHA-256 of its DER, hex): a served leaf with this fingerprint is it,
    # with no signature to check.
    leaf_sha256: str | None = None
    server: ServerAccess


class BundleOut(BaseModel):
    """The certificate files to install (PEM text). Only ever fetched by the run that installs them."""

    leaf_pem: str
    chain_pem: str
    key_pem: str = Field(repr=False)


class RestoreItem(BaseModel):
    """A replaced file (`replace-file`: put its backup back), or a step with its own undo data (`undo`)."""

    step_id: int
    action: str = "replace-file"
    path: str
    backup_path: str
    existed: bool
    undo: dict[str, Any] | None = None

    def backup(self) -> Backup:
        return Backup(self.path, self.backup_path, self.existed)


class RestorePlan(BaseModel):
    """What a rollback must undo, newest change first."""

    job: TargetJob
    items: list[RestoreItem]
    touched: bool  # at least one file on the server was replaced (or about to be)
    reloaded: bool  # the server was told to reload the new files
    refusal: str | None = None  # why this deployment cannot be rolled back (nothing is then touched)


class StaleBackup(BaseModel):
    step_id: int
    path: str


class JournalStep(BaseModel):
    """A step of a group's deployment to journal: on which deployment, what, and (a file) where and its backup."""

    deployment_id: int
    action: str
    path: str | None = None
    backup_path: str | None = None


@dataclass(frozen=True)
class Opened:
    """A deployment opened for a certificate of a group: its job (serials set) and what to install."""

    job: TargetJob
    bundle: CertificateBundle
