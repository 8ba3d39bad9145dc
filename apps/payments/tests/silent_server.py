"""A TCP server that accepts connections and never answers: what a provider or
mail server that hangs looks like to its client (a read timeout)."""

import socket
import threading


class SilentServer:
    def __init__(self):
        self._socket = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._held: list[socket.socket] = []
        self._stopped = threading.Event()
        self._socket.settimeout(0.1)
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        while not self._stopped.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self._held.append(connection)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stopped.set()
        self._thread.join(timeout=2)
        self._socket.close()
        for connection in self._held:
            connection.close()
