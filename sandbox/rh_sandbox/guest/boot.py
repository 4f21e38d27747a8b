"""First code run inside a sandboxed Python child: stdlib only, before any plugin code.

Argument: one JSON object. Joins the run's cgroups, binds the egress forwarder's listeners when the
run has network grants, applies rlimits, Landlock and seccomp (strict level), fixes ``sys.path`` to
the guest runtime (the SDK and msgspec, nothing of the host's environment), then hands over to the
guest runner.
"""

import json
import os
import sys


def boot(args: dict) -> int:
    sys.path[:0] = [args["site"]]
    sys.dont_write_bytecode = True
    import _rh_confine as confine

    pid = str(os.getpid()).encode()
    for procs in args.get("cgroup_procs", ()):
        fd = os.open(procs, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)
    confine.join_cgroups(args.get("cgroup_fds", []))
    forwarder = None
    if args.get("egress"):  # network grants: bind each granted host:port on lo now, before plugin code
        import _rh_egress

        forwarder = _rh_egress.Forwarder(args["egress"])
        confine.drop_capabilities()  # CAP_NET_BIND_SERVICE (ports below 1024) was only for those binds
    confine.set_rlimits(args.get("rlimits", {}))
    if args.get("landlock_abi"):
        rules = [tuple(rule) for rule in args["landlock"]]
        confine.apply_landlock(rules, args["landlock_abi"], args.get("landlock_connect_ports"))
    if args.get("seccomp"):
        with open(args["seccomp"], "rb") as f:
            confine.load_seccomp(f.read())
    if forwarder is not None:
        # Landlock and seccomp bind the calling thread and the threads it starts later: the forwarder's
        # threads start only now, so plugin code can never borrow an unconfined thread.
        forwarder.start()
    from rh_sdk.runner import main

    return main(args["entry"], args["plugin_dir"], args.get("encoding", "msgpack"))


if __name__ == "__main__":
    sys.exit(boot(json.loads(sys.argv[1])))
