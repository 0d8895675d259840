"""Test certificates made with the openssl command line: a CA and a server certificate.

    ca = CertAuthority.create(tmp_path / "ca")
    cert = ca.issue(tmp_path / "server", dns_names=["dns.dnsfilter.test"], ips=["127.0.0.1"])
    ...  # cert.key, cert.pem (leaf then CA), ca.pem

Keys are P-256, certificates valid for two days, and the extensions are those Python's strict
verification (VERIFY_X509_STRICT, on by default from Python 3.13) asks for: key identifiers,
basic constraints and key usage.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

_DAYS = "2"
_CA_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = {cn}
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""
_LEAF_EXTENSIONS = """\
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
subjectAltName = {sans}
"""


def find_openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise RuntimeError("openssl not installed: apt-get install openssl")
    return found


def _run(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        [find_openssl(), *args], cwd=cwd, capture_output=True, timeout=60, check=False
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")
        raise RuntimeError(f"openssl {args[0]} failed:\n{output}")


@dataclass(frozen=True)
class ServerCert:
    key: Path
    pem: Path  #: the certificate followed by its CA's


@dataclass(frozen=True)
class CertAuthority:
    directory: Path
    pem: Path
    key: Path

    @classmethod
    def create(cls, directory: Path, name: str = "dnsfilter test CA") -> Self:
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "ca.cnf"
        config.write_text(_CA_CONFIG.format(cn=name))
        _run(
            "req", "-x509", "-config", str(config), "-extensions", "v3_ca",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", _DAYS,
            cwd=directory,
        )  # fmt: skip
        return cls(directory, directory / "ca.pem", directory / "ca.key")

    def issue(
        self, directory: Path, dns_names: Sequence[str] = (), ips: Sequence[str] = ()
    ) -> ServerCert:
        """A server certificate for these names and addresses, signed by this CA."""
        directory.mkdir(parents=True, exist_ok=True)
        sans = ",".join([*(f"DNS:{n}" for n in dns_names), *(f"IP:{a}" for a in ips)])
        (directory / "leaf.ext").write_text(_LEAF_EXTENSIONS.format(sans=sans))
        common_name = dns_names[0] if dns_names else ips[0]
        _run(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={common_name}",
            cwd=directory,
        )  # fmt: skip
        _run(
            "x509", "-req", "-in", "server.csr", "-CA", str(self.pem), "-CAkey", str(self.key),
            "-set_serial", "2", "-days", _DAYS, "-extfile", "leaf.ext", "-out", "leaf.pem",
            cwd=directory,
        )  # fmt: skip
        chain = directory / "server.pem"
        chain.write_bytes((directory / "leaf.pem").read_bytes() + self.pem.read_bytes())
        return ServerCert(directory / "server.key", chain)
