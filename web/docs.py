"""GET /docs: Swagger UI on the generated OpenAPI spec, its files served by this app (no CDN).

flask-smorest renders the page (OPENAPI_SWAGGER_UI_PATH) and loads the UI from
OPENAPI_SWAGGER_UI_URL; this blueprint serves those files from the flask-swagger-ui package.
"""
from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Flask, send_from_directory

ASSETS = Path(flask_swagger_ui.__file__).resolve().parent / "dist"
ALLOWED = {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "index.css",
           "favicon-16x16.png", "favicon-32x32.png", "oauth2-redirect.html", "oauth2-redirect.js"}

blp = Blueprint("docs_assets", __name__)


@blp.get("/docs/assets/<name>")
def asset(name: str):
    if name not in ALLOWED:
        from flask import abort
        abort(404)
    return send_from_directory(ASSETS, name, max_age=24 * 3600)


def init_app(app: Flask) -> None:
    if not (ASSETS / "swagger-ui-bundle.js").exists():
        raise RuntimeError(f"Swagger UI files are missing from {ASSETS}; pip install -r requirements.txt")
    app.register_blueprint(blp)
