"""`socialcare triage`: score a text, train a head, evaluate on a labelled CSV."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

TASKS = ("sentiment", "sensitivity", "issue_type", "toxicity", "spam")


@click.group()
def triage() -> None:
    """Triage models: score texts, train heads (custom taxonomies too), evaluate them."""


@triage.command()
@click.argument("text")
@click.option("--platform", default="x", show_default=True, help="Channel the text came from (x, reddit, discourse, ...); the scores read every channel alike.")
@click.option("--private", is_flag=True, help="The text was sent privately (PII is then not 'exposed').")
@click.option("--followers", type=int, default=None, help="Author reach, for the priority.")
@click.option("--mode", type=click.Choice(["transformer", "cascade"]), default=None,
              help="Override SOCIALCARE_TRIAGE_MODE.")
@click.pass_obj
def score(settings, text: str, platform: str, private: bool, followers: int | None, mode: str | None) -> None:  # noqa: ANN001
    """Print the full JSON triage of TEXT (personal data appears only as typed spans)."""
    from triage import build_triager
    from triage.protocol import TriageInput

    if not text.strip():
        raise click.UsageError("give the text to score (it is empty)")
    if mode:
        settings = settings.model_copy(update={"triage_mode": mode})
    engine = build_triager(settings)
    (out,) = engine.score_texts([TriageInput(text=text, platform=platform, is_public=not private,
                                             author_followers=followers)])
    doc = {"model_version": engine.model_version, **out.to_dict()}
    click.echo(json.dumps(doc, ensure_ascii=False))


@triage.command()
@click.option("--task", type=click.Choice(TASKS), required=True)
@click.option("--data", "data", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="CSV with columns text,label (any label set for issue_type).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for the trained head (use it with --model or SOCIALCARE_TRIAGE_MODEL_DIR).")
@click.option("--lexical-dim", type=click.IntRange(16, 2**22), default=2**14, show_default=True, help="Hashed n-gram features.")
@click.option("--c", "c", type=click.FloatRange(min=0, min_open=True, max=1e6), default=8.0, show_default=True, help="Inverse regularization strength.")
@click.pass_obj
def train(settings, task: str, data: Path, out: Path, lexical_dim: int, c: float) -> None:  # noqa: ANN001
    """Train a head for TASK on DATA (embedding + n-grams, and a cheap head for the cascade: the static
    token embedding + n-grams)."""
    from triage import configure_encoder
    from triage.encoder import shared_encoder, shared_static_embedder
    from triage.static import STATIC_SCALE
    from triage.train import FIXED_LABELS, DataError, check_trainable, embed, fit_head, fold_labels, read_csv

    made = None
    try:
        texts, labels = read_csv(data)
        fixed = FIXED_LABELS.get(task)
        labels = fold_labels(task, labels)
        unknown = sorted(set(labels) - set(fixed)) if fixed else []
        if unknown:
            raise DataError(f"{data}: labels {unknown} are not {task} labels ({', '.join(fixed)})")
        classes = check_trainable(task, labels)  # before the encoding, which takes minutes on a big file
        made = _make_dir(out)  # before the training, not after it
        configure_encoder(settings)
        emb = embed(texts, shared_encoder(), progress=True)  # the encoder that will score with this head
        full = _fit_stage(1, f"the {task} head (encoder + n-grams) on {len(texts)} rows, {len(classes)} labels",
                          lambda: fit_head(task, texts, labels, emb, lexical_dim=lexical_dim, c=c))
        static = shared_static_embedder().embed(texts)
        cheap = _fit_stage(2, f"the cascade's cheap {task} head (static embedding + n-grams)",
                           lambda: fit_head(task, texts, labels, static, lexical_dim=lexical_dim, c=c,
                                            embedding_scale=STATIC_SCALE))
        cheap.meta["embedding"] = "static"
    except DataError as exc:
        _remove_empty(out, made)
        raise click.ClickException(str(exc)) from exc
    except BaseException:  # interrupted (Ctrl-C) or failed: no empty directory left behind
        _remove_empty(out, made)
        raise
    full.save(out / f"{task}.npz")
    cheap.save(out / f"{task}.lexical.npz")
    click.echo(json.dumps({"task": task, "labels": full.labels, "n": len(texts), "out": str(out)}))


def _fit_stage(number: int, what: str, fit):  # noqa: ANN001, ANN202
    """Fit one head, saying so on stderr (stdout keeps the JSON): on 10k rows and 77 labels the fit
    takes minutes after the encoding bar reached 100%, which looked like a hang."""
    started = time.monotonic()
    click.echo(f"fitting head {number}/2: {what} ...", err=True)
    head = fit()
    click.echo(f"fitted head {number}/2 in {time.monotonic() - started:.0f}s", err=True)
    return head


def _make_dir(out: Path) -> Path | None:
    """Create ``out`` (and missing parents); returns the topmost directory created, None if it existed."""
    top = None
    for parent in [out, *out.parents]:
        if parent.exists():
            break
        top = parent
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"cannot write the head to {out}: {exc.strerror or exc}") from None
    return top


def _remove_empty(out: Path, top: Path | None) -> None:
    """Remove the directories ``_make_dir`` created (``out`` up to ``top``) if nothing was written there."""
    if top is None:
        return
    for path in [out, *out.parents]:
        try:
            path.rmdir()
        except OSError:
            return
        if path == top:
            return


@triage.command("eval")
@click.option("--task", type=click.Choice(TASKS), required=True)
@click.option("--data", "data", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="CSV with columns text,label.")
@click.option("--model", "model", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Directory of heads from `triage train` (default: the bundled heads).")
@click.option("--mode", type=click.Choice(["transformer", "cascade"]), default="transformer", show_default=True,
              help="transformer scores every text with the encoder (best quality).")
@click.option("--batch", type=click.IntRange(1, 4096), default=256, show_default=True, help="Texts per scoring call.")
@click.pass_obj
def evaluate_cmd(settings, task: str, data: Path, model: Path | None, mode: str, batch: int) -> None:  # noqa: ANN001
    """Evaluate TASK on DATA; prints one JSON object (n, accuracy, macro_f1, macro_recall, per label,
    and escalate_precision/escalate_recall for sensitivity)."""
    from tqdm import tqdm

    from triage.engine import TriageEngine
    from triage.protocol import TriageInput
    from triage.train import DataError, escalation_metrics, evaluate, fold_labels, read_csv

    try:
        texts, labels = read_csv(data)
        if model is not None and not (model / f"{task}.npz").exists():
            raise DataError(f"{model}: no {task} head here (train one with `socialcare triage train --task {task}`)")
        from triage import configure_encoder

        configure_encoder(settings)
        engine = TriageEngine(mode=mode, custom_dir=model, cache_size=0, encoder_backend=settings.encoder_backend)
        known = engine.full[task].labels
        labels = fold_labels(task, labels, known)
        unknown = sorted(set(labels) - set(known))
        check_unknown_labels(task, data, labels, known, unknown, custom=model is not None)
    except (DataError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    preds: list[str] = []
    with tqdm(total=len(texts), desc=f"eval {task}", unit=" texts", file=sys.stderr, disable=None) as bar:
        for start in range(0, len(texts), batch):
            chunk = texts[start:start + batch]
            outs = engine.score_texts([TriageInput(text=t) for t in chunk])
            preds += [getattr(o, task).label for o in outs]
            bar.update(len(chunk))
    result = {"task": task, "model_version": engine.model_version, **evaluate(labels, preds, known + unknown)}
    if unknown:
        result["unknown_labels"] = unknown
    if task == "sensitivity":
        result.update(escalation_metrics(labels, preds))
    click.echo(json.dumps(result))


# A custom taxonomy's small test split may hold a few intents its training split lacked (a random
# 400/200 split of 77 intents does): up to this share of rows they count as errors, with a warning.
# Beyond it, the file and the model do not belong together: a clear error.
UNSEEN_LABEL_TOLERANCE = 0.05


def check_unknown_labels(task: str, data: Path, labels: list[str], known: list[str], unknown: list[str], *,
                         custom: bool) -> None:
    """Raise a DataError for labels the model cannot predict (see UNSEEN_LABEL_TOLERANCE)."""
    from triage.train import DataError

    if not unknown:
        return
    shown = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
    if task != "issue_type" or not custom:
        raise DataError(f"{data}: labels [{shown}] are not {task} labels (they are {', '.join(known)})")
    rows = sum(1 for label in labels if label in set(unknown))
    if rows > UNSEEN_LABEL_TOLERANCE * len(labels):
        raise DataError(f"{data}: {rows} of {len(labels)} rows have labels the model in --model does not know: "
                        f"[{shown}] (it knows {', '.join(known[:20])}{' ...' if len(known) > 20 else ''})")
    click.echo(f"warning: {rows} row(s) with label(s) the model never saw count as errors: {shown}", err=True)

