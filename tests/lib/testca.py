# SPDX-License-Identifier: LGPL-2.1-or-later
"""A certificate authority and server certificates made with openssl for
one test, in its temporary directory. Point SSL_CERT_FILE at the CA's PEM
and wsclient's https:// and wss:// verify against it alone."""

import os
import subprocess


def openssl(*args, env=None):
    p = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30, env=env)
    if p.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed: {p.stderr.strip()}")
    return p.stdout


def make_ca(dir):
    """(key, pem) of a new CA in dir."""
    key, pem = dir / "ca.key", dir / "ca.pem"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(pem),
            "-days", "2", "-subj", "/CN=multichat test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, pem


def make_server_cert(dir, ca, cn):
    """(pem, key) of an RSA server certificate for 127.0.0.1 and localhost
    signed by ca, subject CN=cn. RSA, so that no cipher suite is out of
    reach for lack of a matching key."""
    ca_key, ca_pem = ca
    key, csr, pem, ext = (dir / f"{cn}.key", dir / f"{cn}.csr", dir / f"{cn}.pem", dir / f"{cn}.ext")
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "extendedKeyUsage=serverAuth\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n")
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", f"/CN={cn}")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "1",
            "-extfile", str(ext), "-out", str(pem))
    return pem, key


def trust_only(ca):
    """Makes Python's default TLS context (and so wsclient) trust ca alone."""
    os.environ["SSL_CERT_FILE"] = str(ca[1])
    os.environ.pop("SSL_CERT_DIR", None)
