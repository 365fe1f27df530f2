#!/usr/bin/env python3
"""Send one RADIUS request with pyrad and print the verified reply as JSON.

Driven by tests/pyrad_client.rs: pyrad is an implementation the server shares no
code with, so a reply it accepts is one a third-party NAS accepts too.

    pyrad_client.py [connection options] auth --user U (--pap PW | --chap PW) ...
    pyrad_client.py [connection options] acct --status Start --user U --session-id S ...
    pyrad_client.py [connection options] status --port auth|acct

Output (stdout, one JSON object):
    {"code": 2, "code_name": "Access-Accept",
     "attributes": {"Session-Timeout": [3600], "Class": ["0x..."], ...},
     "verified": {"response_authenticator": true, "message_authenticator": true,
                  "message_authenticator_first": true}}

Octet values are printed as "0x" + hex. Exit status: 0 with a reply, 3 when no
valid reply came (pyrad drops replies that fail verification, so a bad
authenticator also ends here), 2 on a usage error.
"""

import argparse
import hashlib
import json
import os
import sys

import pyrad
import pyrad.packet
from pyrad.client import Client, Timeout
from pyrad.dictionary import Dictionary

HERE = os.path.dirname(os.path.abspath(__file__))

CODE_NAMES = {
    pyrad.packet.AccessAccept: "Access-Accept",
    pyrad.packet.AccessReject: "Access-Reject",
    pyrad.packet.AccessChallenge: "Access-Challenge",
    pyrad.packet.AccountingResponse: "Accounting-Response",
}

MESSAGE_AUTHENTICATOR = 80


def json_value(value):
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (int, str)):
        return value
    return str(value)


def attributes(reply):
    out = {}
    for key in reply.keys():
        name = key if isinstance(key, str) else repr(key)
        out[name] = [json_value(v) for v in reply[key]]
    return out


def send(client, request, signed_reply):
    """Send `request`, then check the reply once more through pyrad's public
    verification API, independently of the checks inside SendPacket."""
    try:
        reply = client.SendPacket(request)
    except Timeout:
        print(json.dumps({"error": "timeout"}))
        sys.exit(3)
    raw = reply.raw_packet
    verified = {
        "response_authenticator": request.VerifyReply(reply, raw, enforce_ma=signed_reply),
    }
    has_ma = reply.message_authenticator is not None
    verified["message_authenticator_present"] = has_ma
    if has_ma:
        verified["message_authenticator"] = reply.verify_message_authenticator(
            secret=client.secret,
            original_authenticator=request.authenticator,
            original_code=request.code,
        )
        # RouterOS 7.15+ and BlastRADIUS hardening expect it as the first attribute.
        verified["message_authenticator_first"] = len(raw) > 20 and raw[20] == MESSAGE_AUTHENTICATOR
    print(
        json.dumps(
            {
                "code": reply.code,
                "code_name": CODE_NAMES.get(reply.code, str(reply.code)),
                "attributes": attributes(reply),
                "verified": verified,
            },
            sort_keys=True,
        )
    )


def auth(client, args):
    request = client.CreateAuthPacket(code=pyrad.packet.AccessRequest)
    # BlastRADIUS (CVE-2024-3596): the server drops Access-Requests without it.
    request.add_message_authenticator()
    request["User-Name"] = args.user
    if args.pap is not None:
        request["User-Password"] = request.PwCrypt(args.pap)
    else:
        # RFC 1994 / RFC 2865 §2.2: MD5(ident || password || challenge). Without
        # CHAP-Challenge the Request Authenticator is the challenge.
        ident = os.urandom(1)
        if args.no_challenge:
            challenge = request.authenticator
        else:
            challenge = os.urandom(16)
            request["CHAP-Challenge"] = challenge
        digest = hashlib.md5(ident + args.chap.encode() + challenge).digest()
        request["CHAP-Password"] = ident + digest
    if args.mac:
        request["Calling-Station-Id"] = args.mac
    request["Called-Station-Id"] = "hotspot1"
    request["NAS-Identifier"] = "MikroTik"
    request["NAS-Port-Type"] = "Wireless-802.11"
    request["Service-Type"] = "Login-User"
    send(client, request, signed_reply=True)


def acct(client, args):
    request = client.CreateAcctPacket(code=pyrad.packet.AccountingRequest)
    if args.message_authenticator:
        request.add_message_authenticator()
    request["Acct-Status-Type"] = args.status
    request["User-Name"] = args.user
    request["Acct-Session-Id"] = args.session_id
    if args.mac:
        request["Calling-Station-Id"] = args.mac
    if args.framed_ip:
        request["Framed-IP-Address"] = args.framed_ip
    if args.class_hex:
        request["Class"] = bytes.fromhex(args.class_hex.removeprefix("0x"))
    request["Acct-Session-Time"] = args.session_time
    # RFC 2869 §5.1/5.2: 64-bit counters are split into octets and gigawords.
    request["Acct-Input-Octets"] = args.input & 0xFFFFFFFF
    request["Acct-Input-Gigawords"] = args.input >> 32
    request["Acct-Output-Octets"] = args.output & 0xFFFFFFFF
    request["Acct-Output-Gigawords"] = args.output >> 32
    if args.terminate_cause:
        request["Acct-Terminate-Cause"] = args.terminate_cause
    send(client, request, signed_reply=False)


def status(client, args):
    # RFC 5997 §3: Status-Server carries a Message-Authenticator (pyrad adds it).
    if args.port == "auth":
        request = client.CreateAuthPacket(code=pyrad.packet.StatusServer)
    else:
        request = client.CreateAcctPacket(code=pyrad.packet.StatusServer)
    send(client, request, signed_reply=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1")
    parser.add_argument("--auth-port", type=int, required=True)
    parser.add_argument("--acct-port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--dictionary", default=os.path.join(HERE, "dictionary.pyrad"))
    parser.add_argument("--timeout", type=float, default=2.0)
    sub = parser.add_subparsers(dest="command", required=True)

    a = sub.add_parser("auth")
    a.add_argument("--user", required=True)
    cred = a.add_mutually_exclusive_group(required=True)
    cred.add_argument("--pap")
    cred.add_argument("--chap")
    a.add_argument("--no-challenge", action="store_true")
    a.add_argument("--mac")

    c = sub.add_parser("acct")
    c.add_argument("--status", required=True, choices=["Start", "Interim-Update", "Stop"])
    c.add_argument("--user", required=True)
    c.add_argument("--session-id", required=True)
    c.add_argument("--mac")
    c.add_argument("--framed-ip")
    c.add_argument("--class-hex")
    c.add_argument("--session-time", type=int, default=0)
    c.add_argument("--input", type=int, default=0)
    c.add_argument("--output", type=int, default=0)
    c.add_argument("--terminate-cause")
    c.add_argument("--message-authenticator", action="store_true")

    s = sub.add_parser("status")
    s.add_argument("--port", choices=["auth", "acct"], required=True)

    args = parser.parse_args()
    client = Client(
        server=args.server,
        authport=args.auth_port,
        acctport=args.acct_port,
        secret=args.secret.encode(),
        dict=Dictionary(args.dictionary),
        # One send, no retries: a lost or unverifiable reply is a test failure,
        # not something to paper over.
        retries=1,
        timeout=args.timeout,
        # Access-Accept/Reject and Status-Server replies must be signed.
        enforce_ma=True,
    )
    {"auth": auth, "acct": acct, "status": status}[args.command](client, args)


if __name__ == "__main__":
    main()
