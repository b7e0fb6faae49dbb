"""`guard serve`: the Hub webhook audit service (webhook, workers, read API, dashboard) on embedded defaults.

    GUARD_WEBHOOK_SECRET=... guard serve                     # SQLite file, in-process workers, 127.0.0.1:8080
    guard serve --db postgresql://... --role web             # webhook + dashboard only
    guard serve --db postgresql://... --role worker          # workers only, on other machines
"""

from __future__ import annotations

import pathlib

import click


@click.command("serve")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=pathlib.Path), default=None,
              help="YAML file with any ServiceConfig field (docs/service.md).")
@click.option("--db", "database", default=None, help="SQLite file path or postgresql:// URL [guard-serve.db].")
@click.option("--host", default=None, help="Address to listen on [127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [8080].")
@click.option("--workers", type=int, default=None, help="Worker threads in this process [1].")
@click.option("--role", type=click.Choice(["all", "web", "worker"]), default="all", show_default=True,
              help="What this process runs.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default=None,
              help="Run audits in local sandboxed processes, or as Ray tasks [local].")
@click.option("--ray-address", default=None, help="Ray cluster to join (default: a local Ray instance).")
@click.option("--trust", "trust_file", type=click.Path(dir_okay=False, path_type=pathlib.Path), default=None,
              help="Trust file: which signers each repo may be signed by.")
@click.option("--bot-user-id", "bot_user_ids", multiple=True, help="guard's own Hub user id (repeatable).")
@click.option("--no-report", is_flag=True, help="Do not post discussion comments.")
@click.option("--secret-in-query", is_flag=True, default=None, help="Also accept the secret as ?secret=.")
@click.option("--check", is_flag=True, help="Validate the configuration and the database, then exit.")
@click.option("--json", "as_json", is_flag=True, help="With --check: print the effective configuration as JSON.")
def serve(config_path, database, host, port, workers, role, executor, ray_address, trust_file, bot_user_ids,
          no_report, secret_in_query, check, as_json) -> int:
    """Run the Hub webhook audit service. The webhook secret comes from GUARD_WEBHOOK_SECRET."""
    from guard.service.serve import load_config, require_secret, run

    config = load_config(config_path, database=database, host=host, port=port, workers=workers, executor=executor,
                         ray_address=ray_address, trust_file=str(trust_file.resolve()) if trust_file else None,
                         bot_user_ids=tuple(bot_user_ids) or None, report=False if no_report else None,
                         secret_in_query=secret_in_query)
    if check:
        from guard.service.store import JobStore

        if role != "worker":
            require_secret(config)
        JobStore(config.database).close()
        if as_json:
            from guard.cli._output import emit_json

            emit_json(config.model_dump(mode="json", exclude={"hub": {"token"}}))
        else:
            click.echo(f"guard serve: configuration ok; database {config.database} at the newest schema")
        return 0
    run(config, role=role)
    return 0
