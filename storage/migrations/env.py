"""Alembic environment: the models' metadata, batch mode on SQLite, a connection handed in by govcon."""

from alembic import context
from sqlalchemy import engine_from_config, pool
from sqlalchemy.engine import Connection

from storage import models  # noqa: F401  (registers every table on the metadata)
from storage.db import normalise_url

target_metadata = models.ALL_TABLES
config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    main_url = config.get_main_option("sqlalchemy.url")
    if main_url is None:
        raise SystemExit("govcon migrations need a connection or sqlalchemy.url in the Alembic config")
    url = normalise_url(main_url)
    engine = engine_from_config({"sqlalchemy.url": url}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("govcon migrations run online only: use `govcon db migrate`")
run_migrations_online()
