"""Servers for agentless deployment over SSH: the Add Server form's validation, storage and checks.

The API (all in `certfleet.servers.service`; no secret ever comes back out of it):

- `ServerInput`: pydantic model with every Add Server field: `description`, `ip_address` (IP or host
  name), `username`, `password` (SecretStr), `server_type` (`ServerType`: nginx, apache, tomcat, jetty,
  jboss, weblogic; "Apache HTTP", "httpd" and "WildFly" are accepted too), the type-specific path as
  `app_path` or as the form's own field (`nginx_path`, `apache_path`, `tomcat_path`, `jetty_path`,
  `jboss_path`, `weblogic_path`), `keystore_folder` (Key Store Folder Path), `version`, `ports`
  (a list or "443, 8443"), `service_name`; beyond the manual: `ssh_port`, `ssh_private_key` +
  `ssh_key_passphrase` (key login), `use_sudo` (writes and commands through sudo; the password, if any,
  is given to sudo on stdin), `ssh_host_key` (an OpenSSH public key line to pin; empty = pinned on first
  contact), `config_test_command`/`reload_command` (override the type's defaults), `bot_id`.
  Bad input raises pydantic's `ValidationError` whose messages say what to fix (bad IP, port out of
  range, unknown type, relative path, a path field of another type, no password or key, unreadable
  key, a value of only whitespace or with whitespace around it: values are kept as sent, never trimmed; "" or
  None means no value); `field_errors(exc)` turns it into `{field: message}` for a form.
- `SERVER_TYPES`: per type its label, the name/label/example of its path field, default ports and a
  version example, for building the form.
- `create_server(ServerInput, actor=...) -> ServerView`: stored with status Pending; a duplicate
  (same host, SSH port, type and path) or an unknown bot raises `ServerNotValid`.
- `update_server(id, ServerUpdate, actor=...) -> ServerView`: omitted fields are kept; secrets are only
  replaced when given (`clear_password`, `clear_private_key`, `clear_host_key` remove them); a change to
  how the server is reached sets it back to Pending.
- `check_connectivity(id, actor=...) -> ConnectivityResult`: logs in (timeouts on everything, no
  retries), pins the host key on first contact, checks sudo when on, checks that the type's path, the key
  store folder and the main configuration file exist; sets the server Active, or Unreachable with the
  reason (wrong password, changed host key with both fingerprints, unreachable, missing path...).
  The `check-server` flow (`certfleet.flows.servers`) runs it on a bot's worker.
- `get_server(id)`, `list_servers()` -> `ServerView` (`has_password`, `has_private_key`,
  `host_key_fingerprint`; never the secrets).

Deployments reach SSH servers through `certfleet.tasks.build` -> `certfleet.servers.access`.
"""
