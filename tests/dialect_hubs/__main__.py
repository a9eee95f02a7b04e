"""Serve one dialect hub until interrupted, to try the conformance suite by hand:

    python -m tests.dialect_hubs all_eight            # prints ws://127.0.0.1:PORT
    empq conformance ws://127.0.0.1:PORT --report out/

Dialects: reference (no deviation), all_eight, and each of DIALECTS.  127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from .base import ReferenceHub
from .dialects import DIALECTS, AllEight

HUBS: dict[str, type[ReferenceHub]] = {"reference": ReferenceHub, "all_eight": AllEight, **DIALECTS}


async def serve(name: str, seconds: float) -> None:
    async with HUBS[name]() as hub:
        print(hub.url, flush=True)
        await asyncio.sleep(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dialect", choices=sorted(HUBS))
    parser.add_argument("--seconds", type=float, default=3600, help="stop after this long (default 1 h)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.dialect, args.seconds))


if __name__ == "__main__":
    main()
