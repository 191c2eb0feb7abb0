"""Installing the peers where missing: Node and the pinned npm tree, the python-socketio venv.

Each install is skipped when a marker says it matches the pins, so a test or a bench run pays
for it once per machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from stack.processes import ROOT

PEERS = ROOT / "bench" / "peers"
NODE_DIR = PEERS / "node"
PYTHON_DIR = PEERS / "python"
PYTHON_VENV = ROOT / ".venv" / "peer-python"  # inside .venv: ignored by git, removed by make clean
NODE_MARKER = NODE_DIR / "node_modules" / ".peer-installed"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def node_binary() -> str | None:
    """The ``node`` on PATH, if any."""
    return shutil.which("node")


def _node_fingerprint() -> str:
    """What ``node_modules`` must match: the lockfile and the Node major version (native
    add-ons such as bufferutil are built for one ABI)."""
    node = node_binary()
    assert node is not None
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = version.stdout.strip().split(".")[0]
    lock = hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()
    return f"{lock} node {major}\n"


def ensure_node_peer() -> None:
    """Install node and npm with apt where missing, then ``npm ci`` in ``bench/peers/node``
    when ``node_modules`` is missing or was installed from another lockfile."""
    if node_binary() is None or shutil.which("npm") is None:
        _say("installing nodejs and npm (apt)…")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nodejs", "npm"], check=True, env=env)
    want = _node_fingerprint()
    if NODE_MARKER.exists() and NODE_MARKER.read_text() == want:
        return
    _say("installing the Socket.IO peer (npm ci in bench/peers/node)…")
    npm = shutil.which("npm")
    assert npm is not None
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True
    )
    NODE_MARKER.write_text(want)


def ensure_python_peer() -> None:
    """Create ``.venv/peer-python`` with the python-socketio peer's pinned requirements (once)."""
    marker = PYTHON_VENV / ".installed"
    requirements = PYTHON_DIR / "requirements.txt"
    if marker.exists() and marker.read_text() == requirements.read_text():
        return
    _say("creating the python-socketio peer's virtualenv (.venv/peer-python)…")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PYTHON_VENV)], check=True)
    pip = [str(PYTHON_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-r", str(requirements)], check=True)
    marker.write_text(requirements.read_text())


def python_peer_binary() -> Path:
    """The interpreter of the python-socketio peer's virtualenv."""
    return PYTHON_VENV / "bin" / "python"
