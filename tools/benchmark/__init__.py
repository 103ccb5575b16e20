"""``python -m tools.benchmark run|status|report``: the protocol runner's command.

The runner itself is ``tools/grid/`` (named for what it runs: the grid of methods x datasets x
seeds of a protocol), apart from ``bench/``, which times code; this package only keeps the
command name the README and the users' scripts use.
"""
