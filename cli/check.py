"""``llm2vec-rag check``: verify an index (SQLite, chunk counts, FAISS ids and checksum, lexical table) and repair it."""
from __future__ import annotations

import json
import sys

import click

from .common import json_option, quiet_option
from .index import index_dir_option


@click.command()
@index_dir_option
@click.option("--repair", is_flag=True,
              help="Fix what can be fixed from SQLite (FAISS file, lexical table, inconsistent files, leftovers); "
                   "never re-embeds.")
@json_option
@quiet_option
def check(index_dir, repair, as_json, quiet) -> None:
    """Check the index in --index; exit 1 when problems remain."""
    from llm2vec_rag.index.check import check_index

    log = (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))
    report = check_index(index_dir, repair=repair, log=log)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        for line in report.repaired:
            click.echo(f"repaired: {line}")
        for finding in report.findings:
            hint = "" if finding.repairable else " (not repairable here: `llm2vec-rag index FOLDER --rebuild`)"
            click.echo(f"problem: {finding.message}{hint}")
        if report.ok:
            stats = report.stats
            click.echo(f"{index_dir}: ok ({stats.get('chunks', 0)} chunks from {stats.get('files', 0)} files, "
                       f"{stats.get('backend', 'faiss')} {stats.get('index_type', '')})")
        elif not repair and any(f.repairable for f in report.findings):
            click.echo("run `llm2vec-rag check --repair` to fix the repairable problems", err=True)
    if not report.ok:
        sys.exit(1)
