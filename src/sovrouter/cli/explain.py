"""``sovrouter explain REQUEST_ID [--db var/records.sqlite | --url URL [--password-env VAR]] [--json]``: the
decision evidence of one request, from one instance's record file (opened read-only; a SQLite file that holds no
records table is refused, untouched) or the shared records database. REQUEST_ID may also be the ``id`` of the
completion the gateway returned (``chatcmpl-<request id>``), as ``/v1/feedback`` takes it.

Prints, from the record store: tenant, declared and effective data class, detected personal-data *types*,
the policy version, every candidate allowed or excluded with the Cedar rule(s) that decided it and the
sentence of tenants.json each rule implements, the calls made and the cache outcome. Records never hold
personal values, so neither does this output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from sovrouter.contracts import RequestRecord
from sovrouter.errors import ConfigError
from sovrouter.store.records import SQLiteRecordStore, find_record
from sovrouter.store.shared_records import read_shared
from sovrouter.store.sql import database_url


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("explain", help="print the sovereignty / routing evidence of one request")
    p.add_argument("request_id", help="request id (as in the record store), or the completion's id "
                   "(chatcmpl-<request id>)")
    p.add_argument("--db", type=Path, default=Path("var/records.sqlite"), help="records SQLite file")
    p.add_argument("--url", help="the shared records database instead (postgresql+psycopg://user@host/db)")
    p.add_argument("--password-env", help="environment variable holding the shared database's password")
    p.add_argument("--json", action="store_true", help="print the evidence as JSON")
    p.set_defaults(func=explain)


def _reasons() -> dict[str, str]:
    """Rule id -> sentence, from the policy files shipped with this version (empty if they do not load)."""
    from sovrouter.policy.cedar import PolicySet

    try:
        return PolicySet().reasons
    except ConfigError:
        return {}


def evidence(record: RequestRecord, reasons: dict[str, str]) -> dict[str, object]:
    versions = sorted({v.policy_version for v in record.policy if v.policy_version})
    return {
        "request_id": record.request_id,
        "external_id": record.external_id,
        "tenant": record.tenant,
        "status": record.status,
        "error_code": record.error_code,
        "data_class": record.data_class,
        "effective_class": record.effective_class,
        "detected_pii_types": record.detected_pii_types,
        "policy_version": versions[0] if len(versions) == 1 else versions,
        "candidates": [
            {"candidate": v.candidate.key, "allowed": v.allowed, "rules": v.rule.split(","),
             "reasons": [reasons[r] for r in v.rule.split(",") if r in reasons]}
            for v in record.policy
        ],
        "calls": [{"candidate": c.candidate.key, "outcome": c.outcome, "purpose": c.purpose} for c in record.calls],
        "final": record.final.key if record.final else None,
        "cache": {"kind": record.cache.kind,
                  "source_candidate": record.cache.source_candidate.key if record.cache.source_candidate else None},
        "decision_ms": round(record.decision_ms, 3),
    }


def _record(args: argparse.Namespace) -> RequestRecord:
    """The record of the id given: a request id, or a completion's ``id`` (``chatcmpl-`` + the request id), as
    ``/v1/feedback`` takes it."""
    if args.url is not None:
        database = database_url(args.url, args.password_env, "records")
        try:
            return find_record(lambda rid: read_shared(database, rid), args.request_id)
        except SQLAlchemyError as exc:
            raise ConfigError(f"records: cannot read the shared database ({type(exc).__name__})") from None
    # read-only, and only a record store: another SQLite file (a gateway's cache) is refused, never written to
    store = SQLiteRecordStore(args.db, read_only=True)
    try:
        return find_record(store.get, args.request_id)
    finally:
        store.close()


def explain(args: argparse.Namespace) -> int:
    record = _record(args)
    reasons = _reasons()
    ev = evidence(record, reasons)
    if args.json:
        print(json.dumps(ev, indent=1, ensure_ascii=False))
        return 0
    print(f"request   {ev['request_id']}  (tenant {ev['tenant']}, status {ev['status']}"
          + (f", {ev['error_code']}" if ev["error_code"] else "") + ")")
    print(f"class     declared {ev['data_class']} -> effective {ev['effective_class']}")
    types = record.detected_pii_types
    print(f"detected  {', '.join(types) if types else 'no personal data'}")
    print(f"policy    {ev['policy_version'] or 'n/a'}")
    for v in record.policy:
        print(f"  {'ALLOW  ' if v.allowed else 'EXCLUDE'} {v.candidate.key:<28} {v.rule}")
    shown: set[str] = set()
    for r in (r for v in record.policy for r in v.rule.split(",")):
        if r in reasons and r not in shown:
            shown.add(r)
            print(f"    {r}: {reasons[r]}")
    for c in record.calls:
        print(f"call      {c.candidate.key} {c.outcome} ({c.purpose})")
    print(f"final     {ev['final'] or '-'}   cache {record.cache.kind}"
          + (f" from {record.cache.source_candidate.key}" if record.cache.source_candidate else ""))
    return 0
