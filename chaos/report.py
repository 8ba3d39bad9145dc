"""The chaos run's table (Markdown), printed and written with the raw results."""

import json
from pathlib import Path

from .runner import INVARIANTS, FaultResult


def _mark(result: FaultResult, code: str) -> str:
    if result.status == "skipped" or code not in result.checks:
        return "–"
    return "pass" if result.checks[code] else "**FAIL**"


def table(results: list[FaultResult]) -> str:
    header = ["fault", "orders (202s)", "time to recover", *INVARIANTS, "every 202 kept", "mails sent / dup / missing"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        if r.status == "skipped":
            cells = [r.title, "–", r.note, *["–"] * len(INVARIANTS), "–", "–"]
        else:
            recover = f"{r.recover_seconds:.1f} s" if r.recover_seconds is not None else f"did not recover ({r.note})"
            kept = _mark(r, "A") if "A" in r.checks else f"{r.lost_202} lost (not promised)"
            if "A" in r.checks and r.lost_202:
                kept += f" ({r.lost_202} lost)"
            mails = f"{r.mails.get('sent', 0)} / {r.mails.get('duplicates', 0)} / {r.mails.get('missing', 0)}"
            cells = [r.title, f"{r.orders} ({r.accepted})", recover, *[_mark(r, c) for c in INVARIANTS], kept, mails]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _why(mails: dict) -> str:
    return ", ".join(f"{n} {why}" for why, n in mails.get("missing_why", {}).items())


def _mails_note(r: FaultResult) -> str:
    note = f"{r.mails['missing']} mails missing when counted ({_why(r.mails)})"
    if r.mails_end:
        end = r.mails_end
        note += (
            f"; {r.mails_end_seconds} s later, when every fault had run: {end['sent']} sent, "
            f"{end['duplicates']} duplicates, {end['missing']} missing" + (f" ({_why(end)})" if end["missing"] else "")
        )
    return note


def write(results: list[FaultResult], *, out: Path, meta: dict) -> str:
    """Writes latest.md and latest.json into `out`; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Chaos run {meta['when']}",
        "",
        f"{meta['orders']} orders per fault; revision {meta['revision']}; broker {meta['broker']}; "
        f"gate Redis {meta['gate']}; {meta['seconds']} s in all.",
        "",
        table(results),
        "",
        "Time to recover: from the fault to the moment every paid order is delivered again "
        "(for the Redis faults: checkout answers 202 again, then every paid order is delivered).",
    ]
    notes = [(r.title, r.note) for r in results if r.status == "ran" and r.note]
    notes += [(r.title, _mails_note(r)) for r in results if r.mails.get("missing")]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {title}: {text}" for title, text in notes]
    failures = [(r.title, v) for r in results for v in r.violations] + [
        (r.title, r.note) for r in results if r.status == "error"
    ]
    if failures:
        lines += ["", "## What failed", ""] + [f"- {title}: {text}" for title, text in failures]
    markdown = "\n".join(lines) + "\n"
    (out / "latest.md").write_text(markdown)
    (out / "latest.json").write_text(
        json.dumps({**meta, "faults": [r.to_dict() for r in results]}, indent=2, default=str)
    )
    return markdown
