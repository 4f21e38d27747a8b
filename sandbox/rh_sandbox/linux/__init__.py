"""Host-side Linux primitives the backends are built from: bubblewrap command lines, cgroup v1,
seccomp filters, Landlock and seccomp as this machine supports them, the guest's fixed layout, and
the per-group sandbox uids."""
