"""`govcon audit verify|head|key` and the audit key `db init` creates (engine/audit_verify.py does the
checking; storage/audit_key.py holds the key's file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.audit_anchor import last_anchored_head
from engine.audit_verify import UNKEYED_WARNING, enroll_key, format_head
from engine.errors import InvalidInput
from storage import audit
from storage.audit_key import AuditKeyError, load_or_create

EXIT_TAMPERED = 6


def _strict_key(ctx) -> audit.AuditKey | None:
    """The configured key; a key file that exists but cannot be used stops the command (it names why)."""
    try:
        key = ctx.config.audit_key()
    except AuditKeyError as exc:
        raise InvalidInput(str(exc)) from None
    audit.use_key(ctx.gov.store.engine.url, key)
    return key


def create_audit_key(ctx) -> str | None:
    """`db init`: the audit key file, created when missing (mode 0600); what to tell the operator."""
    if ctx.gov.is_initialised():
        return None  # init_store refuses it; no key for a store that is not being created
    path = ctx.config.audit_key_path()
    try:
        key, created = load_or_create(path)
    except AuditKeyError as exc:
        raise InvalidInput(f"{exc} (the audit key; set [audit] key_file or GOVCON_AUDIT_KEY_FILE)") from None
    audit.use_key(ctx.gov.store.engine.url, key)
    verb = "created" if created else "using"
    return (f"audit chain keyed with {path} (key {key.id}, {verb}): back this file up apart from the store; "
            "without it `audit verify` cannot check the chain")


def run_audit_command(ctx) -> int:
    sub = ctx.args.audit_command
    if sub == "head":
        if getattr(ctx.gov, "remote", False):  # client mode: the service holds the key and the store
            seq, digest = ctx.gov.audit_head()
        else:
            _strict_key(ctx)
            with ctx.gov.store.read() as conn:
                seq, digest = audit.head(conn)
        head = format_head(seq, digest)
        if ctx.args.json:
            ctx.emit_json({"head": head, "seq": seq, "hash": digest})
        else:
            print(head, file=ctx.out)
        return 0
    if sub == "key":
        return _key(ctx)
    return _verify(ctx)


def _expected_head(ctx) -> str | None:
    """--expect-head, or the newest head of --anchor-file (read here, with the caller's rights)."""
    anchor_file = getattr(ctx.args, "anchor_file", None)
    if anchor_file is None:
        return ctx.args.expect_head
    if ctx.args.expect_head is not None:
        raise InvalidInput("give --expect-head or --anchor-file, not both")
    head, at = last_anchored_head(Path(anchor_file).expanduser())
    if not ctx.args.json:
        print(f"expecting the head anchored at {at} in {anchor_file}: {head}", file=ctx.out)
    return head


def _verify(ctx) -> int:
    expect_head = _expected_head(ctx)
    key: audit.AuditKey | bool | None  # the service's (client mode: only whether it holds one) or ours
    if getattr(ctx.gov, "remote", False):  # client mode: the service verifies with the key it holds
        report, keyed = ctx.gov.audit_verify_report(expect_head)
        key = True if keyed else None
    else:
        key = _strict_key(ctx)
        report, _ = ctx.gov.audit_verify_report(expect_head, key=key or False)
    if ctx.args.json:
        ctx.emit_json(report.to_json())
        return 0 if report.ok else EXIT_TAMPERED
    for line in report.unchecked:
        print(f"not checkable: {line}", file=ctx.out)
    for line in report.warnings:
        print(f"warning: audit chain {line}" + ("" if key is None else " (configure the key and run "
                                                "`govcon audit key init`)"), file=ctx.err)
    if report.ok:
        keyed = (f"keyed from entry {report.keyed_from} with key {report.key_id}" if report.keyed_from
                 else UNKEYED_WARNING)
        print(f"audit log intact: {report.checked} entries verified ({keyed}); head {format_head(*report.head)}",
              file=ctx.out)
        return 0
    problem = report.chain_problem
    word = "AUDIT LOG NOT VERIFIED" if problem is not None and not problem.tampered else "AUDIT LOG TAMPERED"
    for line in report.problems:
        first = problem is not None and line == str(problem)
        extra = f" ({report.checked} entries before it verified)" if first else ""
        print(f"{word}: {line}{extra}", file=ctx.err)
    return EXIT_TAMPERED


def _key(ctx) -> int:
    path = ctx.config.audit_key_path()
    if ctx.args.key_command == "show":
        key = _strict_key(ctx)
        doc: dict[str, Any] = {"path": str(path), "exists": key is not None, "keyId": key.id if key else None}
        ctx.emit_json(doc) if ctx.args.json else print(
            f"{path}: key {key.id}" if key else f"{path}: no audit key (the chain stays unkeyed)", file=ctx.out)
        return 0
    ctx.gov.require(ctx.operator, "roles.manage")  # admin: keying the chain is the store's trust anchor
    try:
        key, created = load_or_create(path)
    except AuditKeyError as exc:
        raise InvalidInput(str(exc)) from None
    audit.use_key(ctx.gov.store.engine.url, key)
    seq = enroll_key(ctx.gov, ctx.operator, key)
    verb = "created" if created else "found"
    msg = (f"{verb} the audit key {path} (key {key.id}); " +
           (f"the chain is keyed from entry {seq} on" if seq else "the chain was keyed with it already") +
           ": back the file up apart from the store")
    ctx.emit_json({"path": str(path), "keyId": key.id, "created": created, "keyedFrom": seq}) if ctx.args.json \
        else print(msg, file=ctx.out)
    return 0
