"""``llm2vec-rag models``: the embedded models, installed or not, cached or not."""
from __future__ import annotations

import json

import click

from llm2vec_rag.embedded import DEFAULT_MODEL, EMBEDDED
from llm2vec_rag.gguf import cached_dir_for, is_converted
from llm2vec_rag.paths import cache_dir
from llm2vec_rag.runtime import auto_dtype_choice, resolve_device

from .common import json_option


def _status(entry) -> dict:
    installed = entry.installed()
    cached = False
    if installed and not entry.assemble:
        try:
            cached = is_converted(cached_dir_for(entry.gguf_path(cache_dir() / "gguf")))
        except Exception:  # a broken install shows as not cached, never as a crash
            cached = False
    return {
        "name": entry.name,
        "default": entry.name == DEFAULT_MODEL,
        "installed": installed,
        "cached": cached,
        "dim": entry.dim,
        "size_mb": entry.size_mb,
        "family": entry.family,
        "description": entry.description,
        "install": entry.pip,
    }


@click.command()
@json_option
def models(as_json: bool) -> None:
    """List the embedded models: installed, cached, size and dimension."""
    rows = [_status(e) for e in EMBEDDED.values()]
    # what dtype="auto" loads them in on this host, and why (a first call may calibrate, ~1 s, once per host)
    choice = auto_dtype_choice(resolve_device("auto"))
    if as_json:
        for row in rows:
            click.echo(json.dumps({**row, "auto_dtype": choice.dtype, "auto_dtype_reason": choice.reason}))
        return
    click.echo(f"{'name':<16}{'dim':>5}{'size':>8}  {'installed':<10}{'cached':<8}description")
    for r in rows:
        name = r["name"] + (" *" if r["default"] else "")
        click.echo(
            f"{name:<16}{r['dim']:>5}{str(r['size_mb']) + ' MB':>8}  {'yes' if r['installed'] else 'no':<10}"
            f"{'yes' if r['cached'] else 'no':<8}{r['description']}"
        )
        if not r["installed"]:
            click.echo(f"{'':<16}install: {r['install']}")
    click.echo("* default model")
    click.echo(f"dtype auto on this host: {choice.describe()}")
