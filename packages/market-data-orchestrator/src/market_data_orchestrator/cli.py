"""``mdo``: the orchestrator's command line.

``mdo serve DEPLOYMENT`` runs the orchestrator (jobs, health, API). The other commands
talk to a running orchestrator's API: its URL from ``--url`` / ``MDO_URL`` and a bearer
token from ``MDO_TOKEN`` (never a flag, so it stays out of shell history and ``ps``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from market_data_core.cli import fail, version_option

# Only typer, rich and the standard library at import time: `mdo --help` and `--version`
# stay fast. Each command imports httpx, FastAPI, the supervisor... when it runs.

app = typer.Typer(
    help="market-data-orchestrator: supervise pipeline jobs; status, control, audit.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: Typer's Rich panels print `<bool>` after every flag
)
console = Console(stderr=True)
out = Console()

UrlOption = Annotated[
    str,
    typer.Option("--url", envvar="MDO_URL", show_envvar=True, help="The orchestrator's base URL."),
]
DEFAULT_URL = "http://127.0.0.1:8090"


@app.callback()
def _main(
    show_version: Annotated[bool, version_option("market-data-orchestrator")] = False,
) -> None:
    """market-data-orchestrator: supervise pipeline jobs; status, control, audit."""


def _fail(message: str, code: int = 1) -> typer.Exit:
    return fail(console, message, code)


@app.command()
def serve(
    deployment: Annotated[Path, typer.Argument(help="The deployment file (YAML).")],
    host: Annotated[
        str | None,
        typer.Option(help="Override the deployment's service.host.", show_default="127.0.0.1"),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Override the deployment's service.port.", show_default="8090"),
    ] = None,
) -> None:
    """Run the orchestrator: supervise the jobs and serve the API until SIGTERM."""
    import uvicorn  # noqa: PLC0415

    from market_data_core.logs import configure_logging  # noqa: PLC0415
    from market_data_core.serving import PortInUseError, bind, forwarded, guarded_h11  # noqa: PLC0415
    from market_data_orchestrator.deployment import DeploymentError, load_deployment  # noqa: PLC0415
    from market_data_orchestrator.orchestrator import Orchestrator  # noqa: PLC0415
    from market_data_orchestrator.service import create_app  # noqa: PLC0415

    try:
        spec = load_deployment(deployment)
    except DeploymentError as error:
        raise _fail(str(error), 2) from None
    service = spec.service
    try:  # before any job starts: a port in use is one line, with the fix
        sock = bind(
            host or service.host,
            port or service.port,
            fix=f"choose another with --port or service.port in {deployment}",
        )
    except PortInUseError as error:
        raise _fail(str(error), 2) from None
    configure_logging()  # JSON lines when stderr is not a terminal (production)
    orchestrator = Orchestrator(spec)
    config = uvicorn.Config(
        create_app(orchestrator),
        host=host or service.host,
        port=port or service.port,
        log_config=None,  # its records go through structlog: one format, JSON in production
        access_log=False,  # the API logs each request itself, query secrets redacted
        timeout_graceful_shutdown=_GRACE,
        http=guarded_h11(),  # request deadlines, 414/431 (see its docstring)
        **forwarded(service.trusted_proxies),
    )
    _run_server(config, orchestrator, sock)


_GRACE = 5
"""Seconds requests in progress get after SIGTERM before the jobs are stopped."""


def _run_server(config: Any, orchestrator: Any, sock: Any) -> None:
    """uvicorn, ending the live event streams (an open status page) at SIGTERM: they would
    hold the stop, and with it the drain of the jobs, until every page closed."""
    import asyncio  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    class Server(uvicorn.Server):
        loop: asyncio.AbstractEventLoop | None = None

        async def serve(self, sockets: Any = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().serve(sockets)

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            if self.loop is not None:
                self.loop.call_soon_threadsafe(orchestrator.status.close)

    Server(config).run(sockets=[sock])


def _call(method: str, url: str, path: str, *, body: Any = None, timeout: float = 30.0) -> Any:
    import httpx  # noqa: PLC0415

    token = os.environ.get("MDO_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(
            method, f"{url.rstrip('/')}{path}", headers=headers, json=body, timeout=timeout
        )
    except httpx.HTTPError as error:
        raise _fail(f"cannot reach the orchestrator at {url}: {type(error).__name__}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail") or response.json().get("message")
        except ValueError:
            detail = response.text
        if response.status_code == 401:  # the answer cannot name the variable: we do
            hint = (
                "MDO_TOKEN is not a token of this deployment"
                if token
                else "set MDO_TOKEN to a token of the deployment"
            )
            raise _fail(f"401: {hint} ({detail})", 1)
        raise _fail(f"{response.status_code}: {detail}", 1)
    return response.json()


@app.command()
def status(url: UrlOption = DEFAULT_URL) -> None:
    """The orchestrator's health: worst-of over the store, the jobs and the feedback
    (an orchestrator that follows no feedback transport gets a row that says so)."""
    import httpx  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from market_data_orchestrator.watchers.feedback import NO_TRANSPORT  # noqa: PLC0415

    token = os.environ.get("MDO_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(f"{url.rstrip('/')}/readyz", headers=headers, timeout=30)
    except httpx.HTTPError as error:
        raise _fail(f"cannot reach the orchestrator at {url}: {type(error).__name__}") from None
    body = response.json()
    table = Table("component", "state", "details", title=f"{body['service']}: {body['state']}")
    components = body.get("components", [])
    for component in components:
        table.add_row(component["name"], component["state"], json.dumps(component["details"]))
    if not any(c["name"] == "feedback_transport" for c in components):
        table.add_row("feedback_transport", "none", NO_TRANSPORT)
    out.print(table)
    if response.status_code != 200:
        raise typer.Exit(1)


_JOBS_ERRORS_BESIDE = 120
"""Terminal columns from which ``mdo jobs`` shows the last error as a column of its table."""


@app.command()
def jobs(url: UrlOption = DEFAULT_URL) -> None:
    """The jobs, their state, restarts and last error."""
    from rich.table import Table  # noqa: PLC0415

    listed = _call("GET", url, "/v1/jobs")
    errors = [(job["name"], job["last_error"]) for job in listed if job.get("last_error")]
    beside = out.width >= _JOBS_ERRORS_BESIDE  # else each error below the table, whole
    table = Table()  # names and states whole, never cut
    for name in ("job", "state", "replicas", "restarts", "paused by"):
        table.add_column(name, no_wrap=True)
    if beside:
        table.add_column("last error", ratio=1, overflow="fold")
    for job in listed:
        running = sum(r["state"] == "running" for r in job["replicas"])
        row = [job["name"], job["state"], f"{running}/{job['desired_replicas']}",
               str(job["restarts"]), job.get("paused_by") or ""]  # fmt: skip
        table.add_row(*row, *([job.get("last_error") or ""] if beside else []))
    out.print(table)
    for name, error in [] if beside else errors:
        out.print(f"{name}: last error: {error}", markup=False, highlight=False)


def _control(verb: str, job: str, url: str) -> None:
    result = _call("POST", url, f"/v1/jobs/{job}/{verb}")
    out.print(f"{job}: {verb} {result.get('status', 'done')} {result.get('message', '')}".strip())


@app.command()
def pause(job: str, url: UrlOption = DEFAULT_URL) -> None:
    """Pause a job (its providers hold; in-flight batches drain). Needs operator."""
    _control("pause", job, url)


@app.command()
def resume(job: str, url: UrlOption = DEFAULT_URL) -> None:
    """Resume a paused job where it stopped. Needs operator."""
    _control("resume", job, url)


@app.command()
def scale(
    job: str,
    replicas: Annotated[int, typer.Argument(min=1, help="Children to keep.")],
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Change a job's replica count while it runs; a partitioned job is rebalanced (its
    replicas stop with drain, then the new set starts). Audited. Needs operator."""
    # a rebalance waits for every replica's drain (their stop_timeout)
    info = _call("POST", url, f"/v1/jobs/{job}/scale", body={"replicas": replicas}, timeout=300)
    shares = [
        f"replica {r['index']}: partitions {','.join(map(str, r['partitions']))}"
        for r in info["replicas"]
        if r.get("partitions") is not None
    ]
    out.print(
        f"{job}: {info['desired_replicas']} replicas ({info['state']})"
        + (f"; {'; '.join(shares)}" if shares else ""),
        highlight=False,
    )


