"""`socialcare replay FILE`: feed a running pipeline from a JSONL/CSV file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import click
from tqdm import tqdm

from listener.replay import ReplayConnector


def _refused_lines(status: int, text: str) -> dict[int, str] | None:
    """The service's 400 "bad lines" answer as {line of the body: why}, or None for any other refusal."""
    try:
        lines = json.loads(text)["error"]["lines"] if status == 400 else None
        return {int(x["line"]): str(x["error"]) for x in lines} if lines else None
    except (ValueError, KeyError, TypeError):
        return None


async def _post(http, url: str, connector: ReplayConnector, batch: list) -> int:  # noqa: ANN001
    """Posts a batch; lines the service refuses are rejected by their number in the file (not the
    batch's) and the rest posted again, so that one line no check here foresaw loses no other."""
    while batch:
        # ASCII: a raw U+2028 in a post would split its JSON line at the service
        body = "\n".join(json.dumps(m.to_dict(), ensure_ascii=True) for _, m in batch)
        async with http.post(url, data=body.encode()) as resp:
            status, text = resp.status, await resp.text()
        if status == 202:
            return len(batch)
        refused = _refused_lines(status, text)
        if not refused or not refused.keys() <= set(range(1, len(batch) + 1)):
            raise click.ClickException(f"the service refused a batch: HTTP {status} {text[:2000]}")
        for i, why in sorted(refused.items()):
            connector.reject(batch[i - 1][0], f"refused by the service: {why}")
        batch = [item for i, item in enumerate(batch, start=1) if i not in refused]
    return 0


async def _replay(settings, connector: ReplayConnector, url: str | None, token: str | None, progress) -> int:  # noqa: ANN001
    sent = 0
    if settings.bus == "redis":
        from service.bus import make_bus
        from service.pipeline import submit

        bus = make_bus(settings)
        await bus.start()
        try:
            async for batch, _ in connector.stream(None):
                sent += await submit(bus, batch)
                progress.update(len(batch))
        finally:
            await bus.close()
        return sent
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async for batch in connector.numbered(None):
            sent += await _post(http, f"{url}/api/v1/ingest", connector, batch)
            progress.update(len(batch))
    return sent


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--speed", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Factor of real time (0: as fast as possible; 60: one hour of traffic per minute).")
@click.option("--platform", default="replay", show_default=True, help="Platform name for rows that name none.")
@click.option("--url", default=None, help="Running service (embedded mode); default: settings.public_base_url.")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where rejected lines are kept (default: var/rejects/FILE.jsonl).")
@click.pass_obj
def replay(settings, file: Path, speed: float, platform: str, url: str | None, rejects: Path | None) -> None:  # noqa: ANN001
    """Replay FILE (JSONL, CSV, or the Customer Support on Twitter layout) into a running pipeline.

    With the Redis bus the mentions go straight onto the ingest stream; in the embedded mode they
    are posted to the running service with the local token it wrote under var/.
    Bad lines are reported with their line number, kept in the rejects file, and skipped; the exit
    code is 1 when a file with rows sent none (every row rejected, or the brand's own).
    """
    rejects = rejects or settings.var_dir / "rejects" / f"{file.name}.jsonl"
    rejects.parent.mkdir(parents=True, exist_ok=True)
    connector = ReplayConnector(file, speed=speed, platform=platform, rejects_path=rejects)
    token = None
    if settings.bus != "redis":
        token_path = settings.var_dir / "ingest.token"
        if not token_path.exists():
            raise click.ClickException(f"no running service found ({token_path} missing): start `socialcare run`")
        token = token_path.read_text().strip()
    with tqdm(desc="replay", unit=" mentions", disable=None) as progress:
        sent = asyncio.run(_replay(settings, connector, (url or settings.public_base_url).rstrip("/"), token, progress))
    for bad in connector.stats.rejected:
        click.echo(f"{file}:{bad.line}: rejected: {bad.reason}", err=True)
    click.echo(json.dumps({"sent": sent, "read": connector.stats.read, "skipped": connector.stats.skipped,
                           "rejected": len(connector.stats.rejected), "rejects_file": str(rejects)}))
    stats = connector.stats
    if not sent and stats.read:  # nothing usable (wrong columns, an empty or UTF-16 file, outbound rows only)
        if stats.skipped:
            click.echo(f"{file}: nothing sent: {stats.skipped} row(s) are not customer mentions (inbound false: "
                       "the brand's own tweets)", err=True)
        raise click.exceptions.Exit(1)

