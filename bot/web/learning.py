"""The console's examples (search, filter, teach several phrasings at once, remove, import a JSONL file
with progress and line-numbered errors) and training (a run's live status and loss curve, every
version's gate result, what a candidate answers differently, retrain, promote, roll back)."""

from __future__ import annotations

import logging
import tempfile
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.jsonl import JsonlFileError
from bot.stores.examples import parse_examples_file
from bot.web.auth import check_csrf
from bot.web.charts import line_chart
from bot.web.console import back

if TYPE_CHECKING:
    from bot.types import Example, LoraVersion
    from bot.web.console import Console

log = logging.getLogger(__name__)
SHOWN = 200  # examples listed at most
MAX_UPLOAD = 20 * 1024 * 1024  # an import file's size at most


def matches(example: Example, text: str, scope: str, source: str, label: str) -> bool:
    needle = text.lower()
    return (
        (not needle or needle in example.input.lower() or needle in example.output.lower())
        and (not scope or example.scope == (scope if scope != "global" else ""))
        and (not source or example.source.startswith(source))
        and (not label or example.label == label)
    )


def loss_curve(manifest: dict[str, Any] | None) -> str:
    """A run's loss by step, as SVG ('' before a run has written its losses)."""
    losses = (manifest or {}).get("losses") or []
    return line_chart([(x["step"], x["loss"]) for x in losses], "step", "loss")


def changed(version: LoraVersion) -> list[dict[str, Any]]:
    """What the version answers differently from the one it was gated against: the held-out questions
    whose reply differs, and the regression questions it now misses or now gets right."""
    gate = version.manifest.get("eval") or {}
    baseline, candidate = gate.get("baseline") or {}, gate.get("candidate") or {}
    before = {r["question"]: r for r in baseline.get("heldout_replies", [])}
    rows = []
    for after in candidate.get("heldout_replies", []):
        was = before.get(after["question"])
        if was is not None and was["reply"].strip() != after["reply"].strip():
            rows.append(
                {
                    "set": "held-out",
                    "question": after["question"],
                    "before": was["reply"],
                    "after": after["reply"],
                    "verdict": f"recall {was['recall']:.2f} → {after['recall']:.2f}",
                }
            )
    missed_before = {m["question"]: m for m in baseline.get("regression_misses", [])}
    missed_after = {m["question"]: m for m in candidate.get("regression_misses", [])}
    for question in sorted(missed_before.keys() ^ missed_after.keys()):
        lost = question in missed_after
        rows.append(
            {
                "set": "regression",
                "question": question,
                "before": "" if lost else missed_before[question]["reply"],
                "after": missed_after[question]["reply"] if lost else "",
                "verdict": "now missed" if lost else "now right",
            }
        )
    return rows


