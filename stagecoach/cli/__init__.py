"""The Stagecoach command line (`stagecoach ...`, `python starter.py ...`).

`main` assembles the typer app from one module per command group; `app` owns exit codes, errors,
the Temporal client and conflicts; `follow` is the one status follower; `render` and `render_dr`
are the views. Nothing here is imported by workflows, activities or gcpsim.
"""
