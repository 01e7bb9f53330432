"""gcpsim's HTTP surface: one module-level FastAPI router per API resource.

Handlers receive the simulator through `gcpsim.api.deps.SimDep` (the `Sim` on
`app.state.sim`); state, state machines and operations live in `gcpsim.model`, the JSON views
next to the routes that serve them. `gcpsim.app.create_app` mounts every router.
"""
