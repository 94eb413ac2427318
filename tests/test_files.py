"""mimic_tf.files: whole or not at all, normal permissions, nothing left behind."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from mimic_tf.files import atomic_path, atomic_write_bytes, atomic_write_text


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_text_and_bytes_are_written_with_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        text = atomic_write_text(tmp_path / "deep" / "a.json", '{"a": 1}\n')
        data = atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    finally:
        os.umask(umask)
    assert text.read_text() == '{"a": 1}\n' and data.read_bytes() == b"\x00\x01"
    assert mode(text) == mode(data) == 0o644
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.json", "b.bin", "deep"]


def test_a_failed_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "logits.npy", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        np.save(temporary, np.zeros(3))
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["logits.npy"]


def test_path_writers_keep_their_suffix(tmp_path):
    with atomic_path(tmp_path / "arrays.npz") as temporary:
        assert temporary.suffix == ".npz" and temporary.parent == tmp_path
        np.savez(temporary, x=np.arange(4))
    assert np.load(tmp_path / "arrays.npz")["x"].tolist() == [0, 1, 2, 3]
