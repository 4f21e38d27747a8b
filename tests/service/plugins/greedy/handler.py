from core.result_handlers.base import ResultHandler


class Greedy(ResultHandler):
    def name(self):
        return "greedy"

    def handle(self, batch_id, results, metadata):
        return {"greedy.ran": True}
