"""Making the TLS files of a cluster: a CA, a server certificate, client certificates, and the
nats-server configuration fragments that use them.

NATS encrypts every link with TLS and, with `verify: true`, also authenticates clients by
their certificates, so a cluster needs a CA that both sides trust. `make_tls` makes one (or
keeps the one already in the directory, so certificates issued earlier stay valid), issues a
server certificate for the given host names and addresses (always `localhost` and 127.0.0.1,
so the servers of one machine and their clients verify each other) and one client
certificate per identity (the certificate's common name is the identity, which nats-server's
`verify_and_map` can map to a user). Keys are ECDSA P-256, written with mode 0600.

The fragments are meant to be `include`d: `tls.conf` at the top level of a server's config for
its clients, `routes-tls.conf` inside its `cluster { }` block for the links between servers.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bus.errors import BadRequest

CA_NAME = "steersman CA"
SERVER_NAME = "steersman nats-server"
DEFAULT_DAYS = 365
CA_DAYS = 3650
# Handshake time nats-server allows (its default, 0.5 s, is short on a loaded machine).
HANDSHAKE_TIMEOUT = 2
_IDENTITY = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")

Host = ipaddress.IPv4Address | ipaddress.IPv6Address | str


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class TlsFiles:
    """Where `make_tls` put everything."""

    directory: Path
    ca: Pair
    server: Pair
    clients: dict[str, Pair] = field(default_factory=dict)
    server_fragment: Path | None = None
    routes_fragment: Path | None = None


def make_tls(
    directory: str | Path,
    identities: Iterable[str] = (),
    *,
    hosts: Sequence[str] = (),
    verify: bool = True,
    days: int = DEFAULT_DAYS,
) -> TlsFiles:
    """Write a CA (unless one is there already), a server certificate valid for `hosts` (plus
    localhost and 127.0.0.1), a client certificate per identity, and the two config fragments
    (`verify`: whether servers demand a client certificate). Leaf certificates are issued anew
    at each call."""
    names = list(identities)
    for identity in names:
        if not _IDENTITY.match(identity) or identity in {"ca", "server"}:
            raise BadRequest(
                f'identity "{identity}" must be lowercase letters, digits, ".", "-" or "_" '
                '(and not "ca" or "server"): it names its certificate file'
            )
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    ca_pair = Pair(root / "ca.pem", root / "ca-key.pem")
    ca_cert, ca_key = _load_or_make_ca(ca_pair)
    server = Pair(root / "server.pem", root / "server-key.pem")
    _issue(server, ca_cert, ca_key, common_name=SERVER_NAME, hosts=_hosts(hosts), server=True, days=days)
    clients: dict[str, Pair] = {}
    for identity in names:
        pair = clients[identity] = Pair(root / f"{identity}.pem", root / f"{identity}-key.pem")
        _issue(pair, ca_cert, ca_key, common_name=identity, hosts=[], server=False, days=days)
    files = TlsFiles(root, ca_pair, server, clients)
    server_fragment = write_fragment(root / "tls.conf", tls_block(files, verify=verify))
    routes_fragment = write_fragment(root / "routes-tls.conf", tls_block(files, verify=True))
    return TlsFiles(root, ca_pair, server, clients, server_fragment, routes_fragment)


def add_client(directory: str | Path, identity: str, *, days: int = DEFAULT_DAYS) -> Pair:
    """A client certificate for one more identity, from the CA `make_tls` made in `directory`;
    the server certificate and the other identities' stay as they are."""
    if not _IDENTITY.match(identity) or identity in {"ca", "server"}:
        raise BadRequest(f'identity "{identity}" cannot name a certificate file')
    root = Path(directory)
    ca_cert, ca_key = _load_or_make_ca(Pair(root / "ca.pem", root / "ca-key.pem"))
    pair = Pair(root / f"{identity}.pem", root / f"{identity}-key.pem")
    _issue(pair, ca_cert, ca_key, common_name=identity, hosts=[], server=False, days=days)
    return pair


def tls_block(files: TlsFiles, *, verify: bool) -> str:
    """A nats-server `tls { }` block with the server's certificate and the CA.

    At the top level it secures client connections; inside `cluster { }` the routes (where the
    server certificate serves both ends, so it is issued for client authentication too)."""
    return (
        "tls {\n"
        f"  cert_file: {_quoted(files.server.cert)}\n"
        f"  key_file: {_quoted(files.server.key)}\n"
        f"  ca_file: {_quoted(files.ca.cert)}\n"
        f"  verify: {'true' if verify else 'false'}\n"
        f"  timeout: {HANDSHAKE_TIMEOUT}\n"
        "}\n"
    )


def write_fragment(path: Path, block: str) -> Path:
    path.write_text("# Written by steersman (bus/tlsfiles.py): include it in a nats-server config.\n" + block)
    return path


def _quoted(path: Path) -> str:
    return '"' + str(path.resolve()).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _hosts(given: Sequence[str]) -> list[Host]:
    found: list[Host] = [ipaddress.ip_address("127.0.0.1"), "localhost"]
    for host in given:
        try:
            address: Host = ipaddress.ip_address(host)
        except ValueError:
            address = host.lower()
        if address not in found:
            found.append(address)
    return found


def _load_or_make_ca(pair: Pair) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if pair.cert.exists() and pair.key.exists():
        cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise BadRequest(f"{pair.key}: not an ECDSA key")
        return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(pair, cert, key)
    return cert, key


def _issue(
    pair: Pair,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    common_name: str,
    hosts: list[Host],
    server: bool,
    days: int,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if hosts:
        names: list[x509.GeneralName] = [
            x509.DNSName(host) if isinstance(host, str) else x509.IPAddress(host) for host in hosts
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    _write(pair, builder.sign(ca_key, hashes.SHA256()), key)


def _write(pair: Pair, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Created 0600 (never readable by others, even for a moment), and tightened if it existed.
    fd = os.open(pair.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(pem)
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
