"""How the local backend pauses and limits a process tree: one module per mechanism, and the chooser.

| module    | mechanism                                  | needs                                               |
|-----------|--------------------------------------------|-----------------------------------------------------|
| v1        | cgroup v1 freezer, cpu, memory             | root (the v1 hierarchies writable)                  |
| v2        | cgroup.freeze, cpu.max, memory.max         | a writable v2 group (limits: delegating controller) |
| sigstop   | pause by SIGSTOP/SIGCONT of the whole tree | signalling the tree (its user, or root)             |
| dutycycle | CPU cap by duty-cycled SIGSTOP/SIGCONT     | signalling the tree                                 |
| rlimit    | memory cap by a lower soft RLIMIT_AS/DATA  | the tree's user, or root                            |

`chooser` picks one per capability (K2_CGROUP overrides it), `tree.LocalFaults` runs it for a target.
"""
