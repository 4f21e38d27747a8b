import socket

from rh_sdk import ResultHandler


class NetProbe(ResultHandler):
    def handle(self, batch_id, results, metadata):
        host, port = self.config["host"], int(self.config["port"])
        try:
            with socket.create_connection((host, port), timeout=5) as conn:
                conn.sendall(b"ping")
                return {"answer": conn.recv(100).decode()}
        except OSError as exc:
            return {"answer": f"error: {exc}"}
