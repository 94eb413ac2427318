"""A published teacher: each member's float16 logits in a small file, distilled from without it.

A trained member is 18 MB of weights that no repository should hold, but what the students
learn from is much smaller: its logits on the K augmented views of the training images and on
the validation and test images. A member published here is those logits, compressed, beside a
manifest that says exactly what they are the logits of, so a later run on any machine can
check and average them instead of training the member again (as Keras users load
`weights="imagenet"`):

    <folder>/member_00.npz     float16 logits, np.savez_compressed:
                                 transfer            [K, N_train, classes] view k of image i,
                                                     flip-averaged if the manifest says so
                                 validation, test    [N, classes] the unaugmented images
                                 validation_flip, test_flip   the same, averaged with the mirror
                                 view_pixel_sums     uint16 [K, N_train] each view's pixel
                                                     sum, modulo 2**16
    <folder>/member_00.json    the manifest: format, member index, seed and recipe, the sha256
                               of the weights and of the .npz, the digest of the decoded images
                               and labels of each split, the class names, the augmentation and
                               its digest, K, the views' own digest, the commit and CPU that
                               made it, precision, epochs, wall time and accuracies

The manifest is written last (write, then rename), so a file without one is unfinished. A
reader checks the .npz against its digest and the manifest against the run's config and data
before using a byte, and refuses a mismatch with a message naming the file, the mismatch and
the ways on (`PublishedTeacherError`). The regenerated views are checked too, but only
reported: XLA's float code can round a few pixels differently on another CPU kind, and the
logits stay the right targets, so a differing views digest is logged with how many views
differ and by how much (`view_pixel_sums`), never refused.

    write_member(config, splits, member, index, folder, record)   # one member, published
    teacher = read_published_teacher(folder, config, splits)       # checked, averaged
    teacher.transfer_logits, teacher.evaluation_logits, teacher.summary
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mimic_tf import runtime

FORMAT = "mimic-tf teacher member"
FORMAT_VERSION = 1
LOGITS_SUFFIX = ".npz"
MANIFEST_SUFFIX = ".json"
EVALUATION_SPLITS = ("validation", "test")
# Teacher settings a member does not depend on: the ensemble's size (members are added one
# by one), the runtime's choice of XLA, and where a published teacher is read from.
NOT_RECIPE = ("members", "jit_compile", "published", "member_epochs")


class PublishedTeacherError(ValueError):
    """A published member that cannot be used here: missing, damaged, or another teacher's."""


def member_stem(member_index: int) -> str:
    """`member_00` for the first member: the name of its two files, without suffix."""
    return f"member_{member_index:02d}"


def member_paths(folder: str | Path, member_index: int) -> tuple[Path, Path]:
    """The `.npz` and the manifest of member `member_index` in `folder`."""
    stem = Path(folder) / member_stem(member_index)
    return stem.with_suffix(LOGITS_SUFFIX), stem.with_suffix(MANIFEST_SUFFIX)


def published_members(folder: str | Path) -> list[int]:
    """Indices of the members `folder` holds a manifest of (finished ones), sorted."""
    indices = []
    for path in Path(folder).glob(f"member_*{MANIFEST_SUFFIX}"):
        suffix = path.stem.removeprefix("member_")
        if suffix.isdigit():
            indices.append(int(suffix))
    return sorted(indices)


# --- What a member's logits depend on -------------------------------------------------------

def split_digests(splits: Any) -> dict[str, str]:
    """sha256 of each split's decoded images and labels (dtype, shape and bytes), by name."""
    digests = {}
    for split in ("train", "validation", "test"):
        digest = hashlib.sha256()
        for kind in ("images", "labels"):
            array = np.ascontiguousarray(getattr(splits, f"{split}_{kind}"))
            digest.update(f"{kind}:{array.dtype.str}:{array.shape};".encode())
            digest.update(memoryview(array).cast("B"))
        digests[split] = digest.hexdigest()
    return digests


def augment_record(config: Any) -> dict[str, Any]:
    """The augmentation settings that make the views, and their digest."""
    settings = dataclasses.asdict(config.augment)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    return {"settings": settings, "sha256": digest}


