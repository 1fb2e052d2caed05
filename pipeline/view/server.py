"""The viewer's web server (aiohttp): the page, its JSON API and frame pictures, read-only.

Every request must carry the token printed in the URL (`?token=`); the first one that does
gets a cookie with it, so the page's own requests need not repeat it. Only GET and HEAD are
routed, so nothing can be written. Pictures are served only for sources the job's `frames`
table names, matched exactly: a path the job did not read (`..`, `/etc/passwd`, `file://`)
is refused before anything is opened. The page's files are served from a fixed list.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import signal
from importlib import resources
from typing import Callable, Optional

from aiohttp import web

from maskray.models.categories import COCO_SKELETON
from maskray.errors import UsageError
from maskray.pipeline.render.drawing import PALETTE
from maskray.pipeline.view.frames import FramePictures, SourceGone
from maskray.pipeline.view.gallery_filter import GalleryFilter
from maskray.pipeline.view.queries import ViewQueries

STATIC_FILES = {"index.html": "text/html", "app.js": "text/javascript", "masks.js": "text/javascript",
                "style.css": "text/css"}
THUMB_SIDE = 320
MAX_SIDE = 4096


def new_token() -> str:
    return secrets.token_urlsafe(24)


def build_app(output_uri: str, token: str, cookie_name: str = "maskray_view") -> web.Application:
    """The application for one output. UsageError when `output_uri` holds no maskray output."""
    queries = ViewQueries(output_uri)
    pictures = FramePictures(queries.uri)

    @web.middleware
    async def require_token(request: web.Request, handler):
        given = request.query.get("token") or request.cookies.get(cookie_name) or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            return web.json_response({"error": "this viewer needs the token from the URL it printed"}, status=403)
        response = await handler(request)
        if request.query.get("token"):
            response.set_cookie(cookie_name, token, httponly=True, samesite="Strict")
        response.headers["Cache-Control"] = "no-store" if request.path.startswith("/api/") else "private, max-age=60"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @web.middleware
    async def one_line_errors(request: web.Request, handler):
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except (UsageError, ValueError, KeyError) as error:
            return web.json_response({"error": _line(error) or "bad request"}, status=400)
        except Exception as error:  # a bug or a store that failed: one line for the page, not a traceback
            return web.json_response({"error": f"{type(error).__name__}: {_line(error)}"}, status=500)

    async def run(function: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    def known_source(request: web.Request) -> tuple[str, bool]:
        source = request.query.get("source", "")
        is_image = queries.sources().get(source)
        if is_image is None:
            raise web.HTTPForbidden(text=json.dumps({"error": "not a source of this output"}),
                                    content_type="application/json")
        return source, is_image

    async def page(request: web.Request) -> web.Response:
        return static_file("index.html")

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        return static_file(name)

    async def config(request: web.Request) -> web.Response:
        return web.json_response({"output": queries.uri, "palette": PALETTE,
                                  "skeleton": [(a - 1, b - 1) for a, b in COCO_SKELETON],  # 0-based
                                  "categories": await run(queries.categories),
                                  "sources": await run(queries.source_list)})

    async def overview(request: web.Request) -> web.Response:
        return web.json_response(await run(queries.overview))

    async def gallery(request: web.Request) -> web.Response:
        q = request.query
        chosen = GalleryFilter(
            category=q.get("category") or None, min_score=_number(q, "min_score", float),
            max_score=_number(q, "max_score", float), source=q.get("source") or None,
            track=_number(q, "track", int), where=q.get("where") or None, sort=q.get("sort") or "score")
        result = await run(queries.gallery, chosen, _number(q, "page", int) or 0, _number(q, "per_page", int) or 24)
        return web.json_response(result)

    async def frame(request: web.Request) -> web.Response:
        source, _ = known_source(request)
        found = await run(queries.frame, source, _number(request.query, "frame", int) or 0)
        if found is None:
            raise web.HTTPNotFound(text=json.dumps({"error": "no such frame"}), content_type="application/json")
        return web.json_response(found)

    async def track(request: web.Request) -> web.Response:
        source, _ = known_source(request)
        return web.json_response(await run(queries.track, source, _number(request.query, "track", int) or 0))

    async def image(request: web.Request) -> web.Response:
        source, is_image = known_source(request)
        q = request.query
        side = min(MAX_SIDE, max(0, _number(q, "max", int) or 0))
        crop = tuple(float(v) for v in q["crop"].split(",")) if q.get("crop") else None
        if crop is not None and len(crop) != 4:
            raise ValueError("crop is x1,y1,x2,y2")
        try:
            data, kind = await run(pictures.picture, source, _number(q, "frame", int) or 0, is_image, side, crop)
        except SourceGone as gone:
            return web.json_response({"error": str(gone), "missing": True}, status=404)
        return web.Response(body=data, content_type=kind)

    app = web.Application(middlewares=[require_token, one_line_errors])
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static)
    for path, handler in (("config", config), ("overview", overview), ("gallery", gallery), ("frame", frame),
                          ("track", track), ("image", image)):
        app.router.add_get(f"/api/{path}", handler)
    return app


def static_file(name: str) -> web.Response:
    body = resources.files("maskray.pipeline.view").joinpath("static", name).read_bytes()
    return web.Response(body=body, content_type=STATIC_FILES[name], charset="utf-8")


def _line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else ""


def _number(query, name: str, kind) -> Optional[float]:
    text = query.get(name, "")
    if text == "":
        return None
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None


async def serve(output_uri: str, host: str, port: int, echo: Callable[[str], None],
                token: Optional[str] = None) -> None:
    """Serve until cancelled; prints the URL (with the token) once listening."""
    token = token or new_token()
    # Cookies are per host, not per port: a name of this token's own keeps two viewers apart.
    app = build_app(output_uri, token, cookie_name="maskray_view_" + hashlib.sha256(token.encode()).hexdigest()[:12])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise UsageError(f"cannot listen on {host}:{port}: {error.strerror or error} "
                         "(pass --port N, or --port 0 for a free one)") from None
    bound = runner.addresses[0][1]
    shown = f"[{host}]" if ":" in host else host
    echo(f"maskray view: {output_uri}")
    echo(f"  open http://{shown}:{bound}/?token={token}")
    echo("  (Ctrl+C stops it)")
    stop = asyncio.Event()
    handled = _stop_on_signals(stop)
    try:
        await stop.wait()
    finally:
        for number in handled:
            asyncio.get_running_loop().remove_signal_handler(number)
        await runner.cleanup()


def _stop_on_signals(stop: asyncio.Event) -> list:
    """Ctrl+C (SIGINT) and SIGTERM set `stop`, through the loop's own signal handling: the
    server then closes cleanly on either, also where it was started with SIGINT ignored (from
    a script's background), which Python would never turn into a KeyboardInterrupt.
    Off the main thread (a viewer run inside another program) the caller stops it instead."""
    loop, handled = asyncio.get_running_loop(), []
    for number in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(number, stop.set)
            handled.append(number)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    return handled
