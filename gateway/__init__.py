"""The WebSocket gateway: sockets, identity, rooms, limits, publishing and local fan-out."""
