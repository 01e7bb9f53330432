"""One harness shared by tests/ and bench/ (imported as `testing.<module>`, never via sys.path).

- `paths`: the repository root, deploy.yaml, worker.py;
- `gcpsim`: gcpsim as its own process on free ports, its control surface and its traffic record;
- `cloudrun`, `cloudsql`: the real Google clients pointed at gcpsim, and what tests read with them;
- `stack`: gcpsim + Temporal dev server + `python worker.py`, each its own process (bench, chaos);
- `releases`: release inputs, in-process workers, starting, waiting, approving, running releases;
- `histories`: Temporal histories (activities, local activities, continue-as-new), recording
  and replaying them.
"""
