"""Forwards TCP connections from a loopback port to an upstream host:port.

usage: tcp_proxy.py LISTEN_PORT UPSTREAM_HOST:PORT [--tls DIR]

Killing the process cuts every connection at once (a broker that vanished);
starting it again on the same port brings the broker back. With --tls it
terminates TLS (a broker's TLS listener): it makes a private CA and a
certificate for 127.0.0.1 signed by it, and writes the CA to DIR/ca.pem.
"""
import asyncio, datetime, ipaddress, os, ssl, sys


def make_certs(dirname):
    """A CA and a server certificate for 127.0.0.1 (cryptography, from moto's deps)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("lakehose test CA")).issuer_name(name("lakehose test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)
    with open(os.path.join(dirname, "server.pem"), "wb") as f:
        f.write(pem(cert))
    with open(os.path.join(dirname, "server.key"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    tmp = os.path.join(dirname, "ca.pem.tmp")
    with open(tmp, "wb") as f:
        f.write(pem(ca))
    os.replace(tmp, os.path.join(dirname, "ca.pem"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(dirname, "server.pem"), os.path.join(dirname, "server.key"))
    return ctx


async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        w.close()


async def main(port, upstream, tls):
    host, uport = upstream.rsplit(":", 1)

    async def handle(cr, cw):
        try:
            ur, uw = await asyncio.open_connection(host, int(uport))
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, uw), pipe(ur, cw))

    server = await asyncio.start_server(handle, "127.0.0.1", port, reuse_address=True, ssl=tls)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    tls = make_certs(sys.argv[4]) if sys.argv[3:4] == ["--tls"] else None
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], tls))
