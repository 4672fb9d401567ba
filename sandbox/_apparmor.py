"""The AppArmor profile every container runs under where the kernel has AppArmor.

It follows the defaults container runtimes ship (docker-default): allow what the sandbox
already allows, and deny on top of it what a confined process has no business with even
inside its namespaces: mounting, writing to /proc and /sys knobs, kernel memory and core
patterns, ptrace of other profiles. Loaded with ``apparmor_parser -r`` by the shell
(`sandbox.host`); where AppArmor is absent the node says so instead (never silently).
"""

from __future__ import annotations

PROFILE_NAME = "edgenode-default"


def profile(name: str = PROFILE_NAME) -> str:
    """The profile's source text, for ``apparmor_parser``."""
    return f"""#include <tunables/global>

profile {name} flags=(attach_disconnected,mediate_deleted) {{
  #include <abstractions/base>

  network,
  capability,
  file,
  umount,
  signal (receive) peer=unconfined,
  signal (send,receive) peer={name},

  deny mount,
  deny pivot_root,
  deny @{{PROC}}/* w,
  deny @{{PROC}}/{{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9]*}}/** w,
  deny @{{PROC}}/sys/[^k]** w,
  deny @{{PROC}}/sys/kernel/{{?,??,[^s][^h][^m]**}} w,
  deny @{{PROC}}/sysrq-trigger rwklx,
  deny @{{PROC}}/kcore rwklx,
  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/kernel/security/** rwklx,

  ptrace (trace,read,tracedby,readby) peer={name},
}}
"""
