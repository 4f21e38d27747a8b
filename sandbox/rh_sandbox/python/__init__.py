"""The Python backends: a cold process per run (``process``: basic, ``strict``: bwrap + cgroups +
seccomp + Landlock), the guest runtime they copy in (``runtime``, ``bytecode``), and the warm fork
server (``forkserver``)."""
