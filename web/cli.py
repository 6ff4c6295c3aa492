"""`darkroom web`: serve the studio, the client galleries and the operations page."""

from __future__ import annotations

import click

from orchestration.db import Database, db_path
from orchestration.gallery_links import web_base_url
from pipeline.kafka_config import producer_config
from pipeline.publisher import Publisher
from pipeline.settings import Settings
from storage import open_store
from web.access import studio_token
from web.app import create_app
from web.context import WebContext
from web.live import LiveFeed


def studio_url(settings: Settings) -> str:
    """The URL that opens the studio: with the token when it is this data dir's generated one."""
    base = web_base_url(settings)
    return f"{base}/" if settings.web.token is not None else f"{base}/?token={studio_token(settings)}"


@click.command("web")
@click.option("--host", default=None, help="Address to listen on (default DARKROOM_WEB__HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default DARKROOM_WEB__PORT, 8077).")
@click.pass_obj
def web_command(settings: Settings, host: str | None, port: int | None) -> None:
    """Serve the studio (/), the clients' galleries (/g/TOKEN) and the operations page (/ops).

    The studio and operations pages need the studio token (DARKROOM_WEB__TOKEN, or the one
    generated into the data dir and shown in the URL printed here); a gallery needs its invite link.
    """
    import uvicorn

    web = settings.web.model_copy(update={k: v for k, v in (("host", host), ("port", port)) if v is not None})
    settings = settings.model_copy(update={"web": web})
    store = open_store(settings.storage)
    publisher = Publisher(producer_config(settings), settings.worker.delivery_timeout_s)
    ctx = WebContext(settings, Database(db_path(settings)), store, publisher, LiveFeed(settings, store),
                     studio_token(settings))
    click.echo(f"darkroom web: studio {studio_url(settings)} · operations {web_base_url(settings)}/ops", err=True)
    try:
        # A short graceful shutdown: open event streams never end by themselves.
        uvicorn.run(create_app(ctx), host=web.host, port=web.port, log_level=settings.log_level.lower(),
                    timeout_graceful_shutdown=3, access_log=False)
    finally:
        publisher.close()
