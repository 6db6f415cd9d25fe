"""Swagger UI for the job, served from the swagger-ui-bundle package (no CDN needed)."""

from __future__ import annotations

import html
import importlib.util
import json
import os
from functools import cache

ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js", "favicon-32x32.png")


@cache
def assets_dir() -> str | None:
    spec = importlib.util.find_spec("swagger_ui_bundle")
    if spec is None or not spec.submodule_search_locations:
        return None
    vendor = os.path.join(next(iter(spec.submodule_search_locations)), "vendor")
    versions = (
        sorted(d for d in os.listdir(vendor) if d.startswith("swagger-ui-")) if os.path.isdir(vendor) else []
    )
    return os.path.join(vendor, versions[-1]) if versions else None


def asset_path(name: str) -> str | None:
    directory = assets_dir()
    if name not in ASSETS or directory is None:
        return None
    path = os.path.join(directory, name)
    return path if os.path.isfile(path) else None


def page(title: str, prefix: str) -> bytes:
    """`prefix` is where the job is mounted for this request ("" or "/pub/job/NAME/VERSION")."""
    t = html.escape(title)
    assets = f"{prefix}/docs/assets"
    spec_url = json.dumps(prefix + "/openapi.json").replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{t}</title>
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: {spec_url},
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: true,
  displayRequestDuration: true,
  presets: [SwaggerUIBundle.presets.apis],
}});
</script>
</body>
</html>
""".encode()
