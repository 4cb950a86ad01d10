"""autoseen's Evolution and Green gateways beside their own Python clients: the same mark-read requests.

Usage: others.py <autoseen binary>. A recording fake serves both APIs on 127.0.0.1 (201 for Evolution's
markMessageAsRead, 200 {"setRead":true} for Green's readChat). evolutionapi 0.1.2 (`chat.mark_message_as_read`)
and whatsapp-api-client-python 0.0.55 (`marking.readChat`) mark a message each against it; then autoseen,
serving an Evolution instance and a Green instance with rules that mark at once, takes an authenticated
webhook for each same message and marks it. Method, path, the auth header and the JSON body must agree.
Exits non-zero, saying what differs, when anything does.
"""

import json
import sys
import tempfile
import time
import urllib.error
import urllib.request

import common

from evolutionapi.client import EvolutionClient
from evolutionapi.models.chat import ReadMessage
from whatsapp_api_client_python import API

EVOLUTION_INSTANCE = "sales"
EVOLUTION_KEY = "ci-evolution-instance-key-51c2"
EVOLUTION_TOKEN = "ci-evolution-webhook-token-7e90"
EVOLUTION_JID = "5511999990001@s.whatsapp.net"
EVOLUTION_ID = "3EB0C1SDKCOMPARE0001"

GREEN_INSTANCE = "1101000001"
GREEN_TOKEN = "ci-green-api-token-d41f"
GREEN_WEBHOOK = "ci-green-webhook-token-0a83"
GREEN_CHAT = "79001234568@c.us"
GREEN_ID = "BAE5C1SDKCOMPARE01"

def post(port, path, body, headers):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST")
    request.add_header("content-type", "application/json")
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def start_autoseen(binary, fake_port, work):
    sections = f"""[gateway]
default = "evolution"
sessions = {{ "{GREEN_INSTANCE}" = "green" }}

[evolution]
base_url = "http://127.0.0.1:{fake_port}"

[green]
api_url = "http://127.0.0.1:{fake_port}"
"""
    env = {
        "AUTOSEEN__EVOLUTION__TOKEN": EVOLUTION_TOKEN,
        "AUTOSEEN__EVOLUTION__API_KEY": EVOLUTION_KEY,
        "AUTOSEEN__GREEN__WEBHOOK_TOKEN": GREEN_WEBHOOK,
        "AUTOSEEN__GREEN__API_TOKEN": GREEN_TOKEN,
    }
    return common.start_autoseen(binary, work, sections, env)


def answer(path):
    """Evolution's markMessageAsRead answers 201; Green's readChat 200 {"setRead":true}."""
    if path.startswith("/chat/markMessageAsRead/"):
        return 201, b'{"message":"Read messages","read":"success"}'
    return 200, b'{"setRead":true}'


def compare(name, theirs, ours, keys, failures):
    for key in keys:
        if theirs[key] != ours[key]:
            failures.append(f"{name} {key}: the client sent {theirs[key]!r}, autoseen {ours[key]!r}")
    print(f"{name}: the client and autoseen both sent {ours['method']} {ours['path']} {json.dumps(ours['body'])}")


def main():
    binary = sys.argv[1]
    server, fake_port, recorded = common.recording_server(answer)
    base = f"http://127.0.0.1:{fake_port}"
    failures = []

    # The clients mark one message each.
    evolution = EvolutionClient(base_url=base, api_token="ci-global-key-unused")
    evolution.chat.mark_message_as_read(
        EVOLUTION_INSTANCE,
        [ReadMessage(remote_jid=EVOLUTION_JID, from_me=False, id=EVOLUTION_ID)],
        instance_token=EVOLUTION_KEY,
    )
    common.wait_for(lambda: len(recorded) == 1, "evolutionapi's request")
    green = API.GreenAPI(GREEN_INSTANCE, GREEN_TOKEN, host=base)
    green.marking.readChat(GREEN_CHAT, GREEN_ID)
    common.wait_for(lambda: len(recorded) == 2, "whatsapp-api-client-python's request")
    evolution_call, green_call = recorded[0], recorded[1]

    with tempfile.TemporaryDirectory() as work:
        process, port = start_autoseen(binary, fake_port, work)
        try:
            upsert = json.dumps({
                "event": "messages.upsert", "instance": EVOLUTION_INSTANCE,
                "data": {"key": {"remoteJid": EVOLUTION_JID, "fromMe": False, "id": EVOLUTION_ID},
                         "pushName": "Paula", "message": {"conversation": "oi"}, "messageType": "conversation",
                         "messageTimestamp": int(time.time())},
                "date_time": "2026-11-27T14:00:00.000Z", "apikey": None,
            }).encode()
            status = post(port, "/webhook/evolution", upsert, {"x-autoseen-token": EVOLUTION_TOKEN})
            if status != 200:
                failures.append(f"autoseen answered {status} to an authenticated Evolution event")
            common.wait_for(lambda: len(recorded) == 3, "autoseen's Evolution request")
            compare("evolution", evolution_call, recorded[2], ("method", "path", "apikey", "body"), failures)

            incoming = json.dumps({
                "typeWebhook": "incomingMessageReceived",
                "instanceData": {"idInstance": int(GREEN_INSTANCE), "wid": "79876543210@c.us", "typeInstance": "whatsapp"},
                "timestamp": int(time.time()), "idMessage": GREEN_ID,
                "senderData": {"chatId": GREEN_CHAT, "chatName": "Ivan", "sender": GREEN_CHAT, "senderName": "Ivan"},
                "messageData": {"typeMessage": "textMessage", "textMessageData": {"textMessage": "привет"}},
            }).encode()
            status = post(port, "/webhook/green", incoming, {"authorization": f"Bearer {GREEN_WEBHOOK}"})
            if status != 200:
                failures.append(f"autoseen answered {status} to an authenticated Green notification")
            common.wait_for(lambda: len(recorded) == 4, "autoseen's Green request")
            compare("green", green_call, recorded[3], ("method", "path", "authorization", "body"), failures)
        finally:
            process.terminate()
            process.wait(timeout=15)
    server.shutdown()
    if failures:
        sys.exit("gateway-sdks: differences:\n  " + "\n  ".join(failures))
    print("gateway-sdks: autoseen agrees with evolutionapi 0.1.2 and whatsapp-api-client-python 0.0.55")


if __name__ == "__main__":
    main()
