"""``llm2vec-rag serve``: the real server on a loopback port, called with the real clients.

The server runs uvicorn in a thread (or the CLI in a subprocess) over the tiny
random Llama; the clients are the official ``openai`` package, LangChain's
``OpenAIEmbeddings``, ``huggingface_hub``'s TEI client, the ``ollama`` package
and plain httpx. Vectors are compared with ``LLM2Vec.encode`` in this process.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

from conftest import CORPUS  # noqa: E402
from llm2vec_rag.instructions import tokenize_all  # noqa: E402
from llm2vec_rag.integrations.server import Served, ServerSettings, create_app  # noqa: E402
from llm2vec_rag.integrations.server.runner import address, bind_socket, make_server  # noqa: E402

DOCS = CORPUS[:8]
QUERIES = ["what powers a cell?", "how do planes fly?", "what do rivers carry?"]
TIMEOUT = 30


@contextlib.contextmanager
def running(load, settings: ServerSettings | None = None, wait_ready: bool = True, **options):
    """The app on 127.0.0.1:<free port> in a thread: yields (base url, app); stops it afterwards."""
    app = create_app(load, settings or ServerSettings(), **options)
    sock = bind_socket("127.0.0.1", 0)
    server = make_server(app, quiet=True)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = address(sock)
    deadline = time.monotonic() + TIMEOUT
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    if wait_ready:
        assert app.state.server.engine.ready.wait(TIMEOUT)
    try:
        yield url, app
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def assert_same(got, want):
    got, want = unit(got), unit(want)
    assert got.shape == want.shape
    cos = (got * want).sum(-1)
    assert cos.min() >= 0.9999, cos


def batches(url) -> float:
    text = httpx.get(f"{url}/metrics").text
    return float(re.search(r"^llm2vec_rag_batches_total (\S+)$", text, re.M).group(1))


def wait_until(predicate, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def server(tiny_encoder):
    with running(lambda: Served(models={"tiny": tiny_encoder}), aliases={"tiny-llama": "tiny"}) as (url, app):
        yield url, app


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0, timeout=TIMEOUT)


# ------------------------------------------------------------------ OpenAI client
def test_openai_client_base64_and_float_equal_encode(client, tiny_encoder):
    want = tiny_encoder.encode_documents(DOCS)
    default = client.embeddings.create(model="tiny", input=DOCS)  # the client asks for base64 by default
    floats = client.embeddings.create(model="tiny", input=DOCS, encoding_format="float")
    for reply in (default, floats):
        assert [d.index for d in reply.data] == list(range(len(DOCS)))
        assert_same([d.embedding for d in reply.data], want)
        assert reply.model == "tiny"
    assert np.allclose(np.linalg.norm([d.embedding for d in floats.data], axis=1), 1, atol=1e-5)
    assert np.allclose([d.embedding for d in default.data], [d.embedding for d in floats.data], atol=1e-6)
    counted = tokenize_all(tiny_encoder.tokenizer, DOCS, tiny_encoder.max_length)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == sum(len(t.ids) for t in counted) > 0


def test_queries_documents_instructions_and_token_ids(client, tiny_encoder):
    query = client.embeddings.create(model="tiny", input=QUERIES, extra_body={"input_type": "query"})
    assert_same([d.embedding for d in query.data], tiny_encoder.encode_queries(QUERIES))
    custom = client.embeddings.create(model="tiny", input=QUERIES[0], extra_body={"instruction": "Find rivers:"})
    assert len(custom.data) == 1
    assert_same([custom.data[0].embedding], [tiny_encoder.encode_queries(QUERIES[0], instruction="Find rivers:")])
    doc = client.embeddings.create(model="tiny-llama", input=DOCS[0], extra_body={"input_type": "document"})
    assert_same([doc.data[0].embedding], [tiny_encoder.encode_documents(DOCS[0])])
    # queries and documents really differ (the instruction is attended to)
    assert not np.allclose(unit(query.data[0].embedding), unit(tiny_encoder.encode_documents(QUERIES[0])), atol=1e-3)
    ids = [tiny_encoder.tokenizer(t, add_special_tokens=False)["input_ids"] for t in DOCS[:3]]
    by_ids = client.embeddings.create(model="tiny", input=ids)
    one = client.embeddings.create(model="tiny", input=ids[0])
    assert_same([d.embedding for d in by_ids.data], tiny_encoder.encode_documents(DOCS[:3]))
    assert len(one.data) == 1 and np.allclose(one.data[0].embedding, by_ids.data[0].embedding, atol=1e-6)


def test_dimensions_truncate_and_renormalise(client, tiny_encoder):
    full = tiny_encoder.encode_documents(DOCS[:2])
    short = client.embeddings.create(model="tiny", input=DOCS[:2], dimensions=16, encoding_format="float")
    got = np.array([d.embedding for d in short.data])
    assert got.shape == (2, 16)
    assert np.allclose(got, unit(full[:, :16]), atol=1e-5)
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="tiny", input="x", dimensions=tiny_encoder.dim + 1)
    assert err.value.body["param"] == "dimensions" and str(tiny_encoder.dim) in err.value.body["message"]


def test_models_route_and_errors_in_openai_envelope(client, server):
    url, _ = server
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError) as err:
        client.embeddings.create(model="gpt-4", input="x")
    assert err.value.body["code"] == "model_not_found" and "tiny" in err.value.body["message"]
    cases = [({"input": [], "model": "tiny"}, "input"), ({"model": "tiny"}, "input"),
             ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
             ({"input": ["x", 3]}, "input"), ({"input": [[1, 2], "x"]}, "input"),
             ({"input": [999999]}, "input"), ({"input": "x", "input_type": "passage"}, "input_type"),
             ({"input": "x", "input_type": "document", "instruction": "I:"}, "instruction"),
             ({"input": "x", "dimensions": 0}, "dimensions"), ({"input": ""}, "input"), ({"input": ["a", ""]}, "input")]
    for body, param in cases:
        reply = httpx.post(f"{url}/v1/embeddings", json=body)
        assert reply.status_code == 400, (body, reply.text)
        error = reply.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["param"] == param, (body, error)
        assert error["type"] == "invalid_request_error" and error["message"]
    broken = httpx.post(f"{url}/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]


def test_unknown_routes_and_wrong_methods_answer_in_the_family_envelope(client, server):
    url, _ = server
    with pytest.raises(openai.NotFoundError) as err:
        client.post("/completions", cast_to=object, body={"prompt": "x"})
    assert "Invalid URL (POST /v1/completions)" in err.value.body["message"]
    for method, path, status in [("POST", "/v1/nowhere", 404), ("GET", "/v1/embeddings", 405),
                                 ("DELETE", "/v1/models", 405), ("POST", "/v1/models", 405)]:
        reply = httpx.request(method, url + path)
        assert reply.status_code == status, (method, path, reply.text)
        error = reply.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
        assert path in error["message"] and "detail" not in reply.json()
    assert httpx.get(f"{url}/v1/embeddings").headers["allow"] == "POST"
    ollama = httpx.get(f"{url}/api/nowhere")
    assert ollama.status_code == 404 and set(ollama.json()) == {"error"}
    tei = httpx.get(f"{url}/embed")
    assert tei.status_code == 405 and tei.json()["error_type"] == "Validation"


def test_over_long_input_truncates_unless_asked_not_to(server, tiny_encoder):
    url, _ = server
    long_text = " ".join(DOCS) * 20
    assert len(tiny_encoder.tokenizer(long_text)["input_ids"]) > tiny_encoder.max_length
    ok = httpx.post(f"{url}/v1/embeddings", json={"input": long_text, "encoding_format": "float"}).json()
    assert ok["usage"]["prompt_tokens"] == tiny_encoder.max_length
    assert_same([ok["data"][0]["embedding"]], [tiny_encoder.encode_documents(long_text)])
    refused = httpx.post(f"{url}/v1/embeddings", json={"input": ["short", long_text], "truncate": False})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "context_length_exceeded" and "input 1" in refused.json()["error"]["message"]


# ------------------------------------------------------------------ other clients and shapes
def test_langchain_openai_embeddings(server, tiny_encoder):
    lc = pytest.importorskip("langchain_openai")
    emb = lc.OpenAIEmbeddings(model="tiny", base_url=server[0] + "/v1", api_key="unused",
                              check_embedding_ctx_length=False, max_retries=0)
    assert_same(emb.embed_documents(DOCS[:3]), tiny_encoder.encode_documents(DOCS[:3]))
    assert_same([emb.embed_query(DOCS[0])], [tiny_encoder.encode_documents(DOCS[0])])


def test_tei_shape_and_huggingface_hub_client(server, tiny_encoder, monkeypatch):
    url, _ = server
    got = httpx.post(f"{url}/embed", json={"inputs": DOCS[:3]}).json()
    assert_same(got, tiny_encoder.encode_documents(DOCS[:3]))
    raw = httpx.post(f"{url}/embed", json={"inputs": DOCS[0], "normalize": False}).json()
    assert np.allclose(raw[0], tiny_encoder.encode_documents(DOCS[0]), atol=1e-5)  # unnormalised: the raw vector
    query = httpx.post(f"{url}/embed", json={"inputs": [QUERIES[0]], "prompt_name": "query"}).json()
    assert_same(query, tiny_encoder.encode_queries([QUERIES[0]]))
    error = httpx.post(f"{url}/embed", json={"inputs": "x", "truncation_direction": "Left"})
    assert error.status_code == 400 and error.json()["error_type"] == "Validation"
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)  # the suite's offline switch blocks loopback too
    vector = hub.InferenceClient(model=url).feature_extraction(DOCS[1])
    assert_same(np.asarray(vector).reshape(1, -1), [tiny_encoder.encode_documents(DOCS[1])])


def test_ollama_shape_and_client(server, tiny_encoder):
    url, _ = server
    got = httpx.post(f"{url}/api/embed", json={"model": "tiny", "input": DOCS[:2]}).json()
    assert got["model"] == "tiny" and got["prompt_eval_count"] > 0
    assert_same(got["embeddings"], tiny_encoder.encode_documents(DOCS[:2]))
    missing = httpx.post(f"{url}/api/embed", json={"model": "nomic-embed-text", "input": "x"})
    assert missing.status_code == 404 and set(missing.json()) == {"error"}
    legacy = httpx.post(f"{url}/api/embeddings", json={"model": "tiny", "prompt": DOCS[0]}).json()
    assert np.allclose(legacy["embedding"], tiny_encoder.encode_documents(DOCS[0]), atol=1e-5)
    ollama = pytest.importorskip("ollama")
    reply = ollama.Client(host=url).embed(model="tiny:latest", input=[DOCS[2]])
    assert_same(reply.embeddings, tiny_encoder.encode_documents([DOCS[2]]))


# ------------------------------------------------------------------ batching, back-pressure, disconnects
def test_concurrent_requests_share_one_encode_call_and_equal_single(server, tiny_encoder):
    url, app = server
    engine = app.state.server.engine
    jobs = [(t, "document") for t in DOCS[:4]] + [(q, "query") for q in QUERIES]
    random.Random(0).shuffle(jobs)
    before = batches(url)

    def call(job):
        text, kind = job
        body = {"input": [text], "input_type": kind, "encoding_format": "float", "model": "tiny"}
        return httpx.post(f"{url}/v1/embeddings", json=body, timeout=TIMEOUT).json()["data"][0]["embedding"]

    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        with engine.hold():
            futures = [pool.submit(call, job) for job in jobs]
            wait_until(lambda: engine.queued == len(jobs))
        got = [f.result(TIMEOUT) for f in futures]
    assert batches(url) - before == 1  # seven requests, one encode call
    for (text, kind), vector in zip(jobs, got):
        want = tiny_encoder.encode_queries(text) if kind == "query" else tiny_encoder.encode_documents(text)
        assert_same([vector], [want])
    metrics = httpx.get(f"{url}/metrics").text
    assert re.search(r'^llm2vec_rag_batch_requests_bucket\{le="4.0"\} ', metrics, re.M)


def test_token_budget_splits_packed_calls(tiny_encoder):
    settings = ServerSettings(max_batch_tokens=1)  # every request over budget: one call each, none refused
    with running(lambda: Served(models={"tiny": tiny_encoder}), settings) as (url, app):
        engine = app.state.server.engine
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            with engine.hold():
                futures = [pool.submit(httpx.post, f"{url}/embed", json={"inputs": DOCS[:5]}, timeout=TIMEOUT)
                           for _ in range(3)]
                wait_until(lambda: engine.queued == 3)
            assert all(f.result(TIMEOUT).status_code == 200 for f in futures)
        assert batches(url) == 3


def test_full_queue_answers_429_with_retry_after_and_the_client_retries(tiny_encoder):
    settings = ServerSettings(max_concurrent_requests=2, retry_after_s=1)
    with running(lambda: Served(models={"tiny": tiny_encoder}), settings) as (url, app):
        engine = app.state.server.engine
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            with engine.hold():
                queued = [pool.submit(httpx.post, f"{url}/v1/embeddings", json={"input": "x"}, timeout=TIMEOUT)
                          for _ in range(2)]
                wait_until(lambda: engine.pending == 2)
                refused = httpx.post(f"{url}/v1/embeddings", json={"input": "x"})
                assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
                assert refused.json()["error"]["code"] == "rate_limit_exceeded"
                no_retry = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
                with pytest.raises(openai.RateLimitError):
                    no_retry.embeddings.create(model="tiny", input="x")
                retrying = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=3)
                later = pool.submit(retrying.embeddings.create, model="tiny", input="x")
                time.sleep(0.2)
            assert [f.result(TIMEOUT).status_code for f in queued] == [200, 200]
            assert len(later.result(TIMEOUT).data) == 1  # 429, Retry-After honoured, then 200
        assert "rate_limited" in httpx.get(f"{url}/metrics").text


def test_limits_answer_413(tiny_encoder):
    settings = ServerSettings(max_inputs=4, max_request_bytes=2000)
    with running(lambda: Served(models={"tiny": tiny_encoder}), settings) as (url, _):
        many = httpx.post(f"{url}/v1/embeddings", json={"input": ["a"] * 5})
        assert many.status_code == 413 and "limit is 4" in many.json()["error"]["message"]
        big = httpx.post(f"{url}/v1/embeddings", json={"input": "word " * 1000})
        assert big.status_code == 413 and "2000" in big.json()["error"]["message"]
        tei = httpx.post(f"{url}/embed", json={"inputs": ["a"] * 5})
        assert tei.status_code == 413 and tei.json()["error_type"] == "Validation"


def test_a_client_that_disconnects_has_its_work_dropped(server):
    url, app = server
    engine = app.state.server.engine
    before, dropped = batches(url), engine.dropped
    with engine.hold():
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/embeddings", json={"input": "gone"}, timeout=0.3)
        wait_until(lambda: engine.pending == 0)  # the server noticed and cancelled it
    wait_until(lambda: engine.dropped == dropped + 1)
    assert batches(url) == before
    assert "disconnected" in httpx.get(f"{url}/metrics").text


def test_health_answers_within_a_second_while_the_model_is_busy(server):
    """The event loop is never blocked by the model: /health stays fast during a large embeddings request."""
    url, app = server
    engine = app.state.server.engine
    long_text = " ".join(DOCS) * 4  # several hundred tokens: cut at max_length
    busy_polls, slowest = 0, 0.0
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        for _ in range(8):  # bounded: at most eight large requests, stopping once enough polls hit a busy model
            big = pool.submit(httpx.post, f"{url}/v1/embeddings", json={"input": [long_text] * 32},
                              timeout=TIMEOUT)
            deadline = time.monotonic() + TIMEOUT
            while not big.done() and time.monotonic() < deadline:
                busy = engine.pending == 1 and engine.queued == 0  # taken off the queue, not finished
                start = time.perf_counter()
                reply = httpx.get(f"{url}/health", timeout=TIMEOUT)
                took = time.perf_counter() - start
                assert reply.status_code == 200 and reply.json() == {"status": "ok"}
                if busy:  # the model was running when this /health was sent
                    busy_polls += 1
                    slowest = max(slowest, took)
                time.sleep(0.02)
            reply = big.result(TIMEOUT)
            assert reply.status_code == 200 and len(reply.json()["data"]) == 32
            if busy_polls >= 5:
                break
    assert slowest < 1.0, f"/health took {slowest:.2f} s while the model ran"
    assert busy_polls >= 5, f"only {busy_polls} /health calls landed while the model ran"


# ------------------------------------------------------------------ auth, health, info
def test_api_key_on_every_route_but_health_and_metrics(tiny_encoder):
    with running(lambda: Served(models={"tiny": tiny_encoder}), ServerSettings(api_key="s3cret")) as (url, _):
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).embeddings.create(model="tiny",
                                                                                                 input="x")
        good = openai.OpenAI(base_url=url + "/v1", api_key="s3cret", max_retries=0)
        assert len(good.embeddings.create(model="tiny", input="x").data) == 1
        for path in ("/embed", "/api/embed", "/info", "/v1/models", "/v1/search"):
            reply = httpx.post(url + path, json={}) if path not in ("/info", "/v1/models") else httpx.get(url + path)
            assert reply.status_code == 401, path
        assert httpx.post(f"{url}/embed", json={"inputs": "x"}).json()["error_type"] == "Unauthorized"
        assert httpx.get(f"{url}/health").status_code == 200 and httpx.get(f"{url}/metrics").status_code == 200
        ollama = pytest.importorskip("ollama")
        reply = ollama.Client(host=url, headers={"Authorization": "Bearer s3cret"}).embed(model="tiny", input="x")
        assert len(reply.embeddings) == 1


def test_health_is_503_until_loaded_and_info_describes_the_model(tiny_encoder):
    release = threading.Event()

    def slow_load():
        assert release.wait(TIMEOUT)
        return Served(models={"tiny": tiny_encoder}, dtype="auto")

    with running(slow_load, wait_ready=False) as (url, app):
        assert httpx.get(f"{url}/health").status_code == 503
        loading = httpx.post(f"{url}/v1/embeddings", json={"input": "x"})
        assert loading.status_code == 503 and "loading" in loading.json()["error"]["message"]
        release.set()
        wait_until(lambda: httpx.get(f"{url}/health").status_code == 200)
        info = httpx.get(f"{url}/info").json()
        card = info["models"][0]
        assert card["name"] == "tiny" and card["dim"] == tiny_encoder.dim
        assert card["fingerprint"] == tiny_encoder.fingerprint() and card["max_length"] == tiny_encoder.max_length
        assert card["query_instruction"] == tiny_encoder.query_instruction
        from llm2vec_rag.runtime import auto_dtype_choice

        choice = auto_dtype_choice(tiny_encoder.device)  # the reason auto chose what it chose, e.g. AMX
        assert card["dtype_reason"] == f"auto: {choice.describe()}" and choice.reason in card["dtype_reason"]
        assert info["limits"]["max_inputs"] == 2048 and "api_key" not in info["limits"]


def test_a_failed_load_is_reported(tiny_encoder):
    failures = []

    def broken():
        raise FileNotFoundError("no such model: /nowhere")

    with running(broken, wait_ready=False, on_failure=failures.append) as (url, app):
        assert app.state.server.engine.ready.wait(TIMEOUT)
        assert app.state.server.engine.state == "failed" and "nowhere" in str(failures[0])
        assert httpx.get(f"{url}/health").json() == {"status": "failed"}


def test_several_adapters_over_one_base_chosen_by_model(tiny_model_dir, tmp_path):
    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.integrations.server.loading import loader, plan_models
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    import torch
    torch.manual_seed(1)
    lora = get_peft_model(AutoModel.from_pretrained(tiny_model_dir),
                          LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "lora")
    plan = plan_models(str(tiny_model_dir), [f"tuned={tmp_path / 'lora'}"], name="base", dtype="float32",
                       device="cpu")
    with running(loader(plan), aliases=plan.aliases) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["base", "tuned"]
        cards = httpx.get(f"{url}/info").json()["models"]
        assert [c["dtype_reason"] for c in cards] == ["requested: float32"] * 2
        base = client.embeddings.create(model="base", input=DOCS[:2]).data
        tuned = client.embeddings.create(model="tuned", input=DOCS[:2]).data
    want = LLM2Vec.from_pretrained(str(tiny_model_dir), adapters=[str(tmp_path / "lora")], dtype="float32",
                                   device="cpu").encode_documents(DOCS[:2])
    assert_same([d.embedding for d in tuned], want)
    assert not np.allclose(unit([d.embedding for d in base]), unit(want), atol=1e-3)


# ------------------------------------------------------------------ search
@pytest.fixture(scope="module")
def search_server(tiny_encoder, tmp_path_factory):
    """The server with ``--index`` over eight notes indexed with the tiny encoder: (url, app, index dir)."""
    from llm2vec_rag import Index
    from llm2vec_rag.integrations.server.loading import open_index

    tmp_path = tmp_path_factory.mktemp("search")
    folder = tmp_path / "docs"
    folder.mkdir()
    for i, text in enumerate(DOCS):
        (folder / f"doc{i}.md").write_text(f"# Note {i}\n\n{text}\n", encoding="utf-8")
    Index.build(folder, path=tmp_path / "ix", encoder=tiny_encoder, progress=False, log=lambda m: None).close()

    def load():
        served = Served(models={"tiny": tiny_encoder})
        served.index, served.index_model = open_index(str(tmp_path / "ix"), served.models, "float32", "cpu",
                                                      lambda m: None)
        return served

    with running(load) as (url, app):
        yield url, app, tmp_path / "ix"


def expected_hits(tiny_encoder, folder, query, **options):
    """What ``Index.search`` returns in this process, as ``search --json`` prints it."""
    from llm2vec_rag import Index

    with Index.load(folder, encoder=tiny_encoder) as index:
        return [h.json_fields() for h in index.search(query, **options)]


def assert_same_hits(got, want):
    assert [h["id"] for h in got] == [h["id"] for h in want]
    for g, w in zip(got, want):
        assert set(g) == set(w)
        for key in ("score", "dense_score", "lexical_score"):
            assert (g[key] is None) == (w[key] is None) and (g[key] is None or abs(g[key] - w[key]) < 1e-5), key
        assert {k: v for k, v in g.items() if not k.endswith("score")} == \
            {k: v for k, v in w.items() if not k.endswith("score")}


def test_search_over_an_index(search_server, tiny_encoder):
    url, app, folder = search_server
    reply = httpx.post(f"{url}/v1/search", json={"query": "what powers a cell?", "k": 3}).json()
    hits = reply["data"]
    assert len(hits) == 3 and [h["rank"] for h in hits] == [1, 2, 3]
    # the fields of `llm2vec-rag search --json`, scores of each side included
    assert set(hits[0]) == {"rank", "score", "mode", "dense_score", "lexical_score", "source", "chunk", "heading",
                            "page", "start", "end", "id", "text"}
    assert_same_hits(hits, expected_hits(tiny_encoder, folder, "what powers a cell?", k=3))
    assert reply["mode"] == "hybrid" and hits[0]["mode"] == "hybrid"
    where = httpx.post(f"{url}/v1/search", json={"query": "what powers a cell?", "where": "doc1.md"}).json()
    assert_same_hits(where["data"], expected_hits(tiny_encoder, folder, "what powers a cell?", k=10, where="doc1.md"))
    assert app.state.server.index["served_model"] == "tiny"
    for body, param in [({"query": ""}, "query"), ({"query": "x", "k": 0}, "k"), ({"query": "x", "where": 3},
                                                                                 "where")]:
        bad = httpx.post(f"{url}/v1/search", json=body)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == param


def test_search_modes_alpha_and_fusion_reach_index_search(search_server, tiny_encoder):
    url, _, folder = search_server
    query = "mitochondrion energy"
    for options in ({"mode": "lexical"}, {"mode": "dense"}, {"mode": "hybrid"},
                    {"mode": "hybrid", "alpha": 1.0}, {"mode": "hybrid", "alpha": 0},
                    {"mode": "hybrid", "fusion": "rrf"}, {"fusion": "rrf", "alpha": 0.9}):
        got = httpx.post(f"{url}/v1/search", json={"query": query, "k": 4, **options})
        assert got.status_code == 200, (options, got.text)
        reply = got.json()
        assert_same_hits(reply["data"], expected_hits(tiny_encoder, folder, query, k=4, **options))
        assert reply["mode"] == options.get("mode", "hybrid") and reply["fusion"] == options.get("fusion", "convex")
        if "alpha" in options:
            assert reply["alpha"] == options["alpha"]
    # alpha is not ignored: the dense-only and lexical-only weights rank differently
    scores = [[h["score"] for h in httpx.post(f"{url}/v1/search", json={"query": query, "k": 8, "alpha": a}).json()
               ["data"]] for a in (0.0, 1.0)]
    assert scores[0] != scores[1]
    lexical = httpx.post(f"{url}/v1/search", json={"query": query, "mode": "lexical"}).json()["data"]
    assert all(h["mode"] == "lexical" and h["dense_score"] is None and h["lexical_score"] is not None
               for h in lexical)


@pytest.mark.parametrize("field, value", [("mode", "telepathy"), ("mode", 3), ("fusion", "max"), ("fusion", ["rrf"]),
                                          ("alpha", 1.5), ("alpha", -0.1), ("alpha", "0.5"), ("alpha", True)])
def test_bad_search_options_are_400_in_the_openai_envelope(search_server, field, value):
    reply = httpx.post(f"{search_server[0]}/v1/search", json={"query": "x", field: value})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == field
    assert error["type"] == "invalid_request_error" and field in error["message"]


def test_search_without_an_index_is_a_clear_400(server):
    reply = httpx.post(f"{server[0]}/v1/search", json={"query": "x"})
    assert reply.status_code == 400 and "--index" in reply.json()["error"]["message"]


# ------------------------------------------------------------------ the command
def _serve(*args, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "llm2vec_rag.cli.main", "serve", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_cli_serves_and_finishes_in_flight_requests_on_sigterm(tiny_model_dir):
    proc = _serve("--model", tiny_model_dir, "--port", 0, "--dtype", "float32", "--device", "cpu",
                  env_extra={"LLM2VEC_RAG_API_KEY": "k"})
    try:
        line = proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in line, line
        url = re.search(r"(http://127\.0\.0\.1:\d+)", line).group(1)
        assert "ready on" in proc.stderr.readline()
        headers = {"Authorization": "Bearer k"}
        name = tiny_model_dir.name
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "x", "model": name}).status_code == 401
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            big = pool.submit(httpx.post, f"{url}/embed", json={"inputs": CORPUS * 16}, headers=headers,
                              timeout=TIMEOUT)
            wait_until(lambda: "llm2vec_rag_requests_in_flight 1.0" in httpx.get(f"{url}/metrics").text)
            proc.send_signal(signal.SIGTERM)
            reply = big.result(TIMEOUT)
        assert reply.status_code == 200 and len(reply.json()) == len(CORPUS) * 16
        proc.wait(TIMEOUT)
        assert proc.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_start_up_errors_are_one_line(tmp_path):
    taken = bind_socket("127.0.0.1", 0)
    port = taken.getsockname()[1]
    try:
        busy = _serve("--port", port, "--quiet")
        _, err = busy.communicate(timeout=TIMEOUT)
        assert busy.returncode == 1 and err.strip().splitlines() == [
            f"error: port {port} on 127.0.0.1 is already in use; choose another with --port"]
    finally:
        taken.close()
    missing = _serve("--model", tmp_path / "no-such-model", "--port", 0, "--quiet")
    _, err = missing.communicate(timeout=TIMEOUT)
    lines = err.strip().splitlines()
    assert missing.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: cannot serve:"), err


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_readme_example_against_the_default_model():
    proc = _serve("--port", 0)
    try:
        url = re.search(r"(http://127\.0\.0\.1:\d+)", proc.stderr.readline()).group(1)
        for line in proc.stderr:  # notes of a first load (the model conversion) come first
            if line.startswith("ready on"):
                break
        else:
            pytest.fail(f"the server exited: {proc.wait()}")
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")  # the README's three lines
        vectors = client.embeddings.create(model="smollm2-135m", input=["what is a cell?"],
                                           extra_body={"input_type": "query"})
        assert len(vectors.data[0].embedding) == 576 and vectors.usage.prompt_tokens > 5
    finally:
        proc.terminate()
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
