"""What runs inside the sandbox: stdlib only (plus the SDK and msgspec the guest runtime holds).

These files are never imported by the host to run: :class:`rh_sandbox.python.runtime.GuestRuntime`
copies them by path into the guest's site dir under in-guest names (``boot.py`` as ``_rh_boot.py``,
``confine.py`` as ``_rh_confine.py``, ``zygote.py`` as ``_rh_zygote.py``, ``forwarder.py`` as
``_rh_egress.py``), where nothing of rh_sandbox exists. The host does import ``confine`` (Landlock's
access bits and ABI probe), ``forwarder`` (the egress splice) and ``wire`` (frame headers), which is
safe because they import only the stdlib. ``tests/sandbox/guest/test_stdlib_only.py`` pins that.
"""
