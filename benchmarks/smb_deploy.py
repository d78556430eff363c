"""SMB transport, SCMR restart and Apache-on-Windows deployment speed against a real Samba smbd on 127.0.0.1
(run as root). The svcctl pipe is forwarded to the service manager emulator (tests/emulators/scm.py), whose
"Apache2.4" service is `openssl s_server` on the share's files.

Prints one JSON line: connect_ms (TCP + SMB negotiate + NTLM session setup), write_ms (atomic 2 KB write:
temp name, replace, read back), restart_ms (SCMR stop + wait STOPPED + start + wait RUNNING), each median;
certs_per_min (plan + backup + install + check for N certificates to one Apache over one session, then one
restart, as a batch to one server does).

    uv run python benchmarks/smb_deploy.py [--certs 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ssh_deploy import median_ms  # noqa: E402 - after the path is set


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--certs", type=int, default=20)
    args = parser.parse_args()

    from certfleet.connectors.servers.scmr import ServiceControl
    from certfleet.connectors.servers.server_kinds import ServerSpec, TargetSpec
    from certfleet.connectors.servers.smb import SmbSettings, SmbTransport
    from certfleet.connectors.servers.windows import windows_handler
    from certfleet.demo.listener import free_port
    from tests.integration.pki_kit import issued_bundle
    from tests.integration.smbd import SMB_PASSWORD, SMB_USER, make_folder, put_file, running_smbd
    from tests.integration.test_smb_service import KILL, LISTEN, SERVICE

    state = Path(tempfile.mkdtemp(prefix="certfleet-bench-smb-"))
    port = free_port()
    script = state / "Apache2.4.sh"
    result: dict[str, float | int] = {}
    with running_smbd(services={"Apache2.4": script}) as smbd:
        ssl = make_folder(smbd.share / "Apache24" / "conf" / "ssl")
        make_folder(smbd.share / "Apache24" / "conf" / "extra")
        start = LISTEN.format(port=port, ssl=ssl, state=state, name="Apache2.4")
        script.write_text(SERVICE.format(state=state, name="Apache2.4", start=start, stop=KILL))
        script.chmod(0o755)
        names = [f"site{n}.example.test" for n in range(args.certs)]
        vhosts = []
        for n, name in enumerate(names):
            bundle = issued_bundle(name)
            file = "site" if n == 0 else name  # the service serves site.crt: the first site's files
            put_file(ssl / f"{file}.crt", bundle.fullchain_pem)
            put_file(ssl / f"{file}.key", bundle.key_pem)
            vhosts.append(
                f"<VirtualHost _default_:{port}>\r\n  ServerName {name}\r\n  SSLEngine on\r\n"
                f'  SSLCertificateFile "C:/Apache24/conf/ssl/{file}.crt"\r\n'
                f'  SSLCertificateKeyFile "C:/Apache24/conf/ssl/{file}.key"\r\n</VirtualHost>\r\n'
            )
        put_file(
            smbd.share / "Apache24" / "conf" / "httpd.conf",
            f'ServerRoot "C:/Apache24"\r\nListen {port}\r\nInclude conf/extra/httpd-ssl.conf\r\n'.encode(),
        )
        put_file(smbd.share / "Apache24" / "conf" / "extra" / "httpd-ssl.conf", "".join(vhosts).encode())
        settings = SmbSettings("127.0.0.1", SMB_USER, SMB_PASSWORD, port=smbd.port)
        try:
            result["connect_ms"] = median_ms(lambda: SmbTransport(settings).__enter__().close(), 10)
            payload = b"x" * 2048
            with SmbTransport(settings) as transport:
                result["write_ms"] = median_ms(lambda: transport.write_atomic("C:\\Apache24\\f.pem", payload, 0))
                control = ServiceControl(transport, poll_interval=0.02)
                control.restart("Apache2.4")
                result["restart_ms"] = median_ms(lambda: control.restart("Apache2.4"), 5)
            bundles = [issued_bundle(name) for name in names]
            begin = time.perf_counter()
            shared = SmbTransport(settings)
            handler = None
            spec = ServerSpec(server_type="apache", app_path="C:\\Apache24", service_name="Apache2.4")
            for name, bundle in zip(names, bundles, strict=True):
                handler = windows_handler(shared, spec, TargetSpec(port=port, server_name=name))
                for write in handler.plan(bundle):
                    handler.snapshot(write.path, write.path + ".certfleet-backup-bench")
                    handler.install(write)
                handler.verify()
            assert handler is not None
            handler.activate()
            shared.close()
            result["certs_per_min"] = round(args.certs / (time.perf_counter() - begin) * 60, 1)
        finally:
            subprocess.run([str(script), "stop"], check=False, timeout=30)
    result["certs"] = args.certs
    print(json.dumps(result))


if __name__ == "__main__":
    main()