@app.command()
def reload(job: str, url: UrlOption = DEFAULT_URL) -> None:
    """Restart a job's run with its re-read config. Needs admin."""
    _control("reload", job, url)


@app.command()
def audit(
    url: UrlOption = DEFAULT_URL,
    limit: Annotated[int, typer.Option(help="How many records, newest first.")] = 50,
) -> None:
    """The audit log: every control action, allowed or denied. Needs admin."""
    out.print(_audit_view(_call("GET", url, f"/v1/audit?limit={limit}"), out.width))


_REASON_WIDTH = 24
"""The narrowest reason column of ``mdo audit``'s wide layout."""


def _audit_view(records: list[dict[str, Any]], width: int) -> Any:
    """The audit records as a table that fits ``width``, nothing cut: timestamps, actions,
    job names and actors whole, reasons wrapped as a block. Wide enough, one column each;
    else three (when, result, and the request: its action and target, then who and why)."""
    from rich.table import Table  # noqa: PLC0415

    rows = [
        {
            "ts": str(record["ts"]).replace("+00:00", "Z"),
            "actor": str(record["actor"]),
            "role": record.get("role") or "",
            "action": str(record["action"]),
            "target": record.get("target") or "",
            "result": str(record["result"]),
            "reason": record.get("reason") or "",
        }
        for record in records
    ]
    fixed = ("ts", "actor", "role", "action", "target", "result")
    widths = {name: max([len(name), *(len(row[name]) for row in rows)]) for name in fixed}
    if sum(w + 3 for w in widths.values()) + 1 + _REASON_WIDTH + 3 <= width:
        table = Table()
        for name in fixed:
            table.add_column(name, no_wrap=True, min_width=widths[name])
        table.add_column("reason", ratio=1, min_width=_REASON_WIDTH, overflow="fold")
        for row in rows:
            table.add_row(*(row[name] for name in (*fixed, "reason")))
        return table
    table = Table(show_lines=True)  # a record a block
    table.add_column("ts", no_wrap=True, min_width=widths["ts"])
    table.add_column("result", no_wrap=True, min_width=widths["result"])
    table.add_column("request, by whom, why", ratio=1, overflow="fold")
    for row in rows:
        who = f"by {row['actor']}" + (f" ({row['role']})" if row["role"] else "")
        what = " ".join(part for part in (row["action"], row["target"]) if part)
        why = f"{who}: {row['reason']}" if row["reason"] else who
        table.add_row(row["ts"], row["result"], f"{what}\n{why}")
    return table


@app.command()
def openapi(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Print the API's OpenAPI spec (committed as docs/openapi/market-data-orchestrator.json)."""
    from market_data_orchestrator.openapi import spec_text  # noqa: PLC0415

    text = spec_text()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        out.print(f"wrote {output}")


if __name__ == "__main__":  # python -m market_data_orchestrator.cli
    app()
