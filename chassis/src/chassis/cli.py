"""Command lines: each service's (`samtal-booking api|worker|migrate|dead-letters`) and
the platform's own (`samtal token`)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated, cast

import typer
import uvicorn

from chassis import auth, db
from chassis.app import Process, ServiceDefinition, build
from chassis.deadletters import list_dead_letters, replay
from chassis.settings import ServiceSettings


def service_cli(definition: ServiceDefinition) -> typer.Typer:
    cli = typer.Typer(help=f"Samtal {definition.name}", no_args_is_help=True)
    letters = typer.Typer(help="Inspect and replay dead letters", no_args_is_help=True)
    cli.add_typer(letters, name="dead-letters")

    def settings() -> ServiceSettings:
        return definition.settings_class()

    def serve(process: Process, port: int | None) -> None:
        s = settings()
        if port:  # the port also names this replica in its consumer groups (static membership)
            s = s.model_copy(update={"http_port": port})
        app = build(definition, s, process)
        uvicorn.run(
            app,
            host=s.http_host,
            port=s.http_port,
            log_level="warning",
            lifespan="on",
            # Longer than the gateway keeps an idle upstream connection (30 s): the
            # gateway, not the api, closes it, so no request meets a closing connection.
            timeout_keep_alive=75,
        )

    @cli.command()
    def api(port: Annotated[int | None, typer.Option(help="HTTP port")] = None) -> None:
        """Serve the HTTP API."""
        serve("api", port)

    @cli.command()
    def worker(
        port: Annotated[int | None, typer.Option(help="health/metrics port")] = None,
    ) -> None:
        """Run the event consumers and the outbox relay."""
        serve("worker", port)

    @cli.command()
    def migrate() -> None:
        """Create the service's role and schema, then apply its migrations."""
        s = settings()
        asyncio.run(db.bootstrap_role(s.database_url, s.role, s.db_password.get_secret_value()))
        typer.echo(db.migrate(s, definition.migrations) or f"{s.schema}: up to date")

    @letters.command("list")
    def list_(limit: int = 100) -> None:
        """List dead letters: reference, consumer, attempts, error."""
        for d in asyncio.run(list_dead_letters(settings(), limit)):
            typer.echo(
                f"{d.ref}\t{d.consumer}\tattempts={d.headers.get('x-dead-letter-attempts')}"
                f"\t{d.original_topic}\t{d.error}"
            )

    @letters.command("replay")
    def replay_(refs: list[str]) -> None:
        """Publish the chosen dead letters (partition:offset) to their original topics again."""
        for d in asyncio.run(replay(settings(), refs)):
            typer.echo(f"replayed {d.ref} -> {d.original_topic}")

    return cli


platform = typer.Typer(help="Samtal platform tools", no_args_is_help=True)


@platform.command()
def token(
    role: Annotated[str, typer.Option(help="client, therapist, clinician or admin")],
    key_file: Annotated[Path, typer.Option(help="PEM private key")],
    subject: Annotated[str | None, typer.Option(help="person id (default: a new one)")] = None,
    hours: float = 8,
) -> None:
    """Mint a token for local use."""
    from datetime import timedelta

    if role not in auth.ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(auth.ROLES)}")
    known_role = cast(auth.Role, role)
    typer.echo(
        auth.mint(
            key_file.read_text(),
            subject or uuid.uuid4(),
            known_role,
            ttl=timedelta(hours=hours),
        )
    )


@platform.command()
def keys(directory: Path) -> None:
    """Write a fresh RS256 key pair (private.pem, public.pem) for local runs."""
    private, public = auth.generate_keypair()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "private.pem").write_text(private)
    (directory / "public.pem").write_text(public)
    typer.echo(directory / "public.pem")


def main() -> None:
    platform()
