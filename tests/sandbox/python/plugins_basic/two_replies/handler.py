import os
import stat

from core.result_handlers.base import ResultHandler

from rh_sdk.protocol import Reply, encode_reply


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


class TwoReplies(ResultHandler):
    def handle(self, batch_id, results, metadata):
        os.write(reply_fd(), encode_reply(Reply(ran=True, ok=True, output={"forged": True})))
        return True  # the runner writes the second reply
