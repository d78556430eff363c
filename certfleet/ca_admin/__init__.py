"""CA connector management: the service the CA Connectors pages, the API and the CLI are built on.

Kinds and forms (`certfleet.ca_admin.forms`) — exactly the manual's fields; titles are its labels:

=========  ===========================================================================================
kind       form fields (secrets marked *)
=========  ===========================================================================================
emsign     name, api_base_url, account_number, access_key*, full_name, email  (+ product_code, smime_product_code)
emca       version, name, base_url, username, issuing_ca, subscriber_id, password*, uploaded_file*
           (+ uploaded_file_name). Supported versions: emCA 4.3.1 and 5.x; others are refused.
adcs       name, base_url, ca_setup_type ("Standalone CA" | "Enterprise CA"), username, password*, template
digicert   name, api_base_url, api_key*, server_platform_id, organization_id, container_id,
           certificate_validity (days), payment_type ("Balance" | "Profile")  (+ product_name_id,
           smime_product_name_id)
acme       name, directory_url, contact_email, eab_key_id, eab_hmac_key*, challenge_type ("http-01" |
           "dns-01"); http-01: http01_mode ("bot" | "webroot"), http01_listen, http01_webroot;
           dns-01: dns_server, dns_port, dns_zone, tsig_key_name, tsig_algorithm, tsig_secret*
=========  ===========================================================================================

Every form also takes `advanced` (`AdvancedOptions`: tls_ca_bundle, timeout_s, rate_limit_per_second,
rate_limit_burst), all optional. On edit, a secret left `None` keeps the stored one.

Service (`certfleet.ca_admin.service`), every function takes the session first and does not commit:

- `parse_form(kind, data) -> form`: raises `ConnectorFormError(message, field)` (the dashboard's InputError
  shape) for the first problem, with a message that says what to fix.
- `form_schema(kind)`, `columns(kind)`: the form's JSON schema and the manual's list columns
  (DigiCert adds "Certificate Validity").
- `list_connectors(session, kind=None) -> list[ConnectorRow]` (id, kind, kind_label, name, base_url,
  status "Active"/"Disabled", certificate_validity for DigiCert, certificates count).
- `get_connector(session, id) -> ConnectorDetail` (values without secrets, `secrets_set` flags, rate limit);
  `edit_form(session, id)` prefills the edit form (secrets empty).
- `create_connector(session, form, actor=...) -> id`, `update_connector(session, id, form, actor=...)`.
- `disable_connector` / `enable_connector`: a disabled connector places no new orders; certificates it
  issued keep working.
- `delete_connector(session, id, actor=...)`: raises `ConnectorInUse` (a ConnectorFormError) with
  `.certificates` (`CertificateRef` id/common_name/status) and `.profiles` while anything depends on it.
- `check_connection(session, id)` / `check_form(form, session=None, connector_id=None) -> TestResult(ok,
  message)`: authenticates against the CA without ordering (DigiCert: organization lookup; AD CS: certsrv
  login; emSign: ValidateCredentials; emCA: token + getCAs; ACME: directory + account). Network I/O: call
  it outside a write transaction.

Secrets live in the encrypted `CAConnector.credentials` JSON and never leave through this API or the audit.
"""
