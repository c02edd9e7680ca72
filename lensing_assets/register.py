"""Register sims as partitions of the instance (``DAGSTER_HOME``).

``python -m lensing_assets.register`` registers every sim the configured source holds now
(as loading the definitions and the discovery sensor do); ``python -m lensing_assets.register
7 109`` registers the given sims, which must be in the source's catalog. It prints how many it
added.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg

from lensing_assets.defs.partitions import register_sims
from lensing_assets.defs.registration import unknown_sim_message
from lensing_core.config import PlatformSettings


def main(argv: list[str] | None = None) -> int:
    """Register the discovered sims, or the sims given on the command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sims", type=int, nargs="*", help="sim ids (default: all discovered)")
    args = parser.parse_args(argv)
    settings = PlatformSettings.from_env()
    source = settings.kappa_source()
    unknown = [s for s in args.sims if s not in source.catalog]
    if unknown:
        parser.exit(2, f"{parser.prog}: error: {unknown_sim_message(source, str(unknown[0]))}\n")
    wanted = args.sims or source.discover()
    instance = dg.DagsterInstance.get()
    added = register_sims(instance, wanted)
    print(
        f"registered {len(added)} new sims of {len(wanted)} ({source.name} source, "
        f"suite {settings.source.suite!r}) in the instance at {instance.root_directory}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
