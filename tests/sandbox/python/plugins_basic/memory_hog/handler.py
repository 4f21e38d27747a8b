from core.result_handlers.base import ResultHandler


class Hog(ResultHandler):
    def handle(self, batch_id, results, metadata):
        hoard = []
        while True:
            hoard.append(b"x" * (8 * 1024 * 1024))  # written, so resident, not only reserved
