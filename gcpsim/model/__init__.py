"""gcpsim's state and state machines, apart from the JSON views (gcpsim.api).

Each module keeps its resources in its own section of `gcpsim.store.Store.data` and owns the
transitions of those resources (operations, their effects when done, background work).
"""
