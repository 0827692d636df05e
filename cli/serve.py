"""``llm2vec-rag serve``: embeddings (OpenAI / TEI / Ollama shapes) and index search over HTTP."""
from __future__ import annotations

import os
import sys
import threading

import click

from llm2vec_rag.embedded import DEFAULT_MODEL
from llm2vec_rag.errors import LLM2VecError

from .common import quiet_option

API_KEY_ENV = "LLM2VEC_RAG_API_KEY"


@click.command()
@click.option("--model", "-m", default=DEFAULT_MODEL, show_default=True,
              help="Embedded model name, .gguf file, model directory or Hub id.")
@click.option("--adapter", "adapters", multiple=True, metavar="[NAME=]DIR",
              help="NAME=DIR: also serve the base with this LoRA adapter as model NAME (repeatable); "
                   "a bare DIR is stacked on the base, as in the other commands.")
@click.option("--name", "served_name", default=None,
              help="The model name clients send (default: --model, or a path's last part).")
@click.option("--index", "index_dir", default=None, type=click.Path(file_okay=False),
              help="Serve /v1/search over this index (built with `llm2vec-rag index`).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0: any free port.")
@click.option("--api-key", default=None, envvar=API_KEY_ENV, show_envvar=True,
              help="Require 'Authorization: Bearer KEY' on every route but /health and /metrics.")
@click.option("--pooling", "pooling_mode", default=None,
              type=click.Choice(["mean", "weighted_mean", "eos_token", "last_token", "bos_token"]))
@click.option("--dtype", default="auto", show_default=True, type=click.Choice(["auto", "float32", "bfloat16", "float16"]))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--max-length", type=click.IntRange(min=1), default=None,
              help="Tokens per input; longer inputs are cut (or refused with truncate=false).")
@click.option("--max-batch-tokens", type=click.IntRange(min=1), default=16384, show_default=True,
              help="Tokens of concurrent requests packed into one encode call.")
@click.option("--max-concurrent-requests", type=click.IntRange(min=1), default=512, show_default=True,
              help="Requests queued or running; beyond this the server answers 429 with Retry-After.")
@click.option("--max-inputs", type=click.IntRange(min=1), default=2048, show_default=True,
              help="Inputs per request; beyond: 413.")
@click.option("--max-request-bytes", type=click.IntRange(min=1), default=16 * 1024 * 1024, show_default=True,
              help="Request body size limit; beyond: 413.")
@click.option("--compile", "compile_model", is_flag=True, help="torch.compile the model (see docs/performance.md).")
@click.option("--access-log", is_flag=True, help="Log every request (uvicorn's access log).")
@quiet_option
def serve(model, adapters, served_name, index_dir, host, port, api_key, pooling_mode, dtype, device, max_length,
          max_batch_tokens, max_concurrent_requests, max_inputs, max_request_bytes, compile_model, access_log,
          quiet) -> None:
    """Serve embeddings (OpenAI /v1/embeddings, TEI /embed, Ollama /api/embed) and /v1/search over HTTP."""
    from llm2vec_rag.integrations.server.app import create_app
    from llm2vec_rag.integrations.server.loading import loader, plan_models
    from llm2vec_rag.integrations.server.runner import address, bind_socket, make_server
    from llm2vec_rag.integrations.server.settings import ServerSettings

    log = (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))
    if index_dir is not None and not os.path.isdir(index_dir):
        raise LLM2VecError(f"no index at {index_dir}: run `llm2vec-rag index FOLDER --index {index_dir}` first")
    plan = plan_models(model, adapters, name=served_name, index_dir=index_dir, pooling_mode=pooling_mode,
                       max_length=max_length, dtype=dtype, device=device, compile=compile_model)
    settings = ServerSettings(api_key=api_key or None, max_batch_tokens=max_batch_tokens,
                              max_concurrent_requests=max_concurrent_requests, max_inputs=max_inputs,
                              max_request_bytes=max_request_bytes)
    sock = bind_socket(host, port)  # "port in use" before minutes of loading
    failure: list[BaseException] = []
    server_box: list = []

    def on_failure(exc: BaseException) -> None:
        failure.append(exc)
        if server_box:
            server_box[0].should_exit = True

    app = create_app(loader(plan, log=log), settings, on_failure=on_failure, aliases=plan.aliases)
    server = make_server(app, quiet=quiet, access_log=access_log)
    server_box.append(server)
    engine = app.state.server.engine
    url = address(sock)
    names = ", ".join([plan.name, *(n for n, _ in plan.named_adapters)])
    log(f"llm2vec-rag serve: listening on {url} (models: {names}{'; index ' + index_dir if index_dir else ''}; "
        f"auth {'on' if settings.api_key else 'off'}); loading...")

    def announce() -> None:
        engine.ready.wait()
        if engine.state == "ready":
            cards = app.state.server.cards
            dims = ", ".join(f"{n} {c.dim}-d" for n, c in cards.items())
            log(f"ready on {url} in {engine.load_seconds:.1f} s ({dims}); OpenAI base_url {url}/v1")

    threading.Thread(target=announce, daemon=True).start()
    server.run(sockets=[sock])
    if failure:
        exc = failure[0]
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, (LLM2VecError, OSError)):
            raise LLM2VecError(f"cannot serve: {message}")
        raise LLM2VecError(f"cannot serve: {type(exc).__name__}: {message}")
    if not quiet:
        click.echo("stopped", err=True)
    sys.stdout.flush()
