"""The Flask application factory: HTTP for bookings, shows, auth, my page and operations."""
import os
import secrets
from pathlib import Path

from flask import Flask

from models import db
from web.config import Config
from web.extensions import api, jwt, migrate


def create_app(config: dict | None = None) -> Flask:
    instance = os.environ.get("BOXOFFICE_INSTANCE")
    app = Flask(__name__, instance_path=os.path.abspath(instance) if instance else None,
                instance_relative_config=True)
    app.config.from_object(Config)
    if config:
        app.config.update(config)
    app.json.sort_keys = False
    from web.parsing import AsciiIntegerConverter
    app.url_map.converters["int"] = AsciiIntegerConverter
    if not app.config.get("JWT_SECRET_KEY"):
        app.config["JWT_SECRET_KEY"] = _instance_secret(Path(app.instance_path))

    from observability import configure_logging
    from web import metrics, observability
    configure_logging()
    observability.init_app(app)
    metrics.init_app(app)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"))
    jwt.init_app(app)
    api.init_app(app)

    from web import admin, auth, bookings, checkins, errors, mypage, ops, queue, seat_maps, shows, webhooks
    for module in (auth, seat_maps, shows, queue, bookings, checkins, mypage, ops, admin, webhooks):
        api.register_blueprint(module.blp)
    errors.init_app(app, api)
    from web import docs, pages, ratelimit
    docs.init_app(app)
    app.register_blueprint(pages.blp)  # HTML pages, outside the OpenAPI document (web/pages.py)
    ratelimit.init_app(app)

    from web.cli import shows_cli, users_cli
    app.cli.add_command(users_cli)
    app.cli.add_command(shows_cli)

    from gateway.client import GatewayClient
    app.extensions["payment_gateway"] = GatewayClient(app.config["GATEWAY_URL"],
                                                      timeout=app.config["GATEWAY_TIMEOUT_S"])

    from tasks import celery_init_app
    celery_init_app(app)
    return app


def _instance_secret(instance: Path) -> str:
    """A signing key generated once per installation, kept in the instance folder, never in git."""
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        draft = instance / f".secret_key.{os.getpid()}"
        draft.write_text(secrets.token_urlsafe(48))
        draft.chmod(0o600)
        try:
            os.link(draft, path)  # atomic: concurrent first starts agree on one key
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()
