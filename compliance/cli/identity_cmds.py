"""People, roles, signing keys and ledger anchors (DESIGN §7)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compliance.cli.common import JsonOpt, emit, session, table

person_app = typer.Typer(help="People who act on the store (a person is their login).", no_args_is_help=True)
role_app = typer.Typer(help="Roles (admin, owner, developer, validator, approver), global or per model.", no_args_is_help=True)
key_app = typer.Typer(help="Ed25519 signing keys: generate a private key file, register public keys.", no_args_is_help=True)

ModelOpt = Annotated[str | None, typer.Option("--model", help="The model the role applies to (default: global).")]


@person_app.command("add")
def person_add(ctx: typer.Context, person: Annotated[str, typer.Argument(help="Login: PostgreSQL role, or OS user on SQLite.")],
               name: Annotated[str | None, typer.Option(help="Full name (default: the login).")] = None,
               as_json: JsonOpt = False) -> None:
    """Register a person (admin only). On PostgreSQL the login role must exist.

    Example: compliance person add carol --name "Carol Diaz"
    """
    from compliance.services.people import add_person

    with session(ctx) as s:
        p = add_person(s, person, name=name)
    emit(p, as_json, lambda p: typer.echo(f"person {p['id']} ({p['name']}) added by {p['actor']}"))


@person_app.command("list")
def person_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List registered people.  Example: compliance person list --json"""
    from compliance.services.people import list_people

    with session(ctx, readonly=True) as s:
        rows = list_people(s)
    emit(rows, as_json, lambda rs: table(f"People ({len(rs)})", ["login", "name", "added by", "at"],
                                         [[r["id"], r["name"], r["actor"], r["recorded_at"]] for r in rs]))


def _role(ctx: typer.Context, person: str, role: str, model: str | None, as_json: bool, action: str) -> None:
    from compliance.services import people

    with session(ctx) as s:
        g = (people.grant_role if action == "grant" else people.revoke_role)(s, person, role, model_id=model)
    where = f" on {model}" if model else " (global)"
    emit(g, as_json, lambda g: typer.echo(f"{role}{where} {action}ed {'to' if action == 'grant' else 'from'} {person} "
                                          f"by {g['actor']}"))


@role_app.command("grant")
def role_grant(ctx: typer.Context, person: str, role: str, model: ModelOpt = None, as_json: JsonOpt = False) -> None:
    """Grant a role (admin only; a ledger event).

    Example: compliance role grant carol validator --model retail-pd
    """
    _role(ctx, person, role, model, as_json, "grant")


@role_app.command("revoke")
def role_revoke(ctx: typer.Context, person: str, role: str, model: ModelOpt = None, as_json: JsonOpt = False) -> None:
    """Revoke a role (admin only; a ledger event; the grant stays in the history).

    Example: compliance role revoke alice.chen developer --model retail-pd
    """
    _role(ctx, person, role, model, as_json, "revoke")


@role_app.command("list")
def role_list(ctx: typer.Context, person: Annotated[str | None, typer.Option(help="Only this person.")] = None,
              model: Annotated[str | None, typer.Option("--model", help="Roles that apply to this model.")] = None,
              as_json: JsonOpt = False) -> None:
    """Roles in force.  Example: compliance role list --json"""
    from compliance.services.people import list_roles

    with session(ctx, readonly=True) as s:
        rows = list_roles(s, person_id=person, model_id=model)
    emit(rows, as_json, lambda rs: table(f"Roles in force ({len(rs)})", ["person", "role", "model", "granted by", "at"],
                                         [[r["person"], r["role"], r["model_id"] or "(global)", r["granted_by"],
                                           r["granted_at"]] for r in rs]))


def read_passphrase(confirm: bool) -> str:
    from compliance.identity.keys import passphrase_from_env

    return passphrase_from_env() or typer.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)


@key_app.command("generate")
def key_generate(out: Annotated[Path, typer.Option("--out", help="Private key file to write (mode 0600).")],
                 as_json: JsonOpt = False) -> None:
    """Generate an Ed25519 key: a passphrase-protected PKCS#8 file (0600) and its public key
    (OUT.pub). The passphrase comes from COMPLIANCE_KEY_PASSPHRASE or a prompt.

    Example: compliance key generate --out ~/.compliance/carol.key
    """
    from compliance.identity.keys import fingerprint, generate

    pub = generate(out, read_passphrase(True))
    pub_path = out.with_name(out.name + ".pub")
    pub_path.write_text(pub + "\n", encoding="utf-8")
    data = {"private_key": str(out), "public_key_file": str(pub_path), "public_key": pub, "fingerprint": fingerprint(pub)}
    emit(data, as_json, lambda d: typer.echo(f"private key {d['private_key']} (0600); public key {d['public_key_file']}; "
                                             f"fingerprint {d['fingerprint']}"))


@key_app.command("register")
def key_register(ctx: typer.Context, person: Annotated[str | None, typer.Argument(help="Owner of the key (omit with --organisation).")] = None,
                 public: Annotated[Path, typer.Option("--public", help="Public key file (OUT.pub of `key generate`).")] = ...,
                 organisation: Annotated[bool, typer.Option("--organisation", help="The organisation's anchor key.")] = False,
                 as_json: JsonOpt = False) -> None:
    """Register a public key for a person, or the organisation's key (admin only).

    Example: compliance key register carol --public carol.key.pub
    """
    from compliance.services.signing import register_key

    with session(ctx) as s:
        k = register_key(s, None if organisation else person, public)
    emit(k, as_json, lambda k: typer.echo(f"key {k['fingerprint']} registered for {k['person_id'] or 'the organisation'}"))


@key_app.command("revoke")
def key_revoke(ctx: typer.Context, fingerprint: str, as_json: JsonOpt = False) -> None:
    """Revoke a key (admin only): a signature made with it after now fails verify.

    Example: compliance key revoke 3f1c...e9
    """
    from compliance.services.signing import revoke_key

    with session(ctx) as s:
        k = revoke_key(s, fingerprint)
    emit(k, as_json, lambda k: typer.echo(f"key {k['fingerprint']} revoked"))


@key_app.command("list")
def key_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Registered keys and their state.  Example: compliance key list --json"""
    from compliance.services.signing import list_keys

    with session(ctx, readonly=True) as s:
        rows = list_keys(s)
    emit(rows, as_json, lambda rs: table(f"Keys ({len(rs)})", ["fingerprint", "owner", "state", "registered"],
                                         [[r["fingerprint"], r["person_id"] or "(organisation)", r["state"],
                                           r["registered_at"]] for r in rs]))


def anchor(ctx: typer.Context,
           key: Annotated[Path, typer.Option("--key", help="The organisation's private key file.")],
           out: Annotated[Path, typer.Option("--out", help="Anchor file to write (keep it outside the database).")],
           organisation: Annotated[str, typer.Option(help="Name printed in the anchor.")] = "",
           as_json: JsonOpt = False) -> None:
    """Sign the ledger head with the organisation's key and write it to a file (and the ledger).

    Example: compliance anchor --key org.key --out anchors/2026-09-30.json
    """
    from compliance.services.signing import make_anchor

    with session(ctx) as s:
        doc = make_anchor(s, key, read_passphrase(False), out, organisation=organisation)
    emit(doc, as_json, lambda d: typer.echo(f"anchor of entry {d['head_seq']} ({d['head_hash']}) written to {out}"))
