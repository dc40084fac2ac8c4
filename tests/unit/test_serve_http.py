"""The retriever's framework-free HTTP plumbing (serve/http.py) on hand-built requests."""

import asyncio
import json

from starlette.requests import Request

from serve.http import dispatch, json_bytes, parse_body
from serve.models import RetrieveRequest


def _request(method: str, path: str, body: bytes = b"", root_path: str = "") -> Request:
    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": method, "path": root_path + path, "root_path": root_path, "headers": [],
             "query_string": b"", "scheme": "http", "server": ("127.0.0.1", 80)}
    return Request(scope, receive)


async def _echo_k(request: Request):
    return json_bytes(json.dumps({"k": parse_body(await request.body(), RetrieveRequest).k}).encode())


def _call(request: Request):
    seen = []
    response = asyncio.run(dispatch(request, {("POST", "/retrieve"): _echo_k},
                                    lambda route, status, seconds: seen.append((route, status))))
    return response.status_code, json.loads(response.body), seen


def test_routes_under_a_prefix_and_unknown_paths_and_methods():
    assert _call(_request("POST", "/retrieve", b'{"user_id": 1, "k": 3}', root_path="/api")) == \
        (200, {"k": 3}, [("/retrieve", 200)])
    assert _call(_request("GET", "/retrieve")) == (405, {"detail": "Method Not Allowed"}, [("/retrieve", 405)])
    assert _call(_request("GET", "/x")) == (404, {"detail": "Not Found"}, [("other", 404)])


def test_bad_bodies_are_422_naming_the_field_without_echoing_the_input():
    status, body, _ = _call(_request("POST", "/retrieve", b'{"user_vector": [NaN, 1.0], "k": 2}'))
    assert status == 422 and body["detail"][0]["loc"] == ["body", "user_vector", 0]
    assert "input" not in body["detail"][0]
    status, body, _ = _call(_request("POST", "/retrieve", b"{not json"))
    assert status == 422 and body["detail"][0]["type"] == "json_invalid"
    status, body, _ = _call(_request("POST", "/retrieve", b'{"user_id": 1, "k": 0}'))
    assert status == 422 and body["detail"][0]["loc"] == ["body", "k"] and "greater than 0" in body["detail"][0]["msg"]


def _retriever(max_k: int, dim: int = 4):
    """The retriever deployment's own class on hand-set state, its search replaced by one that
    answers k made-up items: what reaches the partitions is not under test here, the boundary is."""
    from types import SimpleNamespace

    import numpy as np

    from actors.retrieval_coordinator import Retrieved
    from cluster.retrieval.shard_index import Hits
    from serve.retriever import FairRetriever  # here: it imports Ray Serve, seconds the other tests need not pay

    retriever = object.__new__(FairRetriever.func_or_class)
    retriever.max_k = max_k
    retriever.user_row = {7: 0}
    retriever.user_vectors = np.ones((1, dim), np.float32)
    retriever.item_ids = np.arange(max_k + 1)
    retriever.group_names = ["g"]

    async def counted(seq: int) -> None:
        return None

    retriever.coordinator = SimpleNamespace(counted=counted)

    async def search(request):
        _, k = request
        scores = np.zeros((1, k), np.float32)
        hits = Hits(np.arange(k)[None, :], scores, scores)
        return Retrieved(hits, np.zeros((1, k), np.int64), False, 0), 0, 0

    retriever._serve_batch = search
    return retriever


def test_the_retriever_answers_k_up_to_its_max_k_and_no_more():
    retriever = _retriever(max_k=20)

    def post(body: dict):
        response = asyncio.run(dispatch(_request("POST", "/retrieve", json.dumps(body).encode()),
                                        {("POST", "/retrieve"): retriever.retrieve}))
        return response.status_code, json.loads(response.body)

    status, body = post({"user_id": 7, "k": 20})
    assert status == 200 and len(body["items"]) == 20, body
    status, body = post({"user_vector": [0.5] * 4, "k": 20})
    assert status == 200 and len(body["items"]) == 20, body
    assert post({"user_id": 7, "k": 21}) == (422, {"detail": "k=21 exceeds the maximum of 20"})


async def _read_and_parse(request: Request):
    from serve.http import read_body

    return json_bytes(json.dumps({"k": parse_body(await read_body(request, limit=64), RetrieveRequest).k}).encode())


def _call_limited(body: bytes):
    response = asyncio.run(dispatch(_request("POST", "/retrieve", body), {("POST", "/retrieve"): _read_and_parse},
                                    lambda route, status, seconds: None))
    return response.status_code, json.loads(response.body)


def test_a_body_over_the_limit_is_413_and_a_string_or_bool_is_not_a_number():
    assert _call_limited(b'{"user_id": 1, "k": 3}') == (200, {"k": 3})
    status, body = _call_limited(b'{"user_vector": [' + b"1.0, " * 40 + b'1.0], "k": 3}')
    assert status == 413 and "limit of 64" in body["detail"]
    for bad, field in ((b'{"user_id": "7", "k": 3}', "user_id"), (b'{"user_id": 1, "k": true}', "k"),
                       (b'{"user_id": 1.0, "k": 3}', "user_id")):
        status, body = _call_limited(bad)
        assert status == 422 and body["detail"][0]["loc"] == ["body", field], (bad, body)
    assert _call_limited(b'{"user_vector": [1, 2.5], "k": 2}') == (200, {"k": 2}), "JSON integers fill a float vector"
