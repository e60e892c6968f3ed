"""How the functions reach the database in AWS: verified TLS, and patience with a paused Aurora.

With a CA bundle, the URL built from the database secret must refuse a server that does not
speak TLS, a certificate from another CA and a certificate for another host (the functions reach
Aurora over the internet: infra/README.md, `network`). A paused Aurora holds new connections
until it has resumed, so the connect timeout is a setting. The embedded PostgreSQL is built
without SSL, so the server side here is a relay in front of the test database (as RDS Proxy or
pgbouncer would be): it can answer PostgreSQL's SSLRequest with TLS and a certificate made by the
test, and hold a new connection for a while before serving it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import ssl
import struct
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from topup.aws_secrets import database_url_from_secret
from topup.database import DatabaseUnavailableError, connect, create_pool
from topup.settings import load_settings

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


def _certificate(subject: str, issuer: x509.Name | None, public_key: ec.EllipticCurvePublicKey):
    """A builder for a day-long certificate; no issuer: self-signed."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )


class Authority:
    """A certificate authority made for one test, and server certificates it signs."""

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (
            _certificate(name, None, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    def write(self, path: Path) -> str:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return str(path)

    def server_context(self, host: str, folder: Path) -> ssl.SSLContext:
        """A server's TLS context with a certificate for `host` signed by this authority."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            _certificate(host, self.cert.subject, key.public_key())
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_file, key_file = folder / f"{host}.pem", folder / f"{host}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        return context


class Relay:
    """Listens on 127.0.0.1 and relays PostgreSQL sessions to the test database: with a server
    context it answers SSLRequest with 'S' and TLS, without one with 'N' (a server without TLS);
    with a delay it holds each new connection that long first (as a resuming Aurora does)."""

    def __init__(self, database_url: str, tls: ssl.SSLContext | None, delay_s: float = 0.0) -> None:
        self.upstream = urlsplit(database_url)
        self.tls = tls
        self.delay_s = delay_s
        self.tls_sessions = 0
        self.port = 0

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        socket_dir = parse_qs(self.upstream.query).get("host", [self.upstream.hostname or ""])[0]
        port = self.upstream.port or 5432
        if socket_dir.startswith("/"):
            return await asyncio.open_unix_connection(f"{socket_dir}/.s.PGSQL.{port}")
        return await asyncio.open_connection(socket_dir, port)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.sleep(self.delay_s)
            startup = b""
            while not startup:  # SSLRequest / GSSENCRequest come before the startup message
                head = await reader.readexactly(8)
                length, code = struct.unpack("!ii", head)
                if code == SSL_REQUEST and self.tls is not None:
                    writer.write(b"S")
                    await writer.drain()
                    await writer.start_tls(self.tls)
                    self.tls_sessions += 1
                elif code in (SSL_REQUEST, GSSENC_REQUEST):
                    writer.write(b"N")
                    await writer.drain()
                else:
                    startup = head + await reader.readexactly(length - 8)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()  # the client gave up (a certificate it refused, TLS it demanded)
            return
        up_reader, up_writer = await self._open_upstream()
        up_writer.write(startup)
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        sink.close()


def secret_for(database_url: str, port: int, host: str = "localhost") -> dict[str, object]:
    """The database as an RDS secret names it, reached through the relay."""
    parts = urlsplit(database_url)
    return {
        "username": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or ""),
        "host": host,
        "port": port,
        "dbname": parts.path.lstrip("/"),
    }


@pytest.fixture
def authority() -> Authority:
    return Authority("TopUp test CA")


@pytest.fixture
async def tls_relay(
    database_url: str, authority: Authority, tmp_path: Path
) -> AsyncIterator[Relay]:
    async with Relay(database_url, authority.server_context("localhost", tmp_path)) as relay:
        yield relay


async def test_verified_tls_to_a_server_with_a_certificate_from_the_bundle(
    database_url, tls_relay, authority, tmp_path
):
    url = database_url_from_secret(
        secret_for(database_url, tls_relay.port), authority.write(tmp_path / "ca.pem")
    )
    assert "sslmode=verify-full" in url
    conn = await connect(url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM sites") == 0  # the migrated test database
    finally:
        await conn.close()
    assert tls_relay.tls_sessions == 1


async def test_a_certificate_from_another_authority_is_refused(database_url, tls_relay, tmp_path):
    other = Authority("Someone else's CA").write(tmp_path / "other.pem")
    url = database_url_from_secret(secret_for(database_url, tls_relay.port), other)
    with pytest.raises(DatabaseUnavailableError, match="certificate verify failed"):
        await connect(url)


async def test_a_certificate_for_another_host_is_refused(database_url, authority, tmp_path):
    context = authority.server_context("db.example.com", tmp_path)
    async with Relay(database_url, context) as relay:
        url = database_url_from_secret(
            secret_for(database_url, relay.port), authority.write(tmp_path / "ca.pem")
        )
        with pytest.raises(DatabaseUnavailableError, match="certificate verify failed"):
            await connect(url)


async def test_a_server_without_tls_is_refused(database_url, authority, tmp_path):
    async with Relay(database_url, tls=None) as relay:
        secret = secret_for(database_url, relay.port)
        plain = await connect(database_url_from_secret(secret))  # no bundle: the clear is fine
        await plain.close()
        url = database_url_from_secret(secret, authority.write(tmp_path / "ca.pem"))
        with pytest.raises(DatabaseUnavailableError, match="SSL"):
            await connect(url)
    assert relay.tls_sessions == 0


async def test_the_connect_timeout_outlasts_a_database_that_holds_new_connections(database_url):
    settings = load_settings({"TOPUP_DATABASE_CONNECT_TIMEOUT_S": "3"})
    assert settings.database_connect_timeout_s == 3
    async with Relay(database_url, tls=None, delay_s=1.0) as resuming:
        url = database_url_from_secret(secret_for(database_url, resuming.port))
        with pytest.raises(DatabaseUnavailableError, match="cannot connect"):
            await connect(url, connect_timeout_s=0.3)
        with pytest.raises(DatabaseUnavailableError, match="cannot connect"):
            await create_pool(url, connect_timeout_s=0.3)
        conn = await connect(url, connect_timeout_s=settings.database_connect_timeout_s)
        await conn.close()
        pool = await create_pool(url, connect_timeout_s=settings.database_connect_timeout_s)
        assert await pool.fetchval("SELECT 1") == 1
        await pool.close()


async def test_the_server_ends_a_pooled_session_left_idle(database_url, db):
    pool = await create_pool(database_url, idle_session_s=0.3)
    try:
        pid = await pool.fetchval("SELECT pg_backend_pid()")
        assert await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid) == 1
        await asyncio.sleep(1.0)
        assert await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid) == 0
        assert await pool.fetchval("SELECT 1") == 1  # a running loop notices and reconnects
    finally:
        await pool.close()


async def test_replacing_a_connection_the_server_ended_is_quiet(database_url):
    """What a thawed Lambda container does (lambda_adapter): the server ended the session while
    the event loop stood still; expiring the pool's connections replaces it without an error
    from closing the dead one."""
    faults: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: faults.append(context))
    pool = await create_pool(database_url)
    try:
        pid = await pool.fetchval("SELECT pg_backend_pid()")

        async def end_session() -> None:
            admin = await connect(database_url)
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
            await admin.close()

        # Another thread, so that this loop stands still meanwhile, as in a frozen container.
        ender = threading.Thread(target=asyncio.run, args=(end_session(),))
        ender.start()
        ender.join()
        await pool.expire_connections()
        assert await pool.fetchval("SELECT pg_backend_pid()") != pid
        await asyncio.sleep(0.2)
        gc.collect()
    finally:
        await pool.close()
    assert faults == []
