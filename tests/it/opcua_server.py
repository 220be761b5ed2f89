#!/usr/bin/env python3
"""A real OPC UA server for the gateway's integration tests (Python `asyncua`, an implementation
independent of the gateway's Rust client).

Endpoints: security None and Basic256Sha256 Sign / SignAndEncrypt (server certificate generated
once in --dir and reused across restarts, so a client that trusts it keeps trusting it).
Users: anonymous, or --user/--password (anything else is refused with BadUserAccessDenied).

Nodes (namespace of --ns-uri, index 2):
  ns=2;s=Line1.Pieces   UInt32 counter n = --start, --start+1, … every --period seconds, each
                        written with SOURCE timestamp base_ms + n*1000 (--base-ms), so a client
                        that stores the source timestamp is told apart from one using its clock
  ns=2;s=Line1.Power    Double 10 + n/10, same source timestamp
  ns=2;i=5001           Double 50.0 (a numeric node id), no source timestamp (server time only)
  ns=2;s=Line1.Broken   Double with status BadSensorFailure
  ns=2;s=Line1.Name     String "line 1" (not a number)

--refuse-subscriptions: every CreateSubscription is answered BadTooManySubscriptions (an
embedded server with no subscription to give), so a client must read instead.

Prints `READY <port>` on stdout once it listens.
"""

import argparse
import asyncio
import datetime
import ipaddress
import logging
import sys
from pathlib import Path

from asyncua import Server, ua
from asyncua.crypto.cert_gen import generate_private_key, generate_self_signed_app_certificate, dump_private_key_as_pem
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_session import InternalSession
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

APP_URI = "urn:energy-gateway:test:opcua-server"


class Users(UserManager):
    def __init__(self, user, password):
        self.user = user
        self.password = password

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if self.user is None:
            return User(role=UserRole.User)
        if certificate is not None and username is None:
            return User(role=UserRole.User)
        if username == self.user and password == self.password:
            return User(role=UserRole.User)
        return None  # BadUserAccessDenied


def ensure_cert(d: Path):
    key_file, cert_file = d / "server_key.pem", d / "server_cert.der"
    if key_file.is_file() and cert_file.is_file():
        return key_file, cert_file
    key = generate_private_key()
    key_file.write_bytes(dump_private_key_as_pem(key))
    sans = [
        x509.UniformResourceIdentifier(APP_URI),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = generate_self_signed_app_certificate(
        key, "energy-gateway test server", {}, sans,
        extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], days=365,
    )
    cert_file.write_bytes(cert.public_bytes(encoding=serialization.Encoding.DER))
    return key_file, cert_file


def ts(ms):
    return datetime.datetime.fromtimestamp(ms / 1000.0, tz=datetime.timezone.utc)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--base-ms", type=int, required=True)
    p.add_argument("--period", type=float, default=0.2)
    p.add_argument("--refuse-subscriptions", action="store_true")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if a.refuse_subscriptions:
        async def no_subscription(self, *args, **kwargs):
            raise ua.uaerrors.BadTooManySubscriptions()
        InternalSession.create_subscription = no_subscription

    a.dir.mkdir(parents=True, exist_ok=True)
    key_file, cert_file = ensure_cert(a.dir)
    server = Server(user_manager=Users(a.user, a.password))
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{a.port}/")
    server.set_server_name("energy-gateway test server")
    await server.set_application_uri(APP_URI)
    server.set_security_policy([
        ua.SecurityPolicyType.NoSecurity,
        ua.SecurityPolicyType.Basic256Sha256_Sign,
        ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ])
    tokens = [ua.UserNameIdentityToken, ua.X509IdentityToken]
    if a.user is None:
        tokens.insert(0, ua.AnonymousIdentityToken)
    server.set_identity_tokens(tokens)
    await server.load_certificate(str(cert_file))
    await server.load_private_key(str(key_file))

    idx = await server.register_namespace("urn:energy-gateway:test:line1")
    objects = server.nodes.objects
    line = await objects.add_object(ua.NodeId("Line1", idx), "Line1")
    n = a.start
    pieces = await line.add_variable(ua.NodeId("Line1.Pieces", idx), "Pieces", ua.Variant(n, ua.VariantType.UInt32))
    power = await line.add_variable(ua.NodeId("Line1.Power", idx), "Power", 0.0)
    numeric = await line.add_variable(ua.NodeId(5001, idx), "Frequency", 50.0)
    broken = await line.add_variable(ua.NodeId("Line1.Broken", idx), "Broken", 0.0)
    name = await line.add_variable(ua.NodeId("Line1.Name", idx), "Name", "line 1")

    async with server:
        await broken.write_value(ua.DataValue(
            Value=ua.Variant(0.0, ua.VariantType.Double),
            StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure),
            SourceTimestamp=ts(a.base_ms), ServerTimestamp=ts(a.base_ms),
        ))
        # No source timestamp on this one: a client falls back to the server timestamp.
        await numeric.write_value(ua.DataValue(Value=ua.Variant(50.0, ua.VariantType.Double)))
        print(f"READY {a.port}", flush=True)
        while True:
            src = ts(a.base_ms + n * 1000)
            await pieces.write_value(ua.DataValue(
                Value=ua.Variant(n, ua.VariantType.UInt32), SourceTimestamp=src,
                ServerTimestamp=datetime.datetime.now(datetime.timezone.utc)))
            await power.write_value(ua.DataValue(
                Value=ua.Variant(10.0 + n / 10.0, ua.VariantType.Double), SourceTimestamp=src,
                ServerTimestamp=datetime.datetime.now(datetime.timezone.utc)))
            n += 1
            await asyncio.sleep(a.period)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
