"""gcpsim: a local simulator of the Google Cloud APIs Stagecoach uses, spoken to by the real
Google client libraries (Cloud Run Admin v2, Cloud SQL Admin v1, Cloud DNS v1, Cloud
Monitoring v3). It imports nothing of the product.

Layout (arrows point down; no cycles):
    __main__, cli/      `python -m gcpsim`: serve (cli.serve), control commands (cli.client,
                        cli.replica)
    app                 the FastAPI app: mounts every router of api/
    api/                one module-level router per API resource, with its JSON views:
                        run_services, run_jobs (+ run_json), sql_instances, sql_backups,
                        sql_operations (+ sql_common), dns, iam, health (service URLs),
                        control and outage (`/_sim/...`), monitoring (gRPC ListTimeSeries:
                        monitoring_query, monitoring_series, monitoring_instances,
                        monitoring_sql); handlers get the simulator via api.deps.SimDep
    model/              state and state machines in `Store.data`: run (+ run_spec, run_views,
                        run_queries), jobs (+ jobs_views), sql (+ sql_runtime, sql_replicas),
                        dns, outage, traffic, behavior, metrics (+ metrics_dist)
    pg/                 the embedded Postgres behind Cloud SQL: server, images, pitr,
                        replication, cluster, writer
    seed, seedconfig    seeding from deploy.yaml with gcpsim's own reader of it
    sim, store, faults, errors, guard, urls    the simulator object, persistence, faults,
                        error bodies, the loopback guard, service URLs

A new API resource: its state machine in model/<api>.py (state in its own `Store` section), its
routes and views in api/<api>_<resource>.py as a module-level `router`, mounted in app.py;
conformance tests through the real client in tests/conformance/test_gcpsim_<api>.py.
"""
