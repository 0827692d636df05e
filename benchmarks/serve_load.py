"""Bounded load test of ``llm2vec-rag serve`` on loopback: served throughput against offline ``encode``.

1. Offline: the model encodes the SciFact documents and queries in this process
   (``encode_documents`` + ``encode_queries``, one call each): texts per second, measured again
   right before every client level (a shared machine's load drifts; each ratio uses its own).
2. Served: ``llm2vec-rag serve`` starts in a subprocess on 127.0.0.1 (any free
   port); for each client count, that many concurrent clients send the same
   texts as OpenAI ``/v1/embeddings`` requests (``--per-request`` texts each,
   base64 replies as the ``openai`` client asks, documents and queries
   interleaved, queries with ``input_type: query``). A 429 is retried after its
   ``Retry-After`` (a sent request is never abandoned). Each level stops sending new requests after
   ``--max-seconds``; the run stops by itself.
3. Reported per level: texts/s, ratio to offline, p50/p95/p99 request latency,
   answered/lost counts, 429s, and the smallest cosine between a served vector
   and the offline one.

    .venv/bin/python benchmarks/serve_load.py --docs 96 --queries 96 --clients 1,8,64

Loopback only; nothing leaves the machine. Writes ``benchmarks/results/serve_load.json``.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, REPO, machine_info, scifact_docs, scifact_queries, write_json  # noqa: E402


class Offline:
    """The same model in this process: ``encode_documents`` + ``encode_queries`` over all the texts, timed."""

    def __init__(self, model: str, docs: list[str], queries: list[str]) -> None:
        from llm2vec_rag import LLM2Vec

        self.encoder = LLM2Vec.from_pretrained(model)
        self.docs, self.queries = docs, queries
        self.encoder.encode_documents(docs[:8], show_progress_bar=False)  # warm-up

    def run(self) -> tuple[float, np.ndarray, np.ndarray]:
        start = time.perf_counter()
        d = self.encoder.encode_documents(self.docs, show_progress_bar=False, normalize_embeddings=True)
        q = self.encoder.encode_queries(self.queries, show_progress_bar=False, normalize_embeddings=True)
        seconds = time.perf_counter() - start
        return (len(self.docs) + len(self.queries)) / seconds, d, q


def engine_only(offline: Offline, rounds: int) -> list[dict]:
    """No HTTP: the server's engine in this process, every text a request of its own, against offline."""
    from llm2vec_rag.integrations.server import Engine, Served

    encoder = offline.encoder
    engine = Engine(lambda: Served(models={"m": encoder})).start()
    engine.ready.wait()
    pairs = [("", d) for d in offline.docs] + [(encoder.query_instruction, q) for q in offline.queries]
    out = []
    try:
        for _ in range(rounds):
            off, _, _ = offline.run()
            start = time.perf_counter()
            with engine.hold():  # all queued at once: the engine packs them (as under many clients)
                futures = [engine.submit_embed("m", [p]) for p in pairs]
            for f in futures:
                f.result()
            packed = len(pairs) / (time.perf_counter() - start)
            start = time.perf_counter()
            for p in pairs:  # one at a time (as one client)
                engine.submit_embed("m", [p]).result()
            single = len(pairs) / (time.perf_counter() - start)
            out.append({"offline_texts_per_s": round(off, 2), "packed_texts_per_s": round(packed, 2),
                        "packed_ratio": round(packed / off, 3), "one_by_one_texts_per_s": round(single, 2),
                        "one_by_one_ratio": round(single / off, 3)})
            print(f"  engine only: offline {off:.2f} texts/s, packed {packed:.2f} ({packed / off:.2f}x), "
                  f"one by one {single:.2f} ({single / off:.2f}x)", file=sys.stderr)
    finally:
        engine.stop()
    return out


def start_server(model: str, max_batch_tokens: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "llm2vec_rag.cli.main", "serve", "--model", model, "--port", "0",
           "--max-batch-tokens", str(max_batch_tokens)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=REPO)
    url = None
    while True:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit(f"the server exited: {proc.wait()}")
        print("  server:", line.rstrip(), file=sys.stderr)
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            url = match.group(1)
        if line.startswith("ready on") and url:
            break
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # keep the pipe drained
    return proc, url


