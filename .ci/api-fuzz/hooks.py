"""Schemathesis hooks for autoseen: sign webhook bodies as WAHA does, and Meta's as Meta does.

The webhook checks an HMAC of the raw body (header `X-Webhook-Hmac`, SHA-512), so the body is serialized
here, once, and sent as those exact bytes with its signature. One in five cases whose generated headers
already carry an `X-Webhook-Hmac` (the document lists it as an optional header) goes out as generated, and
so do cases without the header that Schemathesis sends to test auth: those are the unsigned or wrongly
signed webhooks, which must be answered 401. Bodies for `/webhook/meta` get `X-Hub-Signature-256:
sha256=<HMAC-SHA256>` with the app secret instead, by the same rule.
"""

import hashlib
import hmac
import json
import os

import schemathesis
from schemathesis.core import NotSet

KEY = os.environ["AUTOSEEN_FUZZ_HMAC_KEY"].encode()
META_SECRET = os.environ["AUTOSEEN_FUZZ_META_SECRET"].encode()


# Webhook calls so far: every fifth with a generated signature header keeps it (the unsigned case).
calls = 0


@schemathesis.hook
def before_call(context, case, kwargs):
    global calls
    if not case.path.startswith("/webhook") or isinstance(case.body, NotSet):
        return
    calls += 1
    headers = {k.lower(): v for k, v in (case.headers or {}).items()}
    meta = case.path == "/webhook/meta"
    if ("x-hub-signature-256" if meta else "x-webhook-hmac") in headers and calls % 5 == 0:
        return
    raw = case.body if isinstance(case.body, bytes) else json.dumps(case.body, default=str).encode()
    kwargs["data"] = raw
    if meta:
        signature = hmac.new(META_SECRET, raw, hashlib.sha256).hexdigest()
        case.headers = {**(case.headers or {}), "X-Hub-Signature-256": f"sha256={signature}"}
        return
    case.headers = {
        **(case.headers or {}),
        "X-Webhook-Hmac": hmac.new(KEY, raw, hashlib.sha512).hexdigest(),
        "X-Webhook-Hmac-Algorithm": "sha512",
    }
