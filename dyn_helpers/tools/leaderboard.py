"""Make the leaderboard's records: `python -m dyn_helpers.tools.leaderboard` (`make leaderboard`).

Each entry's multi-seed record (`book/results/leaderboard/<board>/<entry>.json`) is remade when it
is missing or stale (its fingerprint differs: the code it uses, the lock or the seeds changed);
then, if any record changed or the timing record lacks an entry, every entry is timed on the CPU,
one at a time, into `book/results/leaderboard/timing-cpu.json`. Time on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

from dyn_helpers.devices import provenance
from dyn_helpers.leaderboard import board as lb


def _write(path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def make_records(names: Sequence[str] | None = None, force: bool = False) -> list[str]:
    """Remake the stale records (of `names`, if given); return the names remade."""
    known = lb.entries()
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise SystemExit(f"unknown entries {unknown}; known: {sorted(known)}")
    remade = []
    for name, e in known.items():
        if (names and name not in names) or (not force and lb.is_current(e)):
            continue
        print(f"training {name} under {len(lb.SEEDS)} seeds ...", flush=True)
        record = lb.run_entry(e)
        _write(lb.record_path(e), record)
        print(f"  {name}: {record['elapsed_s']:.0f} s", flush=True)
        remade.append(name)
    return remade


def make_timing(force: bool = False) -> bool:
    """Time every entry whose timing is missing or stale; return whether the timing record changed."""
    path = lb.timing_path()
    old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"entries": {}}
    rows, changed, start = {}, False, time.perf_counter()
    for name, e in lb.entries().items():
        record = lb.load(e)
        if record is None or not lb.is_current(e):
            raise SystemExit(f"{name} has no current record; make the records first")
        kept = old["entries"].get(name)
        if not force and kept is not None and kept["fingerprint"] == record["fingerprint"]:
            rows[name] = kept
            continue
        print(f"timing {name} ...", flush=True)
        rows[name] = lb.time_entry(e, record)
        changed = True
    if changed or set(rows) != set(old["entries"]):
        _write(
            path,
            {
                "command": lb.COMMAND,
                "batch_sizes": list(lb.TIMED_BATCHES),
                "inputs": lb.TIMED_INPUTS,
                "elapsed_s": round(time.perf_counter() - start, 1),
                "provenance": provenance("cpu"),
                "entries": rows,
            },
        )
        return True
    return False


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("entries", nargs="*", help="only these entries (default: every stale one)")
    parser.add_argument("--force", action="store_true", help="remake even current records")
    parser.add_argument("--no-timing", action="store_true", help="make the accuracy records only")
    args = parser.parse_args(argv)
    make_records(args.entries or None, force=args.force)
    if not args.no_timing:
        make_timing(force=args.force and not args.entries)


if __name__ == "__main__":
    main()
