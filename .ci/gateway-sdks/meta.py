"""autoseen's Meta gateway beside pywa: the same mark-read request, the same verdict on signatures.

Usage: meta.py <autoseen binary>. A recording fake Graph API runs on 127.0.0.1; pywa marks a message read
against it, then autoseen (served with a Meta session, rules that mark at once) takes a signed webhook for the
same message id and marks it. The two recorded requests must agree. Then a set of right, wrong and missing
signatures goes to pywa.utils.webhook_updates_validator and to autoseen's /webhook/meta: the verdicts must be
the same. Exits non-zero, saying what differs, when anything does.
"""

import hashlib
import hmac
import json
import sys
import tempfile
import urllib.error
import urllib.request

import common

import pywa
from pywa import WhatsApp
from pywa.utils import webhook_updates_validator

NUMBER = "730011223344551"
TOKEN = "ci-meta-access-token-5d2e9b"
SECRET = "ci-meta-app-secret-81f0c4a7"
MESSAGE = "wamid.HBgNNTUxMTk4NzY1MDAwMRUCABIYFDNBQ0ktUFlXQS1DT01QQVJFAA=="

def post(port, body, signature):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhook/meta", data=body, method="POST"
    )
    request.add_header("content-type", "application/json")
    if signature is not None:
        request.add_header("x-hub-signature-256", signature)
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def webhook_body(message_id):
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "889900112233445", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550109999", "phone_number_id": NUMBER},
                "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5511987650001"}],
                "messages": [{"from": "5511987650001", "id": message_id, "timestamp": "1764000000",
                              "type": "text", "text": {"body": "oi"}}],
            }}]}],
        },
        indent=1,
    ).encode()


def start_autoseen(binary, graph_port, work):
    sections = f"""[gateway]
default = "meta"

[meta]
base_url = "http://127.0.0.1:{graph_port}"
api_version = "v26.0"
"""
    env = {"AUTOSEEN__META__APP_SECRET": SECRET, "AUTOSEEN__META__ACCESS_TOKEN": TOKEN}
    return common.start_autoseen(binary, work, sections, env)


def main():
    binary = sys.argv[1]
    server, graph_port, recorded = common.recording_server(lambda path: (200, b'{"success":true}'))
    failures = []

    # 1. pywa marks the message read.
    wa = WhatsApp(phone_id=NUMBER, token=TOKEN)
    wa.api._session.base_url = f"http://127.0.0.1:{graph_port}/v26.0"
    wa.mark_message_as_read(MESSAGE)
    common.wait_for(lambda: len(recorded) == 1, "pywa's request")

    with tempfile.TemporaryDirectory() as work:
        process, port = start_autoseen(binary, graph_port, work)
        try:
            # 2. autoseen takes a signed webhook for the same message and marks it.
            body = webhook_body(MESSAGE)
            right = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            status = post(port, body, right)
            if status != 200:
                failures.append(f"autoseen answered {status} to a rightly signed body")
            common.wait_for(lambda: len(recorded) == 2, "autoseen's request")
            pywa_call, ours = recorded
            for key in ("method", "path", "authorization", "body"):
                if pywa_call[key] != ours[key]:
                    failures.append(f"{key}: pywa sent {pywa_call[key]!r}, autoseen {ours[key]!r}")
            print(f"mark-read: pywa and autoseen both sent {ours['method']} {ours['path']} {json.dumps(ours['body'])}")

            # 3. Signatures: pywa's validator and autoseen agree on each.
            other = webhook_body("wamid.CI-SIGNATURES")
            digest = hmac.new(SECRET.encode(), other, hashlib.sha256).hexdigest()
            compact = json.dumps(json.loads(other), separators=(",", ":")).encode()
            cases = [
                ("right", other, "sha256=" + digest),
                ("right, without the prefix", other, digest),
                ("missing", other, None),
                ("empty", other, ""),
                ("prefix only", other, "sha256="),
                ("wrong key", other, "sha256=" + hmac.new(b"another-secret-000000", other, hashlib.sha256).hexdigest()),
                ("upper-case hex", other, "sha256=" + digest.upper()),
                ("truncated", other, "sha256=" + digest[:-2]),
                ("sha1 of the body", other, "sha256=" + hmac.new(SECRET.encode(), other, hashlib.sha1).hexdigest()),
                ("body re-serialised after signing", compact, "sha256=" + digest),
            ]
            for name, payload, signature in cases:
                pywa_accepts = signature is not None and webhook_updates_validator(SECRET, payload, signature)
                status = post(port, payload, signature)
                ours_accepts = status == 200
                if status not in (200, 401):
                    failures.append(f"{name}: autoseen answered {status}")
                verdict = "accepted" if ours_accepts else "refused"
                print(f"signature {name}: pywa {'accepts' if pywa_accepts else 'refuses'}, autoseen {verdict}")
                if pywa_accepts != ours_accepts:
                    failures.append(f"signature {name}: pywa accepts={pywa_accepts}, autoseen answered {status}")
            if not any(c[0] == "right" for c in cases) or not any(c[2] is None for c in cases):
                failures.append("the signature cases lost a right or a missing signature")
        finally:
            process.terminate()
            process.wait(timeout=15)
    server.shutdown()
    if failures:
        sys.exit("gateway-sdks: differences:\n  " + "\n  ".join(failures))
    print(f"gateway-sdks: autoseen agrees with pywa {pywa.__version__}")


if __name__ == "__main__":
    main()
