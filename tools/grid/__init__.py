"""The protocol runner (the accuracy grid), run as ``python -m tools.benchmark run|status|report``.

Modules, one job each:

- ``methods``: the methods, discovered from ``scripts/*/method.sh``;
- ``grid``: what to run (protocols x methods x datasets x seeds [x shots]), from flags or YAML;
- ``plan``: the grid turned into runs by the scripts' own plan mode (``SEMPT_PLAN=1``), with
  their dependencies; plans are stored under ``<output>/benchmark/plans/``;
- ``events``: the append-only event log ``<output>/benchmark/events.jsonl``;
- ``execute``: one run = one script invocation, with its console log and events;
- ``state``: done / running / queued / failed / pending / stale of every run (``dassl/run_record.py``);
- ``local`` and ``slurm``: the two launchers; ``progress``: the live progress bar;
- ``published``: the registry of published numbers (``results/published/``);
- ``report`` and ``plots``: the result tables and figures;
- ``cli``: the command line.
"""
