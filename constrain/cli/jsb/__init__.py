"""JSONSchemaBench evaluation: engines side by side on real-world schemas.

Modules, in data-flow order:

* :mod:`~constrain.cli.jsb.data` — the splits (one JSONL per split), test instances, and
  valid instances generated with hypothesis-jsonschema for schemas that have none;
* :mod:`~constrain.cli.jsb.engines` — one adapter per engine (constrain, llguidance,
  xgrammar, outlines-core) behind the same small interface, all fed the same token ids;
* :mod:`~constrain.cli.jsb.runner` — the MaskBench protocol for one (schema, engine);
* :mod:`~constrain.cli.jsb.model` — constrained generation with a Hugging Face model;
* :mod:`~constrain.cli.jsb.pool` — worker processes with a per-schema deadline, so a hang
  or a segfault in an engine costs one record, never the run;
* :mod:`~constrain.cli.jsb.store` — the append-only JSONL results file that makes runs resumable;
* :mod:`~constrain.cli.jsb.report` — the per-split summary, Markdown table and PNG plot.
"""
