"""Handlers that end in each status, to check the fork server classifies exactly like the cold path."""

import sys
import time

from rh_sdk import ResultHandler


class Raises(ResultHandler):
    def handle(self, batch_id, results, metadata):
        raise RuntimeError("boom")


class Skips(ResultHandler):
    def enabled(self, metadata):
        return False

    def handle(self, batch_id, results, metadata):
        return True


class Hog(ResultHandler):
    def handle(self, batch_id, results, metadata):
        blocks = []
        while True:
            blocks.append(bytearray(16 << 20))


class Sleeps(ResultHandler):
    def handle(self, batch_id, results, metadata):
        time.sleep(60)


class Spins(ResultHandler):
    def handle(self, batch_id, results, metadata):
        while True:
            pass


class Floods(ResultHandler):
    def handle(self, batch_id, results, metadata):
        return {"blob": "x" * (4 << 20)}


class Exits(ResultHandler):
    def handle(self, batch_id, results, metadata):
        sys.stdout.flush()
        import os

        os._exit(3)
