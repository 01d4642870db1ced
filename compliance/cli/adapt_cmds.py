"""`compliance adapt` and `compliance adaptations`: parse, call services.adaptation, print."""

from __future__ import annotations

from typing import Annotated

import typer

from compliance.cli.common import JsonOpt, emit, session, table


def adapt(
    ctx: typer.Context,
    artifact: Annotated[str, typer.Argument(help="The stale SAE, transcoder or CLT to adapt (its id).")],
    to_version: Annotated[str, typer.Option("--to-version", help="The model version to adapt it to.")],
    activations: Annotated[str | None, typer.Option(help="Activations of the new version (safetensors: `activations` [N, d_in]; transcoders also `targets`; CLTs `inputs_{l}`/`targets_{l}`).")] = None,
    adapter: Annotated[bool, typer.Option("--adapter", help="Compute the activations by running the version through the model's adapter (the default without --activations).")] = False,
    data: Annotated[str | None, typer.Option(help="With --adapter: data file (default: the latest registered production window that has ended).")] = None,
    budget: Annotated[str | None, typer.Option("--budget", help="Time budget of the fine-tune (e.g. 30s, 5m; default 5m unless --steps is given).")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Step budget (deterministic: the same seed, data and steps give the same weights on CPU).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the held-out split and the minibatches (default: random; always recorded).")] = None,
    new_id: Annotated[str | None, typer.Option("--id", help="Id of the adapted artifact (default: PARENT-adapted-VERSION).")] = None,
    out: Annotated[str | None, typer.Option("--out", help="Folder for the adapted files (default: beside the parent, named by --id).")] = None,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 1e-3,
    sparsity: Annotated[float | None, typer.Option("--sparsity", help="Sparsity coefficient λ (default: the parent's l1_coefficient, else 0.01).")] = None,
    max_rows: Annotated[int, typer.Option("--max-rows", help="Use at most this many data rows (0: all).")] = 20_000,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: cuda when available).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Adapt a stale artifact to a newer version: warm-start, fine-tune under a budget, check on held-out rows.

    A child that reaches the policy's fidelity is registered with its lineage and its held-out
    fidelity check; otherwise the adaptation is recorded as failed and nothing is registered.
    Example: compliance adapt retail-pd-sae-l1-v1 --to-version v4 --adapter --steps 400 --seed 7
    """
    from compliance.services.adaptation import adapt as run_adapt

    with session(ctx) as s:
        r = run_adapt(s, artifact, to_version, activations=activations, adapter=adapter, data=data, budget=budget,
                      steps=steps, seed=seed, new_id=new_id, out=out, device=device, lr=lr, sparsity=sparsity,
                      max_rows=max_rows or None)

    def human(r):
        m = r["metrics"]
        surv = m.get("survival") or {}
        typer.echo(f"adaptation {r['id']} of {r['parent_artifact_id']} to {r['version']}: {r['status']}")
        typer.echo(f"  held-out EV {_f(m.get('explained_variance_before'))} → {_f(m.get('explained_variance_after'))}; "
                   f"{surv.get('n_survived')}/{surv.get('n_old')} features survive "
                   f"({surv.get('n_carried_labels', 0)} labels carried)")
        typer.echo(f"  {m['steps']} steps ({m['stop_reason']}), {_f(m.get('seconds'))} s, {m['flops']:.3g} FLOP, "
                   f"final loss {_f(m.get('final_loss'))}, seed {r['parameters']['seed']}")
        if r.get("child_artifact_id"):
            typer.echo(f"  registered {r['child_artifact_id']} (check {r['check_id']}: {r['check']['status']})")
        for reason in (r.get("reasons") or [])[1 if r["status"] == "failed" else 0:]:
            typer.echo(f"  {reason}")

    emit(r, as_json, human)
    if r["status"] == "failed":  # recorded (nothing registered): say so on stderr, exit non-zero
        typer.echo(f"error: {r['reasons'][0]} (adaptation {r['id']} recorded as failed)", err=True)
        raise typer.Exit(1)


def adaptations(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    artifact: Annotated[str | None, typer.Option(help="Only adaptations of (or to) this artifact.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List recorded adaptations (parent → child, EV before/after, survival, compute).

    Example: compliance adaptations --model retail-pd
    """
    from compliance.services.adaptation import list_adaptations

    with session(ctx, readonly=True) as s:
        rows = list_adaptations(s, model_id=model, artifact_id=artifact)
    emit(rows, as_json, lambda rs: table(
        "Adaptations", ["id", "parent", "version", "child", "EV before", "EV after", "survival", "steps", "status"],
        [[r["id"], r["parent_artifact_id"], r["version"], r["child_artifact_id"] or "—",
          _f(r["metrics"].get("explained_variance_before")), _f(r["metrics"].get("explained_variance_after")),
          _f((r["metrics"].get("survival") or {}).get("survival_share")), r["metrics"].get("steps"), r["status"]]
         for r in rs]))


def _f(x) -> str:
    return "—" if not isinstance(x, (int, float)) else f"{x:.3f}"
