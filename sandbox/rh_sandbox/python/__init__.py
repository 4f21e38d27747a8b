"""The Python backends: a process per run (``process``, ``strict``) and the warm fork server
(``forkserver/``)."""
