from rh_sdk import ResultHandler


class NoopHandler(ResultHandler):
    """Does nothing: measures dispatch overhead."""

    def name(self) -> str:
        return "noop"

    def handle(self, batch_id, results, metadata):
        return True
