"""The peers of ``make bench`` (experiment P): the idiomatic Socket.IO chat app on Node and on
python-socketio, each as N processes sharing one Redis behind the project's nginx template, run
against by the same load generator (``loadtests``, ``client="socketio"``).

``python -m bench.peers --kind node|python`` tries one with a short load.
"""

from bench.peers.install import ensure_node_peer, ensure_python_peer
from bench.peers.stack import NodePeer, PeerKind, PeerProcess, PeerStack, PythonPeer, peer_stack

__all__ = [
    "NodePeer",
    "PeerKind",
    "PeerProcess",
    "PeerStack",
    "PythonPeer",
    "ensure_node_peer",
    "ensure_python_peer",
    "peer_stack",
]
