"""`socialcare replay FILE`: feed a running pipeline from a JSONL/CSV file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import click
from tqdm import tqdm

from listener.replay import ReplayConnector


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
        async for batch, _ in connector.stream(None):
            body = "\n".join(json.dumps(m.to_dict(), ensure_ascii=False) for m in batch)
            async with http.post(f"{url}/api/v1/ingest", data=body.encode()) as resp:
                if resp.status != 202:
                    raise click.ClickException(f"the service refused a batch: HTTP {resp.status} {await resp.text()}")
            sent += len(batch)
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
    code is 1 when every line was rejected.
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
    if not sent and connector.stats.rejected:  # nothing usable (wrong columns, an empty or UTF-16 file)
        raise click.exceptions.Exit(1)

