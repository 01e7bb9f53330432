"""The `python -m gcpsim` command line: `serve` (the server) and `client` (the control
commands); `gcpsim.__main__` dispatches between them."""
