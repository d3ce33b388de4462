"""Live push: the hub, one connection per socket, the WebSocket endpoint, the raw ASGI
handshake, admission of new sockets and the timer wheel."""
