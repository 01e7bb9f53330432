"""Workflow and activity inputs and outputs: everything that travels through Temporal.

Split by concern: `common` (references, the phase/outcome vocabulary, approvals), `policy` (the
release policy as a release carries it), `run`, `monitoring`, `sql`, `hooks` (activity I/O),
`release`, `dr`, `failover`, `locks` (workflow inputs, statuses and results).

Every model derives from `base.Payload`: unknown fields are ignored and there are no config
validators, so a newer or stricter `deploy.yaml` schema (stagecoach.config) never stops an
in-flight workflow from decoding its own input on continue-as-new, query or replay. The field
names and JSON shape are the recorded ones: renaming a field breaks recorded histories.
Pure: no I/O, importable from workflow code.
"""
