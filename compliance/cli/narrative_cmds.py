"""The validator's narrative of a quarter (conclusion and rating, limitations, conditions, controls)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compliance.cli.common import JsonOpt, emit, session
from compliance.errors import UsageError

narrative_app = typer.Typer(help="The validator's narrative printed in the pack (versioned, through the ledger).",
                            no_args_is_help=True)


@narrative_app.command("set")
def narrative_set(ctx: typer.Context,
                  quarter: Annotated[str, typer.Option("--quarter", help="Quarter, e.g. 2026Q3.")],
                  section: Annotated[str, typer.Option("--section", help="conclusion | limitations | conditions | controls")],
                  file: Annotated[Path, typer.Option("--file", help="Markdown text (a small subset is rendered: "
                                                                      "paragraphs, lists, **bold**, *italic*).")],
                  model: Annotated[str | None, typer.Option("--model", help="Model id (default: the portfolio).")] = None,
                  rating: Annotated[str | None, typer.Option("--rating", help="With the conclusion: fit | "
                                                                              "'fit with conditions' | 'not fit'.")] = None,
                  as_json: JsonOpt = False) -> None:
    """Record a new version of one section of the validator's narrative. Needs the validator or
    approver role on the model (the portfolio: on every model); its owners and developers may not.

    Example: compliance narrative set --quarter 2026Q3 --model retail-pd --section conclusion --file conclusion.md --rating "fit with conditions"
    """
    from compliance.services.narrative import set_narrative

    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {file}: {exc}") from exc
    with session(ctx) as s:
        n = set_narrative(s, quarter, section, text, model_id=model, rating=rating)
    emit(n, as_json, lambda n: typer.echo(f"{n['author']} recorded {n['section']} v{n['version']} for {n['quarter']}"
                                          f" ({n['model_id'] or 'portfolio'}){' rating ' + n['rating'] if n['rating'] else ''}"))
