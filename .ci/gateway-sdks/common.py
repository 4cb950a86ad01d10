"""What the gateway comparisons share: free loopback ports, polling with a deadline, and autoseen started
on its own config folder with rules that mark at once."""

import http.server
import json
import os
import socket
import subprocess
import sys
import time
import threading
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what, timeout=30):
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_autoseen(binary, work, sections, env):
    """Serves autoseen on a free port with `sections` (TOML after [server]) and `env`; returns (process, port)."""
    port = free_port()
    config = os.path.join(work, "config")
    os.makedirs(config)
    with open(os.path.join(config, "autoseen.toml"), "w") as f:
        f.write(f'[server]\nlisten = "127.0.0.1:{port}"\n\n{sections}\n'
                f'[store]\nurl = "sqlite:{work}/autoseen.db"\n\n[log]\nlevel = "warn"\n')
    with open(os.path.join(config, "rules.toml"), "w") as f:
        f.write('[defaults]\naction = "seen"\ndelay = "0s"\n')
    log_path = os.path.join(work, "autoseen.log")
    log = open(log_path, "w")
    process = subprocess.Popen([binary, "serve", "--config", config], env=dict(os.environ, **env),
                               stdout=log, stderr=log)

    def ready():
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
            return True
        except Exception:
            if process.poll() is not None:
                sys.exit("autoseen exited:\n" + open(log_path).read())
            return False

    wait_for(ready, "autoseen to be ready")
    return process, port


def recording_server(answer):
    """A fake API on a free loopback port that records every POST (method, path, the Authorization and apikey
    headers, the JSON body) and answers what `answer(path)` returns: (status, body bytes). Returns the server,
    its port and the list the requests are recorded in."""
    recorded = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            recorded.append({
                "method": "POST",
                "path": self.path,
                "authorization": self.headers.get("authorization"),
                "apikey": self.headers.get("apikey"),
                "body": json.loads(body or b"null"),
            })
            status, reply = answer(self.path)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port, recorded
