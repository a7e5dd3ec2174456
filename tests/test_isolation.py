"""The test fixture's reset: one test can't leak options or open registries into the next."""

from __future__ import annotations

import logging
import os
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


def test_a_forked_child_starts_with_empty_registries_and_leaves_the_parents_alone(project, tmp_path):
    lwdp.configure(store_url=(tmp_path / "shared").as_uri())

    @stage(n=1, cache=True)
    def stg_one(n):
        return pd.DataFrame({"n": [n]})

    stg_one()
    parents = dict(catalog._catalogs)
    assert parents and remote._STORES
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: nothing of the parent's is reused, and its own run works
        try:
            empty = not catalog._catalogs and not remote._STORES
            ok = empty and stg_one()["n"].tolist() == [1] and all(c not in parents.values() for c in catalog._catalogs.values())
            os.write(write, b"ok" if ok else b"reused")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"ok"
    assert catalog._catalogs == parents and stg_one()["n"].tolist() == [1]  # the parent's connections still serve
