import sys

from rh_sdk import ResultHandler


class LogFloodHandler(ResultHandler):
    """Prints ``lines`` short lines on stderr: each becomes one log record of the outcome."""

    def name(self) -> str:
        return "log_flood"

    def handle(self, batch_id, results, metadata):
        sys.stderr.write("a\n" * int(self.config.get("lines", 100_000)))
        sys.stderr.flush()
        return True
