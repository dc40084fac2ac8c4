"""The results page of ``jobs/retrieval_scale.py``: a large catalogue over shard actors, each
loading its partition's stored index."""

from __future__ import annotations

from jobs.lib.results_page import ResultsPage, markdown_table

GIB = 2**30


def scale_page(result: dict, command: str) -> ResultsPage:
    s = result["settings"]
    index = ", ".join(f"{key} {value}" for key, value in result["index"].items())
    page = ResultsPage(
        title=f"The fair retriever at {s['items']:,} items on a cluster",
        command=command,
        seeds=(0,),
        intro=(
            f"{s['items']:,} synthetic items of dimension {s['dim']} in {s['shards']} partitions, one shard actor "
            f"each ({index}; {s['shard_cpus']} CPU reserved per shard), on {result['cluster']}. Each shard builds "
            "its partition's index once and stores it beside the partition in the storage; every later start, "
            "on any node, loads it. One run, one seed; times are wall-clock seconds on this cluster, memory is "
            "each shard process's peak resident set (the kernel's high-water mark)."
        ),
    )
    page.add("Steps", _steps(result))
    page.add("Each shard", _shards(result))
    r = result["recall"]
    page.add(
        "Recall",
        f"recall@{s['k']} of the shards' merged answers against the exact top-{s['k']} (computed partition by "
        f"partition from the stored files), μ ≠ 0, {r['queries']} queries: **{r['recall']:.4f}**.\n",
    )
    page.add("Serving over HTTP", _serving(result["serving"]))
    page.add("Machine load", f"At the start: {result['loads'][0]}; at the end: {result['loads'][-1]}.\n")
    return page


def _steps(result: dict) -> str:
    p, first, again = result["partitions"], result["first_start"], result["restart"]
    how = lambda step: "/".join(sorted({row["index"] for row in step["shards"]}))  # noqa: E731
    rows = [
        ("catalogue drawn", f"{p['draw_s']:.0f}", ""),
        ("partitions written", f"{p['write_s']:.0f}", "found from an earlier run" if p["found"] else "written"),
        ("first start of the shards", f"{first['wall_s']:.0f}", f"index {how(first)}"),
        ("shards stopped and started again", f"{again['wall_s']:.0f}", f"index {how(again)}"),
    ]
    if "up_s" in result["serving"]:
        rows.append(("`serve.run` until the retriever answers", f"{result['serving']['up_s']:.0f}",
                     "its own shard actors, loading the stored indexes"))
    ratio = again["wall_s"] / first["wall_s"] if first["wall_s"] else float("nan")
    return markdown_table(("step", "seconds", ""), rows) + f"\nRestart against first start: {ratio:.2f}×.\n"


def _shards(result: dict) -> str:
    rows = []
    for first, again in zip(result["first_start"]["shards"], result["restart"]["shards"]):
        held = first["index_bytes"]
        rows.append((
            first["name"], f"{first['items']:,}",
            f"{first['index']} in {first['index_seconds']:.0f} s", f"{first['peak_rss'] / GIB:.2f}",
            f"{again['index']} in {again['index_seconds']:.0f} s", f"{again['peak_rss'] / GIB:.2f}",
            f"{held['index'] / GIB:.2f} + {held['vectors'] / GIB:.2f}",
        ))
    return markdown_table(("shard", "items", "first start", "peak GiB", "restart", "peak GiB",
                           "index + kept vectors, GiB"), rows)


def _serving(serving: dict) -> str:
    if "error" in serving:
        return f"Serving failed: `{serving['error']}`.\n"
    rows = []
    for row, floor in zip(serving["http"], serving["floor"]):
        rows.append((row["concurrency"], f"{row['qps']:,.0f}", f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}",
                     row.get("errors", 0), f"{floor['qps']:,.0f}", f"{row['qps'] / floor['qps']:.2f}"))
    return markdown_table(("concurrency", "q/s", "p50 ms", "p99 ms", "errors", "Serve floor q/s", "ratio"), rows) + (
        "\nwrk against Serve's proxy on the head node; the floor is a deployment that parses the same body and "
        "answers at once (`serve/echo.py`), under the same proxy and load.\n"
    )
