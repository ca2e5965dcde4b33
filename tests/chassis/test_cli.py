"""The command lines: minting tokens, migrating, listing and replaying dead letters."""

import uuid

import jwt
from typer.testing import CliRunner

from chassis import auth
from chassis.cli import platform, service_cli
from chassis.infra import run_blocking
from tests.chassis.ledger import LEDGER, review

runner = CliRunner()


def test_keys_and_a_minted_token_verify(tmp_path, settings_for) -> None:
    made = runner.invoke(platform, ["keys", str(tmp_path)])
    assert made.exit_code == 0, made.output
    person = uuid.uuid4()
    minted = runner.invoke(
        platform,
        [
            "token",
            "--role",
            "clinician",
            "--key-file",
            str(tmp_path / "private.pem"),
            "--subject",
            str(person),
        ],
    )
    assert minted.exit_code == 0, minted.output
    token = minted.output.strip()
    settings = settings_for(
        LEDGER.settings_class, jwt_public_keys=[(tmp_path / "public.pem").read_text()]
    )
    principal = auth.verify(token, settings)
    assert (principal.subject, principal.role) == (person, "clinician")
    assert jwt.get_unverified_header(token)["alg"] == "RS256"


def test_an_unknown_role_is_refused(tmp_path) -> None:
    runner.invoke(platform, ["keys", str(tmp_path)])
    refused = runner.invoke(
        platform, ["token", "--role", "root", "--key-file", str(tmp_path / "private.pem")]
    )
    assert refused.exit_code != 0
    assert "role must be one of" in refused.output


def test_migrate_lists_and_replays_from_the_command_line(
    settings_for, database_dsn, kafka_bootstrap, topic_prefix, monkeypatch
) -> None:
    env = {
        "SAMTAL_LEDGER_DATABASE_URL": database_dsn,
        "SAMTAL_LEDGER_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "SAMTAL_LEDGER_KAFKA_IDEMPOTENCE": "false",
        "SAMTAL_LEDGER_TOPIC_PREFIX": topic_prefix,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cli = service_cli(LEDGER)
    migrated = runner.invoke(cli, ["migrate"])
    assert migrated.exit_code == 0, migrated.output

    # A dead letter, put there the way the consumer would.
    settings = settings_for(LEDGER.settings_class)
    broken = review()
    dead_topic = settings.topic("ledger.dead-letters.v1")

    async def put_dead_letter() -> None:
        from aiokafka import AIOKafkaProducer

        from contracts import Envelope

        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(
                dead_topic,
                Envelope.wrap(broken).to_bytes(),
                key=b"k",
                headers=[
                    ("x-dead-letter-error", b"failed: RuntimeError: boom"),
                    ("x-dead-letter-consumer", b"ledger-recorder"),
                    ("x-dead-letter-attempts", b"5"),
                    ("x-original-topic", settings.topic("catalog.review-published.v1").encode()),
                ],
            )
        finally:
            await producer.stop()

    run_blocking(put_dead_letter())
    listed = runner.invoke(cli, ["dead-letters", "list"])
    assert listed.exit_code == 0, listed.output
    line = next(line for line in listed.output.splitlines() if "boom" in line)
    ref = line.split("\t")[0]
    assert "ledger-recorder" in line and "attempts=5" in line
    replayed = runner.invoke(cli, ["dead-letters", "replay", ref])
    assert replayed.exit_code == 0, replayed.output
    assert f"replayed {ref} -> {settings.topic('catalog.review-published.v1')}" in replayed.output
    missing = runner.invoke(cli, ["dead-letters", "replay", "0:999999"])
    assert missing.exit_code != 0
