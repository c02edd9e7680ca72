"""Register sims as partitions of the instance (``DAGSTER_HOME``).

``python -m lensing_assets.register`` registers every sim the configured source holds now
(as the discovery sensor does while the daemon runs), so that
``dagster asset materialize --select kappa_maps --partition 109`` works on a fresh
instance; ``python -m lensing_assets.register 7 109`` registers the given sims of the
configured catalog only. It prints how many sims it added.
"""

import argparse
import sys

import dagster as dg

from lensing_assets.defs.partitions import SETTINGS, register_sims
from lensing_core.sims.inputs import discover_sim_ids


def main(argv: list[str] | None = None) -> int:
    """Register the discovered sims, or the sims given on the command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sims", type=int, nargs="*", help="sim ids (default: all discovered)")
    args = parser.parse_args(argv)
    if args.sims:
        catalog = SETTINGS.catalog()
        unknown = [s for s in args.sims if s not in catalog]
        if unknown:
            parser.error(f"sims {unknown} are not in the configured catalog ({catalog.name})")
        wanted = args.sims
    else:
        wanted = discover_sim_ids(SETTINGS)
    instance = dg.DagsterInstance.get()
    added = register_sims(instance, wanted)
    print(
        f"registered {len(added)} new sims of {len(wanted)} ({SETTINGS.source} source, "
        f"suite {SETTINGS.suite!r}) in the instance at {instance.root_directory}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
