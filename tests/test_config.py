"""Strict frozen-dataclass configs (hero_bench.config) and atomic outputs (hero_bench.io)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

import pytest

from hero_bench.config import ConfigError, apply_overrides, config_hash, from_dict, parse_override, to_dict
from hero_bench.io import atomic_path, atomic_write_json, atomic_write_text


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    """learning rate"""
    betas: tuple[float, int] = (0.9, 2)
    """a fixed-length tuple of mixed types"""


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    """a name"""
    mode: Literal["a", "b"] = "a"
    """one of a / b"""
    steps: int = 3
    """an integer"""
    flag: bool = False
    """a switch"""
    dims: tuple[int, ...] = (1, 2)
    """a variable-length tuple"""
    inner: Inner = field(default_factory=Inner)
    """a nested section"""


def test_from_dict_builds_nested_and_coerces():
    cfg = from_dict(Outer, {"steps": "5", "flag": "true", "dims": [4, 5, 6], "inner": {"lr": "0.5"}})
    assert cfg == Outer(steps=5, flag=True, dims=(4, 5, 6), inner=Inner(lr=0.5))


def test_fixed_length_tuple_pairs_each_value_with_its_own_type():
    cfg = from_dict(Outer, {"inner": {"betas": ["0.5", "7"]}})
    assert cfg.inner.betas == (0.5, 7) and isinstance(cfg.inner.betas[1], int)
    with pytest.raises(ConfigError, match=r"inner\.betas: expected 2 items"):
        from_dict(Outer, {"inner": {"betas": [1.0]}})


def test_unknown_key_names_it_and_the_accepted_keys():
    with pytest.raises(ConfigError) as exc:
        from_dict(Outer, {"inner": {"lrr": 1}})
    assert "inner.lrr" in str(exc.value) and "lr, betas" in str(exc.value)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"mode": "c"}, r"mode: 'c' is not one of the accepted values \['a', 'b'\]"),
        ({"steps": 2.5}, r"steps: expected an integer"),
        ({"steps": True}, r"steps: expected an integer"),
        ({"flag": "maybe"}, r"flag: expected true/false"),
        ({"inner": 3}, r"inner: expected a mapping"),
    ],
)
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_overrides_apply_strictly_and_round_trip():
    cfg = apply_overrides(Outer, Outer(), ["inner.lr=0.25", "mode=b", "dims=[7]", "name=hello world"])
    assert cfg.inner.lr == 0.25 and cfg.mode == "b" and cfg.dims == (7,) and cfg.name == "hello world"
    assert from_dict(Outer, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="unknown key inner.nope"):
        apply_overrides(Outer, Outer(), ["inner.nope=1"])
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        parse_override("inner.lr")


def test_config_hash_is_stable_and_sensitive():
    assert config_hash(Outer()) == config_hash(from_dict(Outer, {}))
    assert config_hash(Outer()) != config_hash(Outer(steps=4))


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_text(target, "second\n")
    assert target.read_text() == "second\n"
    assert os.listdir(target.parent) == ["out.json"]


def test_atomic_path_keeps_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]