def member_recipe(config: Any, member_index: int) -> dict[str, Any]:
    """The teacher settings member `member_index` of `config` is trained by: its `teacher`
    section with the member's own epochs (`teacher.member_epochs`), but the keys no member
    depends on (`NOT_RECIPE`)."""
    teacher = dataclasses.asdict(config.teacher.for_member(member_index))
    plain = json.loads(json.dumps(teacher))  # tuples as lists, as the manifest holds them
    return {key: value for key, value in plain.items() if key not in NOT_RECIPE}


def views_digest(views: np.ndarray) -> str:
    """sha256 of the regenerated views, uint8 `[K, N, H, W, C]`."""
    return hashlib.sha256(memoryview(np.ascontiguousarray(views)).cast("B")).hexdigest()


def view_pixel_sums(views: np.ndarray) -> np.ndarray:
    """uint16 `[K, N]`: each view of each image summed over its pixels, modulo 2**16: where
    two machines' views differ, and by how many pixel levels at least (a difference under
    2**15 levels is read back exactly), in a quarter of a member file's megabyte."""
    sums = views.reshape(*views.shape[:2], -1).sum(axis=-1, dtype=np.int64)
    return (sums % 2**16).astype(np.uint16)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """`arrays` as a compressed `.npz` (what `np.savez_compressed` writes, `np.load` reads),
    with every entry dated 1980-01-01: the same arrays give the same bytes, so the same
    member published twice has the same digest (`np.savez_compressed` stamps the time)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            entry = io.BytesIO()
            np.lib.format.write_array(entry, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entry.getvalue(), compresslevel=9)
    return buffer.getvalue()


# --- Writing one member ---------------------------------------------------------------------

def write_member(
    config: Any,
    splits: Any,
    member: Any,
    member_index: int,
    folder: str | Path,
    record: dict[str, Any],
    views: np.ndarray | None = None,
    verbose: int = 1,
) -> Path:
    """Publish member `member_index` of `config` into `folder`; returns its manifest's path.

    `member` is the trained Keras model, `record` its training record (`teachers.train_member`:
    epochs, seconds, runtime); `views` the K augmented views of the training images when they
    were made already (`data.augmented_views`). The `.npz` is written first and the manifest,
    which names its digest, last: both whole or not at all (`mimic_tf.files`).
    """
    from mimic_tf import data
    from mimic_tf.files import atomic_path, atomic_write_text
    from mimic_tf.teachers import (
        accuracy,
        member_logits,
        plain_and_flip_averaged_logits,
        weights_fingerprint,
    )
    from mimic_tf.transfer import flip_averaged

    folder = Path(folder)
    count = config.transfer.views
    started = time.perf_counter()
    if views is None:
        views = data.augmented_views(splits.train_images, config.augment, count)
    flip = flip_averaged(config)
    arrays: dict[str, np.ndarray] = {"view_pixel_sums": view_pixel_sums(views)}
    transfer = np.empty((count, len(splits.train_labels), splits.spec.num_classes), np.float16)
    for view in range(count):
        transfer[view] = member_logits(member, views[view], flip)
        if verbose:
            rate = (view + 1) * len(views[view]) / (time.perf_counter() - started)
            print(f"{member_stem(member_index)}: transfer view {view + 1}/{count} "
                  f"({rate:,.0f} images/s)", flush=True)
    arrays["transfer"] = transfer
    accuracies = {}
    for split in EVALUATION_SPLITS:
        labels = getattr(splits, f"{split}_labels")
        images = getattr(splits, f"{split}_images")
        plain, mirrored = plain_and_flip_averaged_logits(member, images)
        arrays[split] = plain.astype(np.float16)
        arrays[f"{split}_flip"] = mirrored.astype(np.float16)
        # as the ensemble evaluates (its own flip test-time augmentation or not), and both
        accuracies[f"{split}_accuracy"] = accuracy(
            mirrored if config.teacher.flip_average else plain, labels)
        accuracies[f"{split}_accuracy_without_flip"] = accuracy(plain, labels)
        accuracies[f"{split}_accuracy_with_flip"] = accuracy(mirrored, labels)
    logits_seconds = time.perf_counter() - started

    logits_path, manifest_path = member_paths(folder, member_index)
    manifest_path.unlink(missing_ok=True)  # a member half rewritten never looks finished
    with atomic_path(logits_path) as temporary:
        temporary.write_bytes(npz_bytes(arrays))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "member": member_index,
        "seed": config.seed,
        "recipe": member_recipe(config, member_index),
        "params": int(member.count_params()),
        "weights_sha256": weights_fingerprint(member),
        "logits_file": logits_path.name,
        "logits_sha256": file_sha256(logits_path),
        "logits_bytes": logits_path.stat().st_size,
        "data": {"source": splits.source, "splits_sha256": split_digests(splits),
                 "class_names": list(splits.spec.class_names),
                 "image_shape": list(splits.spec.image_shape),
                 "sizes": {split: int(len(getattr(splits, f"{split}_labels")))
                           for split in ("train", "validation", "test")}},
        "augment": augment_record(config),
        "views": count,
        "views_sha256": views_digest(views),
        "transfer_flip_average": flip,
        # the ensemble's own test-time augmentation: its validation and test logits
        "flip_average": bool(config.teacher.flip_average),
        "made_by": {"commit": runtime.source_commit(), **runtime.describe(),
                    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "precision": record.get("runtime", {}).get("precision", "float32"),
        "epochs": record.get("epochs"),
        "train_seconds": record.get("train_seconds"),
        "logits_seconds": round(logits_seconds, 1),
        **{key: round(value, 6) for key, value in accuracies.items()},
        "training_record": record,
    }
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    if verbose:
        print(f"{member_stem(member_index)}: published {logits_path} "
              f"({manifest['logits_bytes'] / 1e6:.1f} MB), test accuracy "
              f"{accuracies['test_accuracy']:.4f}", flush=True)
    return manifest_path


# --- Reading and checking -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PublishedTeacher:
    """The members of a published teacher, checked against a run, and their mean logits."""

    folder: Path
    manifests: tuple[dict[str, Any], ...]  # one a member, in member order
    transfer_logits: np.ndarray  # float32 [K, N_train, classes]: the members' mean
    evaluation_logits: dict[str, np.ndarray]  # float32, "validation" and "test"
    view_pixel_sums: np.ndarray  # uint16 [K, N_train], as the first member published them

    @property
    def weights_sha256(self) -> str:
        """One digest for the ensemble: sha256 of its members' weight digests, in order."""
        joined = ",".join(m["weights_sha256"] for m in self.manifests)
        return hashlib.sha256(joined.encode()).hexdigest()

    @property
    def flip_average(self) -> bool:
        return bool(self.manifests[0].get("flip_average", False))

    def summary(self, splits: Any) -> dict[str, Any]:
        """A `teacher.json` for the run that distils from it: each member's record (from its
        manifest), the ensemble's accuracies on this run's images, and where it was loaded
        from, made by which commits on which CPUs."""
        from mimic_tf.teachers import accuracy

        members = []
        for manifest in self.manifests:
            record = dict(manifest.get("training_record", {}))
            record.update({key: manifest.get(key) for key in (
                "member", "params", "weights_sha256", "epochs", "train_seconds", "precision",
                "validation_accuracy", "test_accuracy", "validation_accuracy_without_flip",
                "test_accuracy_without_flip")})
            record["published"] = {"commit": manifest["made_by"].get("commit"),
                                   "cpu": manifest["made_by"].get("cpu"),
                                   "date": manifest["made_by"].get("date")}
            members.append(record)
        return {
            "family": self.manifests[0]["recipe"].get("family"),
            "flip_average": self.flip_average,
            "members": members,
            "source": self.manifests[0]["data"]["source"],
            "loaded_from": {
                "folder": str(self.folder.resolve()),
                "commits": sorted({m["made_by"].get("commit", "unknown") for m in self.manifests}),
                "cpus": sorted({m["made_by"].get("cpu", "unknown") for m in self.manifests}),
                "views": int(self.transfer_logits.shape[0]),
            },
            "ensemble": {
                "members": len(self.manifests),
                "params": int(sum(m.get("params", 0) for m in self.manifests)),
                **{f"{split}_accuracy": accuracy(self.evaluation_logits[split],
                                                  getattr(splits, f"{split}_labels"))
                   for split in EVALUATION_SPLITS},
                "weights_sha256": self.weights_sha256,
            },
        }


