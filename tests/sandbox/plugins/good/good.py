"""A well-behaved handler: must succeed right after every hostile one."""

from rh_sdk import ResultHandler


class Good(ResultHandler):
    def handle(self, batch_id, results, metadata):
        return {"count": len(results), "version": self.config.get("expect", "original")}
