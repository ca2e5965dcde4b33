"""`samtal-deploy`: the one command line of deploy/ (the Makefile's targets call it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Run, demonstrate and generate the Samtal platform.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def services() -> None:
    """The services, as their packages declare them (entry points `samtal.services`)."""
    from samtal_deploy.services import SERVICES

    for service in SERVICES:
        typer.echo(service)


@app.command()
def generate(
    check: Annotated[
        bool, typer.Option("--check", help="write nothing; fail when a file is stale")
    ] = False,
) -> None:
    """Write what derives from the code: topics, compose, the Kubernetes base's generated part."""
    from samtal_deploy import generate as generated

    stale = generated.write(check=check)
    if stale:
        typer.echo(f"stale (run `samtal-deploy generate`): {', '.join(stale)}", err=True)
        raise typer.Exit(1)


@app.command("settings-doc")
def settings_doc(
    write: Annotated[bool, typer.Option("--write", help="rewrite README.md's block")] = False,
) -> None:
    """The configuration reference of README.md, from the settings classes."""
    from samtal_deploy import settings_doc as doc

    if write:
        doc.write()
    else:
        typer.echo(doc.render())


@app.command()
def demo(
    run_dir: Annotated[Path, typer.Option(help="where `make run` keeps its state")] = Path(".run"),
) -> None:
    """A guided journey through the gateway against a running `make run`."""
    from samtal_deploy import demo as journeys

    journeys.main(run_dir)