def read_manifest(folder: str | Path, member_index: int) -> dict[str, Any]:
    """Member `member_index`'s manifest in `folder`, checked to be one (not its contents)."""
    logits_path, manifest_path = member_paths(folder, member_index)
    if not manifest_path.is_file():
        raise PublishedTeacherError(
            f"{manifest_path}: no such published member (a member is published when its "
            "manifest is written, after its logits)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PublishedTeacherError(f"{manifest_path}: not a readable manifest ({error}); "
                                    "publish the member again") from None
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found != FORMAT:
        raise PublishedTeacherError(f"{manifest_path}: not a mimic-tf teacher member "
                                    f"(format {found!r}, expected {FORMAT!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise PublishedTeacherError(
            f"{manifest_path}: format version {manifest.get('format_version')!r}, this "
            f"mimic-tf reads {FORMAT_VERSION}; publish the member again with this version")
    return manifest


def _load_logits(folder: Path, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    """The member's arrays, after its file matched the manifest's sha256."""
    path = folder / manifest["logits_file"]
    if not path.is_file():
        raise PublishedTeacherError(f"{path}: missing (its manifest names it); publish the "
                                    "member again")
    if file_sha256(path) != manifest["logits_sha256"]:
        raise PublishedTeacherError(
            f"{path}: its sha256 is not the manifest's ({manifest['logits_sha256'][:12]}...): "
            "the file is truncated or altered; restore it (git checkout) or publish the "
            "member again")
    try:
        with np.load(path) as arrays:
            return {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError) as error:  # a file that matches its digest but is no .npz
        raise PublishedTeacherError(f"{path}: not readable as logits ({error})") from None


def mismatches(manifest: dict[str, Any], config: Any, splits: Any,
               check_recipe: bool = False) -> list[str]:
    """What differs between a published member and a run of `config` on `splits`: each entry
    names the thing, the run's value and the member's. Empty: the member can be used."""
    from mimic_tf.transfer import flip_averaged

    found = []
    published_data = manifest.get("data", {})
    names = list(splits.spec.class_names)
    if published_data.get("class_names") != names:
        found.append(f"classes: this run has {len(names)} ({', '.join(names)}), the member "
                     f"was made on {len(published_data.get('class_names', []))} "
                     f"({', '.join(published_data.get('class_names', []))})")
    else:
        ours = split_digests(splits)
        theirs = published_data.get("splits_sha256", {})
        differing = [split for split in ours if theirs.get(split) != ours[split]]
        if differing:
            found.append(
                f"data: the decoded {', '.join(differing)} images or labels differ (this run "
                f"reads {splits.source}; the member was made from "
                f"{published_data.get('source')})")
    published_augment = manifest.get("augment", {})
    if published_augment.get("sha256") != augment_record(config)["sha256"]:
        changed = sorted(key for key, value in dataclasses.asdict(config.augment).items()
                         if published_augment.get("settings", {}).get(key) != value)
        found.append(f"augmentation: {', '.join(f'augment.{key}' for key in changed)} "
                     "differ from the member's")
    if config.transfer.views > manifest.get("views", 0):
        found.append(f"views: this run asks for {config.transfer.views} (transfer.views), "
                     f"the member has {manifest.get('views')}")
    if (config.transfer.flip_average != "auto"
            and flip_averaged(config) != manifest.get("transfer_flip_average")):
        found.append(f"transfer.flip_average: {config.transfer.flip_average} here, the "
                     f"member's views are {'' if manifest.get('transfer_flip_average') else 'not '}"
                     "flip-averaged")
    if check_recipe:
        ours = member_recipe(config, int(manifest.get("member", 0)))
        theirs = manifest.get("recipe", {})
        if manifest.get("seed") != config.seed:
            found.append(f"seed: {config.seed} here, {manifest.get('seed')} for the member")
        if theirs != ours:
            changed = _changed_keys(ours, theirs)
            found.append(f"recipe: {', '.join(f'teacher.{key}' for key in changed)} differ "
                         "from the member's")
    return found


def _changed_keys(ours: dict[str, Any], theirs: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dictionaries."""
    changed = []
    for key in sorted(set(ours) | set(theirs)):
        mine, other = ours.get(key), theirs.get(key)
        if isinstance(mine, dict) and isinstance(other, dict):
            changed += _changed_keys(mine, other, f"{prefix}{key}.")
        elif mine != other:
            changed.append(f"{prefix}{key}")
    return changed


def read_published_teacher(
    folder: str | Path,
    config: Any,
    splits: Any,
    members: int | None = None,
    check_recipe: bool = False,
) -> PublishedTeacher:
    """The published teacher in `folder`, checked against `config` and `splits`.

    `members`: how many the ensemble averages (members 0..members-1, each required); None:
    every member `folder` holds. `check_recipe`: refuse members trained under another seed or
    teacher recipe than `config`'s (a campaign's own members); a run that only distils from
    the teacher leaves it off. Raises `PublishedTeacherError` naming the file and the
    mismatch; uses only the first `transfer.views` views.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PublishedTeacherError(f"{folder}: no such folder of published teacher members")
    indices = list(range(members)) if members is not None else published_members(folder)
    if not indices:
        raise PublishedTeacherError(f"{folder}: holds no published member (member_XX.json)")
    count = config.transfer.views
    manifests, transfer, evaluation = [], None, {}
    pixel_sums = None
    for index in indices:
        manifest = read_manifest(folder, index)
        problems = mismatches(manifest, config, splits, check_recipe=check_recipe)
        if problems:
            raise PublishedTeacherError(
                f"{member_paths(folder, index)[1]} does not match this run: "
                + "; ".join(problems))
        arrays = _load_logits(folder, manifest)
        logits = arrays["transfer"][:count].astype(np.float32)
        transfer = logits if transfer is None else transfer + logits
        flip = bool(manifest.get("flip_average", False))
        for split in EVALUATION_SPLITS:
            split_logits = arrays[f"{split}_flip" if flip else split].astype(np.float32)
            evaluation[split] = evaluation.get(split, 0.0) + split_logits
        if pixel_sums is None:
            pixel_sums = arrays["view_pixel_sums"][:count]
        manifests.append(manifest)
    return PublishedTeacher(
        folder=folder, manifests=tuple(manifests),
        transfer_logits=transfer / len(manifests),
        evaluation_logits={split: logits / len(manifests) for split, logits in evaluation.items()},
        view_pixel_sums=pixel_sums,
    )


def compare_views(teacher: PublishedTeacher, views: np.ndarray) -> str | None:
    """None when the regenerated `views` are the published ones, else a sentence for the log:
    how many views differ and by how many pixel levels at least (their pixel sums)."""
    published = teacher.manifests[0]
    if len(views) == published["views"] and views_digest(views) == published["views_sha256"]:
        return None
    ours = view_pixel_sums(views)
    differing = ours != teacher.view_pixel_sums
    if len(views) < published["views"] and not differing.any():
        return None  # fewer views than published: their sums are all the check there is
    # the signed difference modulo 2**16: exact for any difference under 2**15 levels
    difference = (ours.astype(np.int64) - teacher.view_pixel_sums + 2**15) % 2**16 - 2**15
    levels = int(np.abs(difference).sum())
    return (f"the regenerated views are not bit for bit the published ones (made on "
            f"{published['made_by'].get('cpu')}): {int(differing.sum())} of {differing.size} "
            f"differ in their pixel sums, by {levels} pixel levels in all (at least that many "
            "pixel values differ by one); the published logits are used as they are")


def resolve_folder(path: str | Path) -> Path:
    """Where `teacher.published` points: as given when absolute or found from the working
    directory, else relative to the project's root (where `configs/` and `results/` are)."""
    folder = Path(path).expanduser()
    if folder.is_absolute() or folder.exists():
        return folder
    beside_project = Path(__file__).resolve().parent.parent / folder
    return beside_project if beside_project.exists() else folder
