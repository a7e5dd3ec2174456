"""The test fixture's reset: one test can't leak options or open registries into the next."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from conftest import reset_lwdp

import lwdp
from lwdp import config, stage
from lwdp.store import catalog, outcomes, remote


def test_reset_restores_every_option_and_empties_every_registry(project, tmp_path, caplog):
    lwdp.configure(
        cache_dir=tmp_path / "elsewhere", hash_packages=["pandas"], store_url=(tmp_path / "shared").as_uri(),
        trust_pickle=True, storage_options={"auto_mkdir": True},
    )

    @stage(n=1, cache=True)
    def stg_one(n):
        return pd.DataFrame({"n": [n]})

    stg_one()
    catalog.open_catalog(config.settings())
    lwdp.configure(catalog_url="postgresql+psycopg://nobody@127.0.0.1:1/none")  # set, never used
    with caplog.at_level(logging.WARNING, logger="lwdp"):
        outcomes.warn_once("a store that is down", "down")
    assert remote._STORES and outcomes._WARNED and catalog._catalogs

    reset_lwdp()
    assert config.settings() == config.Settings(Path(".lwdp").absolute())  # every option as by default
    assert config.settings().package_versions() == {} and config.storage_options() == {}
    assert not remote._STORES and not outcomes._WARNED and not catalog._catalogs
