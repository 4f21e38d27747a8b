import os

from core.result_handlers.base import ResultHandler


class Peek(ResultHandler):
    def handle(self, batch_id, results, metadata):
        with open("written-by-plugin.txt", "w") as f:
            f.write("scratch is writable")
        return {"cwd": os.getcwd(), "env": dict(os.environ), "listing": sorted(os.listdir("."))}
