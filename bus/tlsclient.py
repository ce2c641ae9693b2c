"""The client side of TLS to NATS: options, the `ssl.SSLContext` built from them, and what a
failed handshake means in words.

Every component and the CLI take the same three options, `--tls-ca`, `--tls-cert` and
`--tls-key` (or STEER_TLS_CA, STEER_TLS_CERT, STEER_TLS_KEY). Any of them, or a `tls://` URL,
asks for TLS: the connection is then refused unless the server speaks TLS, since nats-py would
otherwise carry on in plain text with a server that does not offer it. The CA verifies the
server's certificate (without one, the system's CAs do); the certificate and key authenticate
this client to a server whose `tls {}` block says `verify: true`.
"""

from __future__ import annotations

import argparse
import os
import ssl
from dataclasses import dataclass

from bus.errors import BadRequest

ENV_CA = "STEER_TLS_CA"
ENV_CERT = "STEER_TLS_CERT"
ENV_KEY = "STEER_TLS_KEY"
TLS_SCHEME = "tls://"
HINT_CA = "give the CA that signed the server's certificate with --tls-ca or STEER_TLS_CA"
HINT_CERT = "the server requires a client certificate: give one with --tls-cert and --tls-key"


@dataclass(frozen=True)
class TlsOptions:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    hostname: str | None = None  # the name to verify the server's certificate against, if not the URL's

    @property
    def given(self) -> bool:
        return bool(self.ca_file or self.cert_file or self.key_file)


def from_env() -> TlsOptions:
    return TlsOptions(os.environ.get(ENV_CA), os.environ.get(ENV_CERT), os.environ.get(ENV_KEY))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--tls-ca`, `--tls-cert` and `--tls-key` for a service, defaulting to the environment."""
    env = os.environ.get
    parser.add_argument("--tls-ca", default=env(ENV_CA), help="CA file verifying the NATS servers")
    parser.add_argument("--tls-cert", default=env(ENV_CERT), help="client certificate file for NATS")
    parser.add_argument("--tls-key", default=env(ENV_KEY), help="key file of the client certificate")


def from_args(args: argparse.Namespace) -> TlsOptions:
    return TlsOptions(args.tls_ca, args.tls_cert, args.tls_key)


def wanted(options: TlsOptions, urls: list[str]) -> bool:
    """Whether this connection must be TLS: options given, or any URL says `tls://`."""
    return options.given or any(url.startswith(TLS_SCHEME) for url in urls)


def context(options: TlsOptions) -> ssl.SSLContext:
    """A client context that verifies the server (against `ca_file`, else the system's CAs) and
    presents the client certificate when one is given; BadRequest naming a file that will not do."""
    if bool(options.cert_file) != bool(options.key_file):
        raise BadRequest("--tls-cert and --tls-key go together: give both or neither")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=options.ca_file)
    except (OSError, ssl.SSLError) as err:
        raise BadRequest(f"cannot use {options.ca_file} as a TLS CA: {_reason(err)}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if options.cert_file and options.key_file:
        try:
            ctx.load_cert_chain(options.cert_file, options.key_file)
        except (OSError, ssl.SSLError) as err:
            raise BadRequest(
                f"cannot use {options.cert_file} and {options.key_file} as a TLS client certificate: "
                f"{_reason(err)}"
            ) from None
    return ctx


def describe(err: BaseException) -> str | None:
    """What a TLS failure means, with what to do about it; None for errors that are not TLS's."""
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed ({err.verify_message}): {HINT_CA}"
    if isinstance(err, ssl.SSLError):
        reason = _reason(err)
        if "CERTIFICATE_REQUIRED" in reason.upper() or "BAD_CERTIFICATE" in reason.upper():
            return f"TLS handshake refused by the server ({reason}): {HINT_CERT}"
        return f"TLS handshake failed: {reason}"
    return None


def explain(err: BaseException, *, asked: bool, client_cert: bool) -> str | None:
    """`describe`; for a client that did not ask for TLS, that the server demands it; and for
    one without a certificate whose link broke in the handshake, the likely reason (with TLS
    1.3 the server's "certificate required" alert may arrive after the client wrote and found
    the connection closed)."""
    said = describe(err)
    if said is not None and not asked:
        return f"the server requires TLS (use a tls:// URL and --tls-ca); {said}"
    if said is None and asked and not client_cert and isinstance(err, ConnectionError):
        return f"the server closed the TLS connection ({_reason(err)}); {HINT_CERT}"
    return said


def cannot_cure(err: BaseException) -> bool:
    """Whether waiting cannot mend this failure (a certificate mismatch), as opposed to a link
    that broke during the handshake."""
    return isinstance(err, ssl.SSLError) and not isinstance(err, ssl.SSLEOFError | ssl.SSLZeroReturnError)


def _reason(err: BaseException) -> str:
    if isinstance(err, ssl.SSLError) and err.reason:
        return str(err.reason)
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__
