"""The labelling page's server: FastAPI on uvicorn, in a thread beside the training loop.

The loop hands a round to ``LabellingServer.ask`` and blocks; the page polls ``/api/round``, shows
the images, and posts the person's labels to ``/api/round/{epoch}/labels``. The server checks the
submission (``hero_bench.web_rounds.check_submission``) and passes it to the loop, which writes it
to the ledger and calls ``done``; only then does the page get its 200, so a round the page saw
accepted is on disk. A second post for a round already accepted (a double click, a reload, two
tabs) gets 409 and changes nothing; so does a post for any round but the one waiting.

Safe by default: it listens on 127.0.0.1 unless told otherwise; every request needs the random
token printed with the URL (query ``token=`` or header ``X-Token``), else 403; image requests name
an image id of the round (a fixed pattern), never a path, so no file outside the round's folder can
be served.
"""

# no `from __future__ import annotations` here: FastAPI reads the route functions' annotations
# (Request) at runtime, and the web stack is imported inside build_app, not at module level
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from hero_bench.errors import HeroBenchError
from hero_bench.web_rounds import Round, Submission, SubmissionError, check_submission

PAGE = "web_page.html"


class LabellingClosedError(HeroBenchError):
    """The labelling server stopped while a round was waiting for labels."""


@dataclass
class _Pending:
    round: Round
    submitted: threading.Event = field(default_factory=threading.Event)
    recorded: threading.Event = field(default_factory=threading.Event)
    submission: Submission | None = None
    error: str | None = None


class LabellingServer:
    """Serves one run's rounds to a person; ``ask`` blocks the loop until the round is labelled."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 record_timeout_s: float = 60.0):
        """``port`` 0: a free port. ``record_timeout_s``: how long a post waits for the loop to
        write the accepted labels to the ledger before it answers 503."""
        self.host = host
        self.port = port or _free_port(host)
        self.token = token or secrets.token_urlsafe(24)
        self.record_timeout_s = record_timeout_s
        self._lock = threading.Lock()
        self._pending: _Pending | None = None
        self._recorded_epochs: set[int] = set()
        self._progress: dict[str, Any] = {"status": "starting"}
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/?token={self.token}"

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> "LabellingServer":
        import uvicorn  # deferred: the web stack is only needed when a person labels

        config = uvicorn.Config(build_app(self), host=self.host, port=self.port, log_level="warning",
                                access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="labelling-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise HeroBenchError(f"the labelling server could not listen on {self.host}:{self.port}; "
                                     "accepted: a free port (--web-port 0 picks one)")
            time.sleep(0.02)
        self._progress = {"status": "waiting"}
        return self

    def stop(self) -> None:
        with self._lock:
            self._progress = {"status": "finished"}
            if self._pending is not None:
                self._pending.error = "closed"
                self._pending.submitted.set()
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=10)

    def __enter__(self) -> "LabellingServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the loop's side ----------------------------------------------------------------------
    def ask(self, rnd: Round) -> Submission:
        """Show ``rnd`` and block until the page sends a valid submission for it."""
        pending = _Pending(rnd)
        with self._lock:
            self._pending = pending  # while a round is pending, current() shows it, not _progress
        pending.submitted.wait()
        if pending.error is not None:
            raise LabellingClosedError(f"the labelling server stopped while round {rnd.epoch} waited for labels; "
                                       "rerun the same command to resume at this round")
        return pending.submission

    def done(self, rnd: Round) -> None:
        """The submission of ``rnd`` is in the ledger: answer the page, take no more posts for it."""
        with self._lock:
            self._recorded_epochs.add(rnd.epoch)
            pending, self._pending = self._pending, None
            self._progress = {"status": "waiting"}
        if pending is not None:
            pending.recorded.set()

    def refused(self, rnd: Round, reason: str) -> None:
        """The loop could not record the submission of ``rnd`` (it raised): tell the page."""
        with self._lock:
            pending, self._pending = self._pending, None
            self._progress = {"status": "failed", "reason": reason}
        if pending is not None:
            pending.error = reason
            pending.recorded.set()

    # -- the page's side ----------------------------------------------------------------------
    def authorised(self, token: str | None) -> bool:
        return token is not None and secrets.compare_digest(token.encode(), self.token.encode())

    def current(self) -> dict:
        with self._lock:
            pending = self._pending
            if pending is None:
                return dict(self._progress)
            if pending.submitted.is_set():  # (another tab sees this while the first one's post is written)
                return {"status": "recording", "epoch": pending.round.epoch}
            view = pending.round.to_json()
        for image in view["images"]:
            image.pop("metadata")  # the ground truth is the oracle's, not the person's
        return {"status": "labelling", **view}

    def image(self, image_id: str):
        with self._lock:
            rnd = None if self._pending is None else self._pending.round
        return None if rnd is None else rnd.image_file(image_id)

    def submit(self, epoch: int, payload: Any) -> tuple[int, str]:
        """(HTTP status, message) for a post of labels for round ``epoch``."""
        with self._lock:
            pending = self._pending
            if epoch in self._recorded_epochs:
                return 409, f"round {epoch} is already recorded; nothing was changed"
            if pending is None or pending.round.epoch != epoch:
                waiting = "no round" if pending is None else f"round {pending.round.epoch}"
                return 409, f"round {epoch} is not waiting for labels ({waiting} is); nothing was changed"
            if pending.submitted.is_set():
                return 409, f"round {epoch} was already submitted and is being recorded; nothing was changed"
            try:
                pending.submission = check_submission(pending.round, payload)
            except SubmissionError as exc:
                return 422, str(exc)
            pending.submitted.set()
        if not pending.recorded.wait(self.record_timeout_s):
            return 503, f"round {epoch} was accepted but not yet recorded; reload the page to see whether it was"
        if pending.error is not None:
            return 500, f"round {epoch} could not be recorded: {pending.error}"
        return 200, f"round {epoch} recorded"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def build_app(server: LabellingServer):
    """The FastAPI app of ``server``: the page, the current round, its images and the submissions."""
    from fastapi import FastAPI, Request  # deferred: the web stack is only needed when a person labels
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

    app = FastAPI(title="hero-bench labelling", docs_url=None, redoc_url=None, openapi_url=None)
    page = resources.files("hero_bench").joinpath(PAGE).read_text(encoding="utf-8")

    def refusal(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        token = request.query_params.get("token") or request.headers.get("x-token")
        if not server.authorised(token):
            return refusal(403, "a valid token is required: open the URL that `hero-bench train` printed")
        return await call_next(request)

    @app.get("/")
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/api/round")
    def current_round() -> JSONResponse:
        return JSONResponse(server.current(), headers={"Cache-Control": "no-store"})

    @app.get("/api/image/{image_id}.png")
    def image(image_id: str):
        path = server.image(image_id)
        if path is None or not path.is_file():
            return refusal(404, f"{image_id!r} is not an image of the round being labelled")
        return FileResponse(path, media_type="image/png")

    @app.post("/api/round/{epoch}/labels")
    async def submit(epoch: int, request: Request) -> JSONResponse:
        try:
            payload = await request.json()
        except ValueError:
            return refusal(400, "the body must be JSON")
        # the wait for the ledger write blocks: run it off the event loop
        import anyio  # deferred with fastapi, which depends on it

        status, message = await anyio.to_thread.run_sync(server.submit, epoch, payload)
        if status != 200:
            return refusal(status, message)
        return JSONResponse({"ok": True, "message": message})

    return app
