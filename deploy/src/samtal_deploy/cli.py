"""`samtal-deploy`: the one command line of deploy/ (the Makefile's targets call it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from samtal_deploy import DEPLOY

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
def run(
    port: Annotated[int, typer.Option(help="the gateway's port")] = 8080,
    base_port: Annotated[int, typer.Option(help="the first port of the services")] = 8100,
    run_dir: Annotated[Path, typer.Option(help="state, keys, logs and mail")] = Path(".run"),
    replicas: Annotated[
        str, typer.Option(help="api replicas: one number, or e.g. matching=2,catalog=3")
    ] = "1",
    fresh: Annotated[
        bool, typer.Option("--fresh", help="start from an empty database (drops it first)")
    ] = False,
) -> None:
    """The whole platform on this machine behind the gateway (Ctrl-C stops it)."""
    from samtal_deploy import local_run

    local_run.main(port=port, base_port=base_port, run_dir=run_dir, replicas=replicas, fresh=fresh)


gateway = typer.Typer(help="The Envoy gateway's configuration.", no_args_is_help=True)
app.add_typer(gateway, name="gateway")


@gateway.command("local")
def gateway_local(
    out: Annotated[Path, typer.Option(help="where compose mounts them from")] = DEPLOY / ".local",
) -> None:
    """Write compose's gateway config, key pair and env file (what `make up` mounts)."""
    from samtal_deploy.gateway import render

    typer.echo(render.write_local(out))


@app.command()
def demo(
    run_dir: Annotated[Path, typer.Option(help="where `make run` keeps its state")] = Path(".run"),
) -> None:
    """A guided journey through the gateway against a running `make run`."""
    from samtal_deploy import demo as journeys

    journeys.main(run_dir)
