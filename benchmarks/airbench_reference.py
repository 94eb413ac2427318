"""Experiment: is the gap between the Keras port of airbench94 and airbench94's published 94%
the port's or the data's? airbench94's own PyTorch code, trained on the same data.

The port's 64/256/256 members reach 89.9% test (flip averaging) on the shared JPEG copy,
trained on the 40k training split; airbench94 reports 94.0% (93.7% with flip averaging alone)
on the PNG images with all 50k for training. This trains airbench94 with its own code (the
PyPI package `airbench==0.1.8`, `airbench.train94`: its net, optimizer, schedule, lookahead,
data loader and evaluation, unchanged) on the port's exact training split and test images,
for the port's budget in examples (`--epochs 12` of 40k, about airbench94's 9.9 of 50k).
Its test accuracy on the JPEG copy, against the port's, says which side the gap is on.

Two steps, in two environments (the package needs PyTorch, which the project does not):

    python benchmarks/airbench_reference.py export --out DIR          # project venv: the split
    pip install torch torchvision airbench==0.1.8                     # another venv
    python benchmarks/airbench_reference.py train --out DIR           # that venv

`export` writes the config's training split and test split to `DIR/split.npz`; `train` puts
them in the package's own format (`DIR/cifar10/{train,test}.pt`) and runs `airbench.train94`
on them on the CPU, in float32 (the package runs float16 on a GPU; on a
CPU float16 convolutions are emulated and slow), which takes three small shims, and only
these: the net is built without `.half().cuda()`, the loader maps to the CPU and keeps the
images in float32, and CUDA's event timers are replaced by wall-clock ones. It prints
airbench's per-epoch table (test accuracy without test-time augmentation after each epoch,
which is the port's `val_accuracy` curve on another 10k JPEG images), then one JSON object
with the test accuracy alone, with flip averaging and with airbench's multi-crop averaging.

Reference run: results/cpu-replication-v2/lost-runs/campaign-log.md ("airbench94's own code on
the JPEG copy").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # mimic_tf, in any venv
from mimic_tf.runtime import cpu_name  # noqa: E402  (no TensorFlow: runs beside PyTorch)


def export(config_name: str, out: Path) -> None:
    """The config's training and test splits, as they reach the port's members, in
    `out/split.npz` (uint8 NHWC images, int64 labels)."""
    import numpy as np

    from mimic_tf import data
    from mimic_tf.config import load_config

    config = load_config(config_name)
    splits = data.load_splits(config.data)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "split.npz", train_images=splits.train_images,
             train_labels=splits.train_labels, test_images=splits.test_images,
             test_labels=splits.test_labels, classes=np.array(splits.class_names))
    print(f"{out / 'split.npz'}: {len(splits.train_images)} training and "
          f"{len(splits.test_images)} test images of {config_name} from {splits.source}")


def package_files(out: Path) -> None:
    """`out/split.npz` as the package's `cifar10/train.pt` and `cifar10/test.pt`."""
    import numpy as np
    import torch

    folder = out / "cifar10"
    folder.mkdir(exist_ok=True)
    with np.load(out / "split.npz") as split:
        for name in ("train", "test"):
            torch.save({"images": torch.from_numpy(split[f"{name}_images"]),
                        "labels": torch.from_numpy(split[f"{name}_labels"].astype("int64")),
                        "classes": [str(c) for c in split["classes"]]},
                       folder / f"{name}.pt")


class WallClockEvent:
    """Stands for `torch.cuda.Event(enable_timing=True)` on a CPU."""

    def __init__(self, enable_timing: bool = True) -> None:
        self.time = 0.0

    def record(self) -> None:
        self.time = time.perf_counter()

    def elapsed_time(self, end: WallClockEvent) -> float:
        return 1e3 * (end.time - self.time)  # milliseconds, as CUDA's


@contextlib.contextmanager
def on_the_cpu_in_float32():
    """The three shims: no `.half()` or `.cuda()` on the net, loaders on the CPU in float32,
    wall-clock timers for CUDA's events."""
    import torch
    from airbench import utils

    loader_init = utils.CifarLoader.__init__

    def cpu_loader_init(self, path, train=True, batch_size=500, aug=None, drop_last=None,
                        shuffle=None, altflip=False, gpu=0):
        loader_init(self, path, train, batch_size, aug, drop_last, shuffle, altflip, gpu="cpu")
        self.images = self.images.float()

    saved = (torch.nn.Module.half, torch.nn.Module.cuda, torch.cuda.Event,
             torch.cuda.synchronize, utils.CifarLoader.__init__)
    torch.nn.Module.half = lambda module: module
    torch.nn.Module.cuda = lambda module, device=None: module
    torch.cuda.Event = WallClockEvent
    torch.cuda.synchronize = lambda device=None: None
    utils.CifarLoader.__init__ = cpu_loader_init
    try:
        yield
    finally:
        (torch.nn.Module.half, torch.nn.Module.cuda, torch.cuda.Event,
         torch.cuda.synchronize, utils.CifarLoader.__init__) = saved


def train(out: Path, epochs: float, seed: int, threads: int) -> dict:
    import airbench
    import torch
    from airbench import utils
    from airbench.lib_airbench94 import hyp

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    package_files(out)
    os.chdir(out)  # train94 reads the test images from ./cifar10/test.pt
    with on_the_cpu_in_float32():
        loader = utils.CifarLoader("cifar10", train=True, batch_size=hyp["opt"]["batch_size"],
                                   aug=hyp["aug"], altflip=True)
        started = time.perf_counter()
        model = airbench.train94(loader, epochs=epochs, tta_level=0)  # all three below
        seconds = time.perf_counter() - started
        test = utils.CifarLoader("cifar10", train=False, batch_size=2000)
        accuracy = {name: round(utils.evaluate(model, test, tta_level=level), 4)
                    for level, name in enumerate(("alone", "flip", "multi_crop"))}
    examples = len(loader) * loader.batch_size * epochs
    return {
        "code": f"airbench {airbench_version()} train94, PyTorch {torch.__version__}, "
                "float32 on the CPU",
        "train_images": len(loader.images),
        "test_images": len(test.images),
        "epochs": epochs,
        "batch_size": loader.batch_size,
        "seed": seed,
        "threads": threads,
        "test_accuracy": accuracy,
        "train_seconds_with_evaluation": round(seconds, 1),
        "images_per_second": round(examples / seconds),
        "machine": cpu_name(),
    }


def airbench_version() -> str:
    from importlib.metadata import version

    return version("airbench")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("export", "train"))
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for the exported split and the run")
    parser.add_argument("--config", default="cpu-replication-v2",
                        help="export: the config whose data splits to export")
    parser.add_argument("--epochs", type=float, default=12.0,
                        help="train: epochs of the training split (12 of 40k: the port's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    args.out = args.out.expanduser().resolve()
    if args.step == "export":
        export(args.config, args.out)
        return 0
    if not (args.out / "split.npz").exists():
        print(f"{args.out / 'split.npz'} is missing: run the export step first "
              f"(python benchmarks/airbench_reference.py export --out {args.out})",
              file=sys.stderr)
        return 2
    print(json.dumps(train(args.out, args.epochs, args.seed, args.threads), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
