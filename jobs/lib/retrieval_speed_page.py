"""The results page of ``jobs/bench_retrieval.py``: queries per second, p50 and p99 of each path,
and the ratios between paths measured in the same run."""

from __future__ import annotations

from cluster.storage import Storage
from jobs.lib.plotting import pyplot, save_figure
from jobs.lib.results_page import ResultsPage, markdown_table

PATHS = {
    "raw": "(a) raw FAISS, one index, one thread",
    "fair": "(b) fair search and its report, no HTTP",
    "http": "(c) HTTP via Serve",
    "floor": "(d) Serve's floor (echo, no retrieval)",
}


def ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"


def _ratio(a: float, b: float) -> str:
    """a / b to two decimals, or two significant digits below 0.1 (so that a small ratio is not shown as 0)."""
    if not (a and b):
        return "–"
    return f"{a / b:.2f}" if a / b >= 0.1 else f"{a / b:.2g}"


def _answered(row: dict) -> bool:
    """A level whose window saw no answer has no latency to show: its zeros are not a measurement."""
    return row["qps"] > 0


def speed_page(result: dict, command: str) -> ResultsPage:
    """``result``: what ``bench_retrieval.measure`` returns (settings, rows per path, recall, loads)."""
    s = result["settings"]
    index = s["index"]
    shown = ", ".join(f"{key} {value}" for key, value in index.items() if key != "kind")
    generator = (f"wrk, {s['duration']:g} s per level after a 2 s warm-up" if s["load"] == "wrk"
                 else f"the in-process Python generator (httpx), {s['http_requests']:,} requests per level")
    loads = result.get("loads")
    where = {"replica": "searched in the Serve replica's process", "shard_actors": "one shard actor each"}
    intro = [
        f"{s['items']:,} synthetic items × dim {s['dim']} in {s['shards']} partitions "
        f"({where[s.get('search_in', 'shard_actors')]}), K = {s['k']}; index "
        f"`{index['kind']}`" + (f" ({shown})" if shown else "") + f"; {s['queries']:,} queries for (a) and (b); "
        f"Serve's proxy: {s['proxy']}; HTTP load: {generator}.",
        "",
        f"One run (seed {s['seed']} draws the catalogue and the queries): every figure is one measurement, not a "
        "mean over runs. The ratios compare paths measured one after the other in this run.",
    ]
    if loads:
        intro += ["", f"Machine load at the start: {loads[0]}; at the end: {loads[1]}."]
    page = ResultsPage(title=f"Fair retriever speed: {s['items']:,} items, {index['kind']} index",
                       command=command, seeds=(s["seed"],), intro="\n".join(intro))
    page.add("Queries per second and latency per path", _path_table(result))
    page.add("Ratios within the run", _ratios(result))
    if result.get("bound"):
        page.add("Against the CPU bound", _bound_section(result))
    notes = []
    if result.get("recall") is not None:
        notes.append(f"- Recall@{s['k']} of the `{index['kind']}` partitions against exact search, with μ ≠ 0: "
                     f"**{result['recall']:.4f}**.")
    cpu = [r["generator_cpu"] for r in result["http"] + result["floor"] if r.get("generator_cpu") is not None]
    if cpu:
        notes.append(f"- The load generator used at most {max(cpu):.2f} of a core.")
    errors = sum(r.get("errors", 0) for r in result["http"] + result["floor"])
    if s["load"] == "wrk":
        notes.append(f"- HTTP errors (non-2xx answers and socket errors) over every level: {errors:,}.")
    silent = [f"{PATHS[key][:3]} at concurrency {r['concurrency']}" for key in ("http", "floor") for r in result[key]
              if not _answered(r)]
    if silent:
        notes.append(f"- No request was answered within the measured window of {', '.join(silent)}: that level "
                     "measured nothing, and its ratio is left out (rerun with a longer --duration).")
    how = ("searches each batch in process (the partitions in one thread)"
           if s.get("search_in", "shard_actors") == "replica" else "fans each batch out to the shard actors, which "
           "search in parallel")
    notes.append(f"- (a) runs before Ray starts, on one thread; (b) {how}, and waits for the dual-vector actor to "
                 "acknowledge its report; (c) answers once the report is in the replica's journal; (d) serves the same route and body through the same proxy and load "
                 "generator, answering at once, so (c)/(d) is the share of Serve's own ceiling the retriever "
                 "reaches.")
    page.add("Notes", "\n".join(notes))
    if result["http"]:
        page.add_plot("http.png", "Queries per second (left) and p99 latency (right) over HTTP against the number "
                                  "of requests in flight: (c) the fair retriever, (d) Serve's floor.",
                      lambda target: plot_http(target, result))
    return page


