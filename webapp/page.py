"""The web page: ``/`` and its two assets, straight from ``web/`` (no build step)."""

from __future__ import annotations

from flask import Blueprint, current_app, send_from_directory

page = Blueprint("page", __name__)

#: The only files served from the web directory; everything else is a JSON 404.
ASSETS = ("app.js", "style.css")


@page.get("/")
def index():
    return send_from_directory(current_app.config["WEB_DIR"], "index.html", max_age=0)


@page.get(f"/<any({', '.join(ASSETS)}):name>")
def asset(name: str):
    return send_from_directory(current_app.config["WEB_DIR"], name, max_age=0)
