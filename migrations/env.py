"""Alembic environment for the lwdp catalog.

lwdp runs migrations itself, passing an open connection (already inside a
``BEGIN IMMEDIATE`` transaction on SQLite) in ``config.attributes["connection"]``.
Developers can also run ``alembic upgrade head`` with ``sqlalchemy.url`` set in alembic.ini.
Nothing here imports lwdp, and logging is left as the caller configured it.
"""

from alembic import context
from sqlalchemy import engine_from_config, pool


def run_migrations(connection) -> None:
    context.configure(connection=connection, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


config = context.config
if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    run_migrations(config.attributes["connection"])
else:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        run_migrations(connection)
