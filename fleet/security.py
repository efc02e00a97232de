"""TLS material and per-robot tokens.

    robopolicy fleet certs out=fleet-certs robots=4     self-signed CA + server cert (localhost, 127.0.0.1)
                                                          and tokens.json {robot_id: token} for robot-0..robot-3

Every call carries metadata ``x-robot-id`` and ``authorization: Bearer <token>``; ``TokenBook.check`` compares
in constant time. Tokens are stored as given (the file is the secret: keep it 0600, as written here).
"""

from __future__ import annotations

import datetime
import hmac
import ipaddress
import json
import os
import secrets
from pathlib import Path

import grpc

ROBOT_ID_KEY, AUTH_KEY = "x-robot-id", "authorization"


class TokenBook:
    """robot_id -> token; ``check`` returns the robot id of a call or None."""

    def __init__(self, tokens: dict[str, str]):
        if not tokens:
            raise ValueError("tokens: at least one robot token is required (robopolicy fleet certs writes tokens.json)")
        self.tokens = dict(tokens)

    @classmethod
    def load(cls, path: str | Path) -> TokenBook:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokens_file: {path} not found (create it with `robopolicy fleet certs`)")
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not all(isinstance(v, str) and v for v in data.values()):
            raise ValueError(f"tokens_file: {path} must be a JSON object {{robot_id: token}}")
        return cls(data)

    def check(self, metadata: tuple | list | None) -> str | None:
        md = dict(metadata or ())
        robot_id, auth = md.get(ROBOT_ID_KEY, ""), md.get(AUTH_KEY, "")
        want = self.tokens.get(robot_id)
        if want is None or not auth.startswith("Bearer "):
            return None
        return robot_id if hmac.compare_digest(auth[7:].encode(), want.encode()) else None


def call_metadata(robot_id: str, token: str) -> tuple[tuple[str, str], ...]:
    return ((ROBOT_ID_KEY, robot_id), (AUTH_KEY, f"Bearer {token}"))


def server_credentials(cert: str | Path, key: str | Path) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(Path(key).read_bytes(), Path(cert).read_bytes())])


def channel_credentials(ca: str | Path) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=Path(ca).read_bytes())


def write_certs(out: str | Path, hosts: list[str], robots: int = 0, days: int = 365) -> dict[str, Path]:
    """Self-signed CA and a server certificate for ``hosts`` (DNS names or IPs), plus ``robots`` tokens.

    Returns paths {ca, cert, key, tokens}. For local use and tests; a deployment uses its own PKI.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "robopolicy fleet local CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for h in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    paths = {"ca": out / "ca.pem", "cert": out / "server.pem", "key": out / "server.key", "tokens": out / "tokens.json"}
    paths["ca"].write_bytes(ca.public_bytes(pem))
    paths["cert"].write_bytes(cert.public_bytes(pem))
    _write_private(paths["key"], key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    tokens = {f"robot-{i}": secrets.token_urlsafe(24) for i in range(robots)}
    if paths["tokens"].is_file():  # keep existing robots' tokens; add the new ones
        tokens = json.loads(paths["tokens"].read_text()) | {k: v for k, v in tokens.items()
                                                             if k not in json.loads(paths["tokens"].read_text())}
    _write_private(paths["tokens"], json.dumps(tokens, indent=1).encode())
    return paths


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
