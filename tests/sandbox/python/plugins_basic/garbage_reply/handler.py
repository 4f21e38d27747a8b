import os
import stat

from core.result_handlers.base import ResultHandler


def reply_fd():
    taken = {os.fstat(0).st_ino, os.fstat(2).st_ino}
    for fd in range(3, 64):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if stat.S_ISFIFO(st.st_mode) and st.st_ino not in taken:
            return fd
    raise RuntimeError("no reply fd found")


class Garbage(ResultHandler):
    def handle(self, batch_id, results, metadata):
        os.write(reply_fd(), b"\xc1\xc1 this is not msgpack \xff")
        os._exit(0)