def _path_table(result: dict) -> str:
    with_errors = result["settings"]["load"] == "wrk"
    head = ["path", "batch / concurrency", "queries/s", "p50", "p99", "requests"] + (["errors"] if with_errors else [])
    rows = []
    for key, level in (("raw", "batch"), ("fair", "batch"), ("http", "concurrency"), ("floor", "concurrency")):
        for r in result[key]:
            latency = [ms(r["p50_ms"]), ms(r["p99_ms"])] if _answered(r) else ["no answer", "no answer"]
            requests = f"{r['requests']:,}" if r.get("requests") is not None else ""
            cells = [PATHS[key], f"{level} {r[level]}", f"{r['qps']:,.0f}", *latency, requests]
            if with_errors:
                cells.append("" if key in ("raw", "fair") else f"{r.get('errors', 0):,}")
            rows.append(cells)
    return markdown_table(head, rows)


def _ratios(result: dict) -> str:
    raw = {r["batch"]: r for r in result["raw"]}
    lines = [markdown_table(["ratio", "batch", "throughput"],
                            [["(b)/(a)", r["batch"], _ratio(r["qps"], raw[r["batch"]]["qps"])]
                             for r in result["fair"] if r["batch"] in raw])]
    call_floor, fanout = result.get("call_floor"), next((r for r in result["fair"] if r["batch"] == 1), None)
    if call_floor and fanout:
        by_shards = result["settings"].get("search_in", "shard_actors") == "shard_actors"
        calls = f"the same {result['settings']['shards']} shard calls and one report" if by_shards else "one report"
        lines.append(f"(b) at batch 1 against Ray's floor for its calls: {calls}, with payloads of the same sizes, "
                     f"to actors that answer at once ({call_floor['fanouts']} rounds).\n\n" + markdown_table(
                         ["ratio", "batch", "p50", "p99"],
                         [["(b) / Ray's call floor", 1, f"{ms(fanout['p50_ms'])} / {ms(call_floor['p50_ms'])} = "
                           f"{_ratio(fanout['p50_ms'], call_floor['p50_ms'])}",
                           f"{ms(fanout['p99_ms'])} / {ms(call_floor['p99_ms'])} = "
                           f"{_ratio(fanout['p99_ms'], call_floor['p99_ms'])}"]]))
    floor = {r["concurrency"]: r for r in result["floor"]}
    pairs = [(r, floor[r["concurrency"]]) for r in result["http"] if r["concurrency"] in floor]
    if pairs:
        lines.append(markdown_table(["ratio", "concurrency", "throughput", "p99"],
                                    [["(c)/(d)", c["concurrency"], _ratio(c["qps"], d["qps"]),
                                      _ratio(c["p99_ms"], d["p99_ms"])] for c, d in pairs]))
    return "\n".join(lines)


def _bound_section(result: dict) -> str:
    http = {r["concurrency"]: r for r in result["http"]}
    rows = [[b["concurrency"], f"{b['search_cpu_ms']:.3f} ms", f"{b['floor_cpu_ms']:.3f} ms", f"{b['qps']:,.0f}",
             f"{http[b['concurrency']]['qps']:,.0f}", _ratio(http[b["concurrency"]]["qps"], b["qps"])]
            for b in result["bound"] if b["concurrency"] in http]
    cores = result["bound"][0]["cores"]
    return (f"What {cores} cores could serve if the retriever cost nothing beyond its search and Serve's own work: "
            f"{cores} / (search CPU per query + Serve's CPU per request). Search CPU is (a) at batch 64 (one "
            "thread, so its wall time is its CPU time); Serve's is the whole machine's busy CPU (from /proc/stat: "
            "proxy, replica, load generator, Ray's daemons) over (d)'s requests at that concurrency.\n\n"
            + markdown_table(["concurrency", "search CPU a query", "Serve's CPU a request", "bound (q/s)",
                              "(c) q/s", "(c) / bound"], rows))


def plot_http(path: Storage, result: dict) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, style in (("http", "o-"), ("floor", "s--")):
        rows = sorted((r for r in result[key] if _answered(r)), key=lambda r: r["concurrency"])
        level = [r["concurrency"] for r in rows]
        axes[0].plot(level, [r["qps"] for r in rows], style, label=PATHS[key])
        axes[1].plot(level, [r["p99_ms"] for r in rows], style, label=PATHS[key])
    for ax, label in zip(axes, ("queries/s", "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("requests in flight (concurrency)")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
    axes[0].legend(fontsize="small")
    save_figure(fig, path)


def level_rows(rows: dict, key: str) -> list[dict]:
    """{level: row} as rows carrying their level under ``key``, in order."""
    return [{**row, key: level} for level, row in sorted(rows.items())]

