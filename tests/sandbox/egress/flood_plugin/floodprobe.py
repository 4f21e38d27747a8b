"""A granted plugin that floods its run's egress broker, then makes one good connection."""

import socket
import time

from rh_sdk import ResultHandler

BROKER = "/run/rh-egress/egress.sock"


class Flood(ResultHandler):
    """config: count (connections opened on the broker socket, none sending its header), target [host, port].

    Returns how many the broker turned away at once, how many it admitted (kept open, silent, until the
    flood ends) and what the good connection afterwards got back."""

    def handle(self, batch_id, results, metadata):
        held, turned_away, other = [], 0, []
        for _ in range(self.config["count"]):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(0.3)
            try:
                conn.connect(BROKER)
                answer = conn.recv(200)
            except TimeoutError:
                held.append(conn)  # admitted: the broker waits for its header
                continue
            except OSError as exc:
                other.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                continue
            if answer.startswith(b"NO "):
                turned_away += 1
            else:
                other.append(answer.decode(errors="replace"))
            conn.close()
        for conn in held:
            conn.close()
        time.sleep(0.3)  # the broker's threads see the held connections end
        host, port = self.config["target"]
        try:
            with socket.create_connection((host, port), timeout=5) as conn:
                conn.sendall(b"ping")
                good = conn.recv(100).decode()
        except OSError as exc:
            good = f"error:{type(exc).__name__}:{exc}"
        return {"held": len(held), "turned_away": turned_away, "other": other[:5], "good": good}
