"""hub/README.md's one-hop map (tools/hub_map.py) is current, and every message has a case."""

from __future__ import annotations

import sys


def test_the_map_in_hub_readme_is_current(repo):
    sys.path.insert(0, str(repo / "tools"))
    import hub_map

    assert hub_map.readme_copy() == hub_map.render(), "stale: python tools/hub_map.py --write"
    missing = [row[0] for row in hub_map.rows() if row[-1] == "**none**"]
    assert not missing, f"messages without a conformance case: {missing}"