async def run_level(url: str, requests: list[dict], clients: int, max_seconds: float) -> dict:
    import httpx

    queue: asyncio.Queue = asyncio.Queue()
    for i, body in enumerate(requests):
        queue.put_nowait((i, body))
    latencies, answers, retries, sent, failed = [], {}, 0, set(), {}
    deadline = time.perf_counter() + max_seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal retries
        while time.perf_counter() < deadline:
            try:
                i, body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            started = time.perf_counter()
            sent.add(i)
            while True:  # a sent request is retried on 429 until answered: none may be lost
                reply = await http.post(f"{url}/v1/embeddings", json=body)
                if reply.status_code == 429:
                    retries += 1
                    await asyncio.sleep(float(reply.headers.get("retry-after", "1")))
                    continue
                if reply.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                    answers[i] = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
                                  for d in reply.json()["data"]]
                else:
                    failed[i] = reply.status_code
                break

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=max_seconds + 30, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - start
    texts = sum(len(requests[i]["input"]) for i in answers)
    ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    return {"clients": clients, "requests": len(requests), "sent": len(sent), "answered": len(answers),
            "lost": len(sent) - len(answers), "failed_status": sorted(set(failed.values())),
            "not_sent_time_cap": len(requests) - len(sent), "retried_429": retries, "seconds": round(seconds, 2),
            "texts_per_s": round(texts / seconds, 2), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "answers": answers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--docs", type=int, default=96)
    ap.add_argument("--queries", type=int, default=96)
    ap.add_argument("--per-request", type=int, default=4, help="texts per request")
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--max-seconds", type=float, default=120.0, help="cap per client level")
    ap.add_argument("--max-batch-tokens", type=int, default=16384)
    ap.add_argument("--engine-only", type=int, default=0, metavar="ROUNDS",
                    help="instead: time the engine in this process (no HTTP) for ROUNDS rounds")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serve_load.json"))
    args = ap.parse_args()
    if not (DATA / "scifact").is_dir():
        raise SystemExit(f"SciFact not found under {DATA}")
    docs, queries = scifact_docs(args.docs), scifact_queries(args.queries)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below (stops the server)
    offline = Offline(args.model, docs, queries)
    _, want_docs, want_queries = offline.run()
    if args.engine_only:
        rounds = engine_only(offline, args.engine_only)
        out = Path(args.out).with_name("serve_engine.json") if args.out.endswith("serve_load.json") else Path(args.out)
        write_json(out, {"command": "python benchmarks/serve_load.py " + " ".join(sys.argv[1:]), "model": args.model,
                         "docs": len(docs), "queries": len(queries), "rounds": rounds, "machine": machine_info(),
                         "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())})
        return

    requests, expected = [], []
    step = args.per_request
    for i in range(0, max(len(docs), len(queries)), step):
        if i < len(docs):
            requests.append({"model": args.model, "input": docs[i:i + step], "encoding_format": "base64"})
            expected.append(want_docs[i:i + step])
        if i < len(queries):
            requests.append({"model": args.model, "input": queries[i:i + step], "encoding_format": "base64",
                             "input_type": "query"})
            expected.append(want_queries[i:i + step])

    proc, url = start_server(args.model, args.max_batch_tokens)
    levels = []
    try:
        asyncio.run(run_level(url, requests[:4], 2, args.max_seconds))  # warm-up
        for clients in [int(c) for c in args.clients.split(",")]:
            # offline measured right before each level: on a shared machine the two see the same load
            offline_tps, _, _ = offline.run()
            level = asyncio.run(run_level(url, requests, clients, args.max_seconds))
            answers = level.pop("answers")
            cosines = [float(np.dot(a, b)) for i, got in answers.items() for a, b in zip(got, expected[i])]
            level["min_cosine_vs_offline"] = round(min(cosines), 6) if cosines else None
            level["offline_texts_per_s"] = round(offline_tps, 2)
            level["ratio_to_offline"] = round(level["texts_per_s"] / offline_tps, 3)
            levels.append(level)
            print(f"  offline {offline_tps:.2f} texts/s; {clients:>3} clients: {level['texts_per_s']:.2f} texts/s = "
                  f"{level['ratio_to_offline']:.2f}x offline; p50 {level['p50_ms']} ms, p95 {level['p95_ms']} ms, "
                  f"p99 {level['p99_ms']} ms; answered {level['answered']}/{level['sent']} sent "
                  f"({level['requests']} planned), lost {level['lost']}, 429 retried {level['retried_429']}, "
                  f"min cosine {level['min_cosine_vs_offline']}", file=sys.stderr)
        metrics = __import__("httpx").get(f"{url}/metrics").text
    finally:
        proc.terminate()
        proc.wait(120)
    batch_sum = re.search(r"^llm2vec_rag_batch_requests_sum (\S+)$", metrics, re.M)
    batch_count = re.search(r"^llm2vec_rag_batch_requests_count (\S+)$", metrics, re.M)
    result = {"command": "python benchmarks/serve_load.py " + " ".join(sys.argv[1:]), "model": args.model,
              "docs": len(docs), "queries": len(queries), "per_request": step, "levels": levels,
              "mean_requests_per_encode_call": round(float(batch_sum.group(1)) / float(batch_count.group(1)), 2)
              if batch_sum and batch_count and float(batch_count.group(1)) else None,
              "machine": machine_info(), "threads": os.environ.get("OMP_NUM_THREADS"),
              "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    write_json(Path(args.out), result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
