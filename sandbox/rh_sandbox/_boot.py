"""First code run inside a sandboxed Python child: stdlib only, before any plugin code.

Argument: one JSON object. Joins the run's cgroups, applies rlimits, fixes ``sys.path`` to the guest
runtime (the SDK and msgspec, nothing of the host's environment), then hands over to the guest runner.
"""

import json
import os
import resource
import sys

_RLIMITS = {
    "as": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "nofile": resource.RLIMIT_NOFILE,
    "fsize": resource.RLIMIT_FSIZE,
    "core": resource.RLIMIT_CORE,
    "nproc": resource.RLIMIT_NPROC,
}


def boot(args: dict) -> int:
    pid = str(os.getpid()).encode()
    for procs in args.get("cgroup_procs", ()):
        fd = os.open(procs, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)
    for name, (soft, hard) in args.get("rlimits", {}).items():
        resource.setrlimit(_RLIMITS[name], (soft, hard))
    sys.path[:0] = [args["site"]]
    sys.dont_write_bytecode = True
    from rh_sdk.runner import main

    return main(args["entry"], args["plugin_dir"], args.get("encoding", "msgpack"))


if __name__ == "__main__":
    sys.exit(boot(json.loads(sys.argv[1])))
