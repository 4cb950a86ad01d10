"""What the gateway comparisons share: free loopback ports, polling with a deadline, and autoseen started
on its own config folder with rules that mark at once."""

import os
import socket
import subprocess
import sys
import time
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
