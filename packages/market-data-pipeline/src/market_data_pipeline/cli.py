"""``mdp``: the pipeline's command line (run, validate, list, graph, replay).

Every option can also come from its ``MDP_`` environment variable (shown in ``--help``);
a flag wins over the variable, and both win over the ``settings:`` of a config file.
Exit codes: 0 done, 1 the job failed, 2 the config or the input is invalid, 3 the job ran
to its end but data was lost upstream (a ``redis_stream`` provider found that Redis lost
stream entries: the summary is printed, then the error naming what was lost), 130
interrupted.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from market_data_core.cli import fail, version_option
from market_data_pipeline._kinds import ComponentKind

if TYPE_CHECKING:
    from pydantic import BaseModel
    from rich.table import Table

    from market_data_core.job_protocol import RunSummary
    from market_data_pipeline.components import NodeStats
    from market_data_pipeline.exceptions import DataLossError
    from market_data_pipeline.graph import Graph
    from market_data_pipeline.job import UnifiedRuntime
    from market_data_pipeline.registry import Registry
    from market_data_pipeline.runtime import RunResult
    from market_data_pipeline.settings import UnifiedRuntimeSettings

# Only typer, rich and the standard library at import time: `mdp --help` and `--version`
# stay fast. Each command imports the runtime, pydantic, pyarrow... when it runs.

app = typer.Typer(
    help="market-data-pipeline: run, validate and inspect streaming pipelines.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: Typer's Rich panels print `<bool>` after every flag
)
console = Console(stderr=True)
out = Console()

ConfigArg = Annotated[Path, typer.Argument(help="Pipeline config (YAML/JSON; DAG or classic).")]
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="MDP_DATABASE_URL",
        show_envvar=True,
        help="Store for `store` sinks without their own: sqlite:///path or postgresql://...",
    ),
]


@app.callback()
def _main(
    show_version: Annotated[bool, version_option("market-data-pipeline")] = False,
) -> None:
    """market-data-pipeline: run, validate and inspect streaming pipelines."""


def _fail(message: str, code: int) -> typer.Exit:
    return fail(console, message, code)


def _settings(config: Path, **flags: Any) -> UnifiedRuntimeSettings:
    from pydantic import SecretStr, ValidationError  # noqa: PLC0415

    from market_data_pipeline.exceptions import GraphError  # noqa: PLC0415
    from market_data_pipeline.settings import UnifiedRuntimeSettings  # noqa: PLC0415

    for key in ("database_url", "redis_url"):
        if flags.get(key) is not None:
            flags[key] = SecretStr(flags[key])
    try:
        return UnifiedRuntimeSettings.load(config, **flags)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise _fail(f"invalid settings: {problems}", 2) from None
    except GraphError as error:
        raise _fail(str(error), 2) from None


def _load(config: Path, partitions: tuple[int, ...] | None = None) -> Graph:
    from market_data_pipeline.exceptions import GraphError  # noqa: PLC0415
    from market_data_pipeline.graph import load_graph  # noqa: PLC0415
    from market_data_pipeline.registry import default_registry  # noqa: PLC0415

    try:
        graph = load_graph(config)
        (graph.for_partitions(partitions) if partitions is not None else graph).validated(
            default_registry()
        )
    except GraphError as error:
        raise _fail(str(error), 2) from None
    return graph


@app.command()
def run(
    config: ConfigArg,
    database_url: DatabaseOption = None,
    channel_capacity: Annotated[
        int | None,
        typer.Option(envvar="MDP_CHANNEL_CAPACITY", show_envvar=True, help="Batches per channel."),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(envvar="MDP_REDIS_URL", show_envvar=True, help="Feedback over Redis."),
    ] = None,
    store_feedback_url: Annotated[
        str | None,
        typer.Option(
            envvar="MDP_STORE_FEEDBACK_URL",
            show_envvar=True,
            help="Follow a store service's feedback (its base URL).",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(envvar="MDP_METRICS_PORT", show_envvar=True, help="Serve /metrics here."),
    ] = None,
    drain_timeout: Annotated[
        float | None,
        typer.Option(
            envvar="MDP_DRAIN_TIMEOUT",
            show_envvar=True,
            help="Seconds a stop (SIGTERM, Ctrl-C, reload) may drain what is in flight;"
            " then the rest is abandoned and reported in the summary (default 5).",
        ),
    ] = None,
    partitions: Annotated[
        str | None,
        typer.Option(
            envvar="MDP_PARTITIONS",
            show_envvar=True,
            help="Partitions this worker owns (0,3): one copy of the graph per partition,"
            " {partition} in its params replaced.",
        ),
    ] = None,
    json_summary: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (for scripts).")
    ] = False,
    control: Annotated[
        bool,
        typer.Option(
            "--control",
            help="Supervised mode: JSON-line commands on stdin (pause/resume/reload),"
            " JSON-line events on stdout (started, progress, control, summary).",
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="No progress (on a terminal: percent, rate, ETA and the nodes, redrawn;"
            " elsewhere: a `pipeline progress` log record every 10 s).",
        ),
    ] = False,
) -> None:
    """Run a pipeline until its providers end (SIGTERM or Ctrl-C stops it and drains)."""
    import asyncio  # noqa: PLC0415

    from market_data_pipeline.exceptions import (  # noqa: PLC0415
        GraphError,
        PipelineError,
    )
    from market_data_pipeline.logs import configure_logging  # noqa: PLC0415

    settings = _settings(
        config,
        database_url=database_url,
        channel_capacity=channel_capacity,
        redis_url=redis_url,
        store_feedback_url=store_feedback_url,
        metrics_port=metrics_port,
        drain_timeout=drain_timeout,
        partitions=partitions,
    )
    configure_logging(json=settings.log_json, level=settings.log_level)
    graph = _load(settings.config or config, settings.partitions)
    show_progress = not quiet and not json_summary and not control
    lost: DataLossError | None = None
    try:
        runtime, result, lost = asyncio.run(
            _run(settings, graph, show_progress=show_progress, control=control)
        )
    except PipelineError as error:
        raise _fail(str(error), 1) from None
    except GraphError as error:
        raise _fail(str(error), 2) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None
    if control:
        sys.stdout.write(_summary(runtime, result).model_dump_json(by_alias=True) + "\n")
    elif json_summary:
        out.print_json(_summary(runtime, result).model_dump_json(by_alias=True))
    else:
        _print_summary(runtime, result)
    if lost is not None:
        raise _fail(str(lost), 3)


async def _run(
    settings: UnifiedRuntimeSettings, graph: Graph, *, show_progress: bool, control: bool = False
) -> tuple[UnifiedRuntime, RunResult, DataLossError | None]:
    from market_data_pipeline.control import ignore_stop_signals  # noqa: PLC0415

    try:
        return await _run_job(settings, graph, show_progress=show_progress, control=control)
    finally:
        if control:  # the job ended: a supervisor's repeated SIGTERM must not kill the exit
            ignore_stop_signals()


async def _run_job(
    settings: UnifiedRuntimeSettings, graph: Graph, *, show_progress: bool, control: bool
) -> tuple[UnifiedRuntime, RunResult, DataLossError | None]:
    """The runtime, the run's result and, when the job ran but data was lost upstream,
    the ``DataLossError`` (the summary is still printed)."""
    import asyncio  # noqa: PLC0415

    from market_data_core.job_protocol import JobStarted  # noqa: PLC0415
    from market_data_pipeline._progress import JobProgress  # noqa: PLC0415
    from market_data_pipeline.control import ControlChannel, install_stop_signals, stdin_reader  # noqa: PLC0415
    from market_data_pipeline.exceptions import DataLossError  # noqa: PLC0415
    from market_data_pipeline.job import UnifiedRuntime  # noqa: PLC0415

    async with UnifiedRuntime(settings) as runtime:
        install_stop_signals(lambda: asyncio.ensure_future(runtime.stop(drain=True)))
        task = asyncio.create_task(runtime.run(graph))
        helpers: list[asyncio.Task[None]] = []
        if control:
            channel = ControlChannel(runtime)
            channel.emit(JobStarted(job=graph.name, pid=os.getpid(), mode=str(graph.mode)))  # type: ignore[arg-type]
            helpers.append(asyncio.create_task(channel.read_commands(await stdin_reader())))
            helpers.append(asyncio.create_task(channel.report_progress()))
        progress = JobProgress(runtime, console, nodes=_progress) if show_progress else None
        try:
            if progress is not None:
                with progress:
                    while not task.done():
                        progress.update()
                        await asyncio.wait({task}, timeout=0.25)
            try:
                result = await task
            except DataLossError as error:
                if progress is not None:
                    progress.finish(error.result)
                return runtime, error.result, error
            if progress is not None:
                progress.finish(result)
        except asyncio.CancelledError:
            await runtime.stop(drain=True)
            raise
        finally:
            for helper in helpers:
                helper.cancel()
        return runtime, result, None


def _progress(runtime: UnifiedRuntime) -> Table:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"{runtime.graph.name if runtime.graph else ''} [{runtime.state}]")
    for column in ("node", "in", "out"):
        table.add_column(column, justify="right" if column != "node" else "left")
    inner = runtime.current
    if inner is not None:
        for node_id, stats in inner.stats.items():
            table.add_row(node_id, f"{stats.items_in:,}", f"{stats.items_out:,}")
    return table


def _summary(runtime: UnifiedRuntime, result: RunResult) -> RunSummary:
    """The run as core's ``RunSummary`` contract (the control protocol's last event)."""
    from market_data_core.job_protocol import (  # noqa: PLC0415
        DrainReport,
        NodeSummary,
        RunSummary,
        StoreReport,
    )

    nodes = {
        node_id: NodeSummary.model_validate(
            {
                "type": result.types[node_id],
                "kind": result.kinds[node_id],
                "in": stats.items_in,
                "out": stats.rows_out,
                **_side_outputs(stats),
                **stats.counters,
            }
        )
        for node_id, stats in result.nodes.items()
    }
    report, drain = runtime.store_report, runtime.drain
    return RunSummary(
        job=result.job,
        mode=str(runtime.mode),  # type: ignore[arg-type]
        state=str(result.state),
        seconds=round(result.seconds, 3),
        nodes=nodes,
        late=result.counter("late"),
        pauses=runtime.pauses,
        store=(
            StoreReport(database=report["database"], tables=report["tables"]) if report else None
        ),
        drain=DrainReport.model_validate(drain) if drain else None,
    )


def _side_outputs(stats: NodeStats) -> dict[str, int]:
    """Rows a node sent to outputs beside its main one (``out``), by output: a resampler's
    ``late`` rows are not bars. Ports already counted under their own name are left out."""
    if stats.rows_out == stats.items_out:
        return {}
    return {
        port: rows
        for port, rows in stats.by_port.items()
        if port != "out" and port not in stats.counters
    }


def _print_summary(runtime: UnifiedRuntime, result: RunResult) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"{result.job} ({runtime.mode}): {result.state} in {result.seconds:.2f} s")
    for column in ("node", "type", "in", "out", "notes"):
        table.add_column(column, justify="right" if column in {"in", "out"} else "left")
    for node_id, stats in result.nodes.items():
        counters = _side_outputs(stats) | stats.counters
        notes = ", ".join(f"{k} {v:,}" for k, v in sorted(counters.items()))
        table.add_row(
            node_id, result.types[node_id], f"{stats.items_in:,}", f"{stats.rows_out:,}", notes
        )
    out.print(table)
    out.print(f"late records: {result.counter('late'):,}   backpressure pauses: {runtime.pauses}")
    report = runtime.store_report
    if report:
        where = report["database"]
        for name, (before, after) in report["tables"].items():
            line = _store_line(name, before, after, report.get("written", {}).get(name))
            out.print(f"store {where}: {line}", highlight=False, soft_wrap=True)
    for line in _service_lines(runtime, result):
        out.print(line, highlight=False, markup=False, soft_wrap=True)
    if runtime.drain:
        out.print(_drain_line(runtime.drain), highlight=False, markup=False)


def _store_line(name: str, before: int, after: int, written: int | None) -> str:
    """What a run did to a table of the store: rows written (sent and stored), how many
    of them were new, and the rows before and after (``bars 9,360 written, 0 new: the
    store had them all (9,360 -> 9,360 rows)``). A row whose key the store held replaces
    it only when it is a newer version, so a rerun writes everything and adds nothing."""
    new = after - before
    rows = f"({before:,} -> {after:,} rows)"
    if written is None:
        return f"{name} {new:,} new {rows}"
    head = f"{name} {written:,} written, {new:,} new"
    if new == 0 and written:
        return f"{head}: the store had them all {rows}"
    if 0 < new < written:
        return f"{head}: the store had {written - new:,} of them {rows}"
    return f"{head} {rows}"


def _service_lines(runtime: UnifiedRuntime, result: RunResult) -> list[str]:
    """For each ``store`` sink writing through the store service: what it wrote. Its
    answers count the rows it stored (``acknowledged``), not which of them were new, so the
    line says that instead of a before/after count."""
    specs = {spec.id: spec for spec in runtime.graph.nodes} if runtime.graph else {}
    lines = []
    for node_id, stats in result.nodes.items():
        if result.types.get(node_id) != "store" or "acknowledged" not in stats.counters:
            continue
        spec = specs.get(node_id)
        url = spec.params.get("url") if spec is not None else None
        lines.append(
            f"store {url or 'service'} ({node_id}): {stats.counters['acknowledged']:,} written"
            " (acknowledged by the service); how many were new is not known: the service"
            " answers with the rows it stored, not the rows it added (mds query reads them)"
        )
    return lines


def _drain_line(drain: dict[str, Any]) -> str:
    if drain["complete"]:
        return f"stopped: drained in {drain['seconds']:.2f} s"
    missing = drain["not_flushed"]
    parts = [
        f"{rows:,} rows queued for {node}" for node, rows in missing.get("channels", {}).items()
    ]
    if missing.get("cancelled"):
        parts.append(f"nodes cancelled (open state not emitted): {', '.join(missing['cancelled'])}")
    for what, count in missing.get("store", {}).items():
        parts.append(f"store {what.replace('_', ' ')} {count:,}")
    return (
        f"stopped: the drain timed out after {drain['timeout']:g} s; not flushed: "
        + "; ".join(parts)
        + " (the store's upserts are idempotent: running the job again fills the gap)"
    )


@app.command()
def validate(config: ConfigArg) -> None:
    """Check a config without running it (types, params, edges, cycles)."""
    graph = _load(config)
    out.print(
        f"ok: {graph.name} ({graph.mode}), {len(graph.nodes)} nodes, {len(graph.edges)} edges",
        highlight=False,
    )


@app.command("list")
def list_components(
    kind: Annotated[
        ComponentKind | None, typer.Option(help="Only providers, operators or sinks.")
    ] = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="The reference with every param, as Markdown.")
    ] = False,
) -> None:
    """List the registered providers, operators and sinks (plugins included)."""
    from rich.table import Table  # noqa: PLC0415

    from market_data_pipeline.registry import default_registry  # noqa: PLC0415

    registry = default_registry()
    if markdown:
        sys.stdout.write(reference(registry, [kind] if kind else list(ComponentKind)))
        return
    table = Table("kind", "type", "description")
    for k in [kind] if kind else list(ComponentKind):
        for name, text in registry.describe(k):
            table.add_row(str(k), name, text)
    out.print(table)


def reference(registry: Registry, kinds: list[ComponentKind]) -> str:
    """The component reference (docs/components.md): each type, its ports and params."""
    lines = [
        "# Component reference",
        "",
        "Generated by `mdp list --markdown` from the registry; a test keeps it in sync.",
        "",
    ]
    for kind in kinds:
        lines += [f"## {kind.capitalize()}s", ""]
        for name in registry.names(kind):
            cls = registry.get(name, kind)
            doc = (cls.__doc__ or cls.description or "").strip()
            lines += [f"### `{name}`", "", doc or cls.description, ""]
            lines += _params_table(cls.Params)
    return "\n".join(lines).rstrip() + "\n"


def _params_table(model: type[BaseModel]) -> list[str]:
    if not model.model_fields:
        return ["No params.", ""]
    schema = model.model_json_schema(mode="validation")
    properties = schema.get("properties", {})
    rows = ["| param | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        prop = properties.get(field.alias or name, {})
        value = (
            prop["default"] if "default" in prop else field.get_default(call_default_factory=True)
        )
        default = "required" if field.is_required() else f"`{json.dumps(value, default=str)}`"
        text = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | {_schema_type(prop, schema)} | {default} | {text} |")
    return [*rows, ""]


def _schema_type(prop: dict[str, Any], root: dict[str, Any]) -> str:
    """A short type name from a JSON Schema property: ``string``, ``integer | null``..."""
    if "$ref" in prop:
        prop = root.get("$defs", {}).get(prop["$ref"].rsplit("/", 1)[-1], {"type": "object"})
    values = prop.get("enum") or ([prop["const"]] if "const" in prop else None)
    options = prop.get("anyOf") or prop.get("oneOf")
    kind = prop.get("type", "any")
    if values is not None:
        text = " \\| ".join(f"`{json.dumps(v)}`" for v in values)
    elif options:
        text = " \\| ".join(_schema_type(o, root) for o in options)
    elif kind == "array":
        text = f"list of {_schema_type(prop.get('items', {}), root)}"
    elif kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        text = f"map of {_schema_type(prop['additionalProperties'], root)}"
    elif prop.get("format") in {"date-time", "duration", "password"}:
        text = f"{kind} ({prop['format']})"
    else:
        text = str(kind)
    return text


@app.command()
def graph(
    config: ConfigArg,
    fmt: Annotated[str, typer.Option("--format", help="text or mermaid")] = "text",
) -> None:
    """Print the graph of a config as text or as a Mermaid flowchart."""
    g = _load(config)
    if fmt == "mermaid":
        out.print(_mermaid(g), highlight=False, markup=False)
    elif fmt == "text":
        out.print(_text(g), highlight=False, markup=False)
    else:
        raise _fail(f"--format must be text or mermaid, not {fmt!r}", 2)


def _text(g: Graph) -> str:
    lines = [f"{g.name} ({g.mode})"]
    for spec in g.nodes:
        params = ", ".join(f"{k}={v!r}" for k, v in spec.params.items())
        lines.append(f"  {spec.id}: {spec.type}({params})")
    lines += [f"  {e}" for e in g.edges]
    return "\n".join(lines)


def _mermaid(g: Graph) -> str:
    lines = ["flowchart LR"]
    lines += [f'  {spec.id}["{spec.id}: {spec.type}"]' for spec in g.nodes]
    for e in g.edges:
        label = f"|{e.port}|" if e.port != "out" else ""
        lines.append(f"  {e.source} -->{label} {e.target}")
    return "\n".join(lines)


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="CSV, NDJSON or Parquet file to replay.")],
    kind: Annotated[str, typer.Option(help="trades, quotes or bars")] = "trades",
    symbol: Annotated[str | None, typer.Option(help="Symbol when the file has none.")] = None,
    timeframe: Annotated[str, typer.Option(help="Resample to this timeframe.")] = "1m",
    timezone: Annotated[str | None, typer.Option(help="Zone of naive timestamps.")] = None,
    speed: Annotated[float, typer.Option(help="0 = as fast as possible; k = k x real time")] = 0,
    to: Annotated[str, typer.Option(help="stdout, store, or a file path")] = "stdout",
    database_url: DatabaseOption = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="No progress (percent, rate and ETA on stderr, as `run`)."
        ),
    ] = False,
) -> None:
    """Replay a file through resample_ohlc into stdout, the store or a file."""
    import asyncio  # noqa: PLC0415

    from pydantic import SecretStr  # noqa: PLC0415

    from market_data_pipeline.exceptions import GraphError, PipelineError  # noqa: PLC0415
    from market_data_pipeline.graph import from_config  # noqa: PLC0415
    from market_data_pipeline.logs import configure_logging  # noqa: PLC0415
    from market_data_pipeline.registry import default_registry  # noqa: PLC0415
    from market_data_pipeline.settings import UnifiedRuntimeSettings  # noqa: PLC0415

    params: dict[str, Any] = {"path": str(file), "kind": kind, "speed": speed}
    if symbol is not None:
        params["symbol"] = symbol
    if timezone is not None:
        params["timezone"] = timezone
    sink: dict[str, Any]
    if to == "stdout":
        sink = {"type": "stdout"}
    elif to == "store":
        sink = {"type": "store"}
    else:
        sink = {"type": "file", "params": {"path": to}}
    config = {
        "name": "replay",
        "mode": "classic",
        "source": {"type": "replay", "params": params},
        "operators": [{"type": "resample_ohlc", "params": {"timeframe": timeframe}}],
        "sink": sink,
    }
    flags = {"database_url": SecretStr(database_url) if database_url else None}
    settings = UnifiedRuntimeSettings.load(None, **flags)
    configure_logging(json=settings.log_json, level=settings.log_level)
    try:
        graph = from_config(config, source="mdp replay")
        graph.validated(default_registry())  # a bad option is said before anything runs
        # the bars go to stdout, the progress (a terminal's) to stderr: as `mdp run`
        runtime, result, lost = asyncio.run(_run(settings, graph, show_progress=not quiet))
    except (PipelineError, GraphError) as error:
        raise _fail(str(error), 2 if isinstance(error, GraphError) else 1) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None
    if to != "stdout":
        _print_summary(runtime, result)
    if lost is not None:
        raise _fail(str(lost), 3)


def main() -> None:  # pragma: no cover - the console script
    sys.exit(app())


if __name__ == "__main__":  # python -m market_data_pipeline.cli
    app()
