"""README.md's settings table of `empq hub` is the code's (tools/settings_table.py), and every
setting has a flag (but the tokens), an environment variable and a help text."""

from __future__ import annotations

import sys
from dataclasses import fields


def test_readme_settings_table_is_current(repo):
    sys.path.insert(0, str(repo / "tools"))
    import settings_table

    assert settings_table.readme_copy() == settings_table.render(), (
        "stale: python tools/settings_table.py --write"
    )


def test_every_setting_is_a_flag_and_a_variable():
    import argparse

    from empq.hub.cli import configure
    from empq.hub.config import HELP, SECRETS, HubConfig

    parser = argparse.ArgumentParser()
    configure(parser)
    flags = {a.dest for a in parser._actions}
    for f in fields(HubConfig):
        assert HELP.get(f.name), f.name
        assert (f.name in flags) != (f.name in SECRETS), f.name
    args = parser.parse_args(["--ws-port", "4000", "--submit-rate", "2.5", "--metrics-public"])
    env = {"EMPQ_WS_PORT": "5000", "EMPQ_MAX_QUEUED_JOBS": "7", "EMPQ_CLIENT_TOKENS": "t"}
    config = HubConfig.from_env(
        env, **{f.name: getattr(args, f.name) for f in fields(HubConfig) if f.name in flags}
    )
    assert (config.ws_port, config.submit_rate, config.metrics_public) == (4000, 2.5, True)  # flags win
    assert (config.max_queued_jobs, config.client_tokens) == (7, "t")  # the environment otherwise
