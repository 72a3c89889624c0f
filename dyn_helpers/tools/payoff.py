"""Make the records of "when dynamic networks pay": `python -m dyn_helpers.tools.payoff [FAMILY ...]` (`make payoff`).

Each family's record (`book/results/payoff/<family>.json`) is remade when it is missing or stale (its
fingerprint differs: the code it uses, the lock or the seeds changed); `--force` remakes it anyway.
Every sweep of the family is trained under `dyn_helpers.payoff.sweeps.SEEDS`. Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from dyn_helpers.payoff import sweeps


def make_records(families: Sequence[str] | None = None, force: bool = False) -> list[str]:
    """Remake the stale records (of `families`, if given); return the families remade."""
    unknown = sorted(set(families or ()) - set(sweeps.FAMILIES))
    if unknown:
        raise SystemExit(f"unknown families {unknown}; known: {list(sweeps.FAMILIES)}")
    remade = []
    for family in sweeps.FAMILIES:
        if (families and family not in families) or (not force and sweeps.is_current(family)):
            continue
        print(f"sweeping {family} under {len(sweeps.SEEDS)} seeds ...", flush=True)
        record = sweeps.run_family(family)
        path = sweeps.record_path(family)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(f"  {family}: {record['elapsed_s']:.0f} s", flush=True)
        remade.append(family)
    return remade


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "families", nargs="*", help=f"only these of {list(sweeps.FAMILIES)} (default: every stale one)"
    )
    parser.add_argument("--force", action="store_true", help="remake even current records")
    args = parser.parse_args(argv)
    remade = make_records(args.families, force=args.force)
    print(f"remade: {', '.join(remade) or 'none (every record is current)'}")


if __name__ == "__main__":
    main()
