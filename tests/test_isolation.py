"""The test fixture's reset: one test can't leak options or open registries into the next."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from conftest import reset_lwdp

import lwdp
from lwdp import config, stage
from lwdp.store import cache, catalog, quick_catalog, remote


def test_reset_restores_every_option_and_empties_every_registry(project, tmp_path, caplog):
    lwdp.configure(
        cache_dir=tmp_path / "elsewhere", hash_packages=["pandas"], store_url=(tmp_path / "shared").as_uri(),
        trust_pickle=True, storage_options={"auto_mkdir": True},
    )

    @stage(n=1, cache=True)
    def stg_one(n):
        return pd.DataFrame({"n": [n]})

    stg_one()
    catalog.open_catalog(config.cache_dir())
    lwdp.configure(catalog_url="postgresql+psycopg://nobody@127.0.0.1:1/none")  # set, never used
    with caplog.at_level(logging.WARNING, logger="lwdp"):
        cache._warn_once("a store that is down", "down")
    assert remote._STORES and cache._WARNED and catalog._catalogs and quick_catalog._connections

    reset_lwdp()
    assert config.cache_dir() == Path(".lwdp").absolute()
    assert (config.store_url(), config.catalog_url(), config.trust_pickle()) == (None, None, False)
    assert config.package_versions() == {} and config.storage_options() == {}
    assert not remote._STORES and not cache._WARNED and not catalog._catalogs and not quick_catalog._connections