def routes(console: Console) -> list[Route]:
    core = console.core

    async def examples(request: Request) -> Response:
        console.admin(request)
        q = request.query_params
        wanted = (q.get("q", "").strip(), q.get("scope", "").strip(), q.get("source", ""), q.get("label", ""))
        everything = await run_in_threadpool(core.examples.list)
        found = [e for e in reversed(everything) if matches(e, *wanted)]
        scopes = sorted({e.scope or "global" for e in everything})
        return console.page(
            request,
            "examples.html",
            "Examples",
            examples=found[:SHOWN],
            total=len(found),
            scopes=scopes,
            wanted=wanted,
            owns=console.owns_examples,
        )

    async def teach(request: Request) -> Response:
        user = console.admin(request)
        form = await check_csrf(request)
        phrasings = [line.strip() for line in form.get("questions", "").splitlines() if line.strip()]
        if not phrasings or not form.get("answer", "").strip():
            console.flash(request, "Give at least one question and the answer.", ok=False)
        elif any("=>" in p or "|" in p for p in phrasings):
            console.flash(request, "A question cannot hold `=>` or `|`: they separate phrasings and the answer.", False)
        elif console.needs_examples(request):
            await console.run(request, user, "teach", question=" | ".join(phrasings), answer=form["answer"].strip())
        return back("/examples")

    async def remove(request: Request) -> Response:
        user = console.admin(request)
        form = await check_csrf(request)
        if console.needs_examples(request):
            await console.run(request, user, "examples remove", example_id=request.path_params["example_id"])
        return back(form.get("next", ""), default="/examples")

    async def start_import(request: Request) -> Response:
        console.admin(request)
        await check_csrf(request)
        if not console.needs_examples(request):
            return back("/examples")
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str) or not upload.filename:
            console.flash(request, "Choose a JSONL file to import.", ok=False)
            return back("/examples")
        data = await upload.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            console.flash(
                request, f"The file is over {MAX_UPLOAD // 2**20} MiB; import it with `bot examples import`.", False
            )
            return back("/examples")
        job = uuid.uuid4().hex[:12]
        console.jobs[job] = {"name": upload.filename, "done": 0, "total": 0, "state": "reading", "problems": []}
        threading.Thread(target=_import, args=(console, job, data, upload.filename), daemon=True).start()
        return back(f"/examples/import/{job}")

    async def import_status(request: Request) -> Response:
        console.admin(request)
        job = console.jobs.get(request.path_params["job"])
        if job is None:
            raise HTTPException(404, "No such import.")
        return console.page(request, "import.html", "Import", job=job)

    async def training(request: Request) -> Response:
        console.admin(request)
        registry, trainer = core.registry, core.trainer
        versions = list(reversed(registry.versions())) if registry else []
        status = trainer.read_status() if trainer else None
        curve = loss_curve(status.manifest if status else None)
        return console.page(
            request,
            "training.html",
            "Training",
            versions=versions,
            status=status,
            curve=curve,
            running=bool(trainer and trainer.running()),
            progress=trainer.progress_text() if trainer else "",
        )

    async def training_status(request: Request) -> Response:
        console.admin(request)
        trainer = core.trainer
        status = trainer.read_status() if trainer else None
        fields = ("phase", "step", "total_steps", "loss", "eta_s", "done", "total", "version", "promoted", "reason")
        return JSONResponse(
            {
                "running": bool(trainer and trainer.running()),
                "progress": trainer.progress_text() if trainer else "",
                **({f: getattr(status, f) for f in fields} if status else {}),
            }
        )

    async def version(request: Request) -> Response:
        console.admin(request)
        if core.registry is None:
            raise HTTPException(404, "No LoRA versions in this process.")
        try:
            found = core.registry.get(request.path_params["version"])
        except Exception:
            raise HTTPException(404, "No such version.") from None
        curve = loss_curve(found.manifest)
        return console.page(
            request, "version.html", f"LoRA {found.version}", v=found, changed=changed(found), curve=curve
        )

    async def act(request: Request) -> Response:
        user = console.admin(request)
        form = await check_csrf(request)
        action = request.path_params["action"]
        if action == "retrain":
            await console.run(request, user, "retrain")
        elif action == "use":
            await console.run(request, user, "lora use", version=form.get("version", ""))
        elif action == "rollback":
            await console.run(request, user, "lora rollback")
        else:
            raise HTTPException(404, "No such action.")
        return back("/training")

    return [
        Route("/examples", examples, methods=["GET"]),
        Route("/examples/teach", teach, methods=["POST"]),
        Route("/examples/import", start_import, methods=["POST"]),
        Route("/examples/import/{job}", import_status, methods=["GET"]),
        Route("/examples/{example_id}/remove", remove, methods=["POST"]),
        Route("/training", training, methods=["GET"]),
        Route("/training/status", training_status, methods=["GET"]),
        Route("/training/{action}", act, methods=["POST"]),
        Route("/versions/{version}", version, methods=["GET"]),
    ]


def _import(console: Console, job: str, data: bytes, name: str) -> None:
    """Check every line first (nothing is written if one is bad), then store them with progress."""
    state = console.jobs[job]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(name).name
        path.write_bytes(data)
        try:
            parsed = parse_examples_file(path)
        except JsonlFileError as exc:
            state.update(state="failed", problems=exc.problems)
            return
    state.update(state="importing", total=len(parsed))
    try:
        console.core.examples.upsert(
            parsed, source=f"import:{Path(name).name}", progress=lambda done, total: state.update(done=done)
        )
        state.update(state="done", done=len(parsed))
    except Exception as exc:  # shown on the page; the log has the traceback
        log.exception("console import %s failed", name)
        state.update(state="failed", problems=[str(exc)])
