"""How FairFleet's Serve replicas run, the same for the retriever and for its floor
(``serve/echo.py``), so that the floor stays Serve's best on the settings the retriever has.

The user code runs on the replica's own event loop, not on a second loop in a thread of its own
(Serve's default). A request then goes from the HTTP server to the handler and back without
crossing threads: each crossing is a wake-up of the other loop and a GIL hand-off, and a handler
that awaits (the retriever waits for its batch) pays them again on every resumption. Measured at
concurrency 16 on 2 cores (HAProxy, wrk, 20K items): the retriever served 1,984 and 2,097 q/s
against 1,658 and 1,449 with the default, the floor 3,468 and 3,664 against 2,538 and 3,361.
The price: code that blocks the loop also stalls Serve's own work in the replica (health checks,
the HTTP server), so nothing blocking runs there for long: a batch is searched in a thread,
and only a request alone in the replica is searched on the loop."""

# Read by Serve when the replica's process starts: an environment variable of that process only.
REPLICA_ACTOR_OPTIONS = {
    "num_cpus": 0,
    "runtime_env": {"env_vars": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}},
}
