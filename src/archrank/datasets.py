"""Datasets the training oracle can use, all available offline.

``load_dataset(spec)`` understands:

``"mnist1d"`` (the default)
    MNIST-1D (Greydanus, 2020), generated locally with the ``mnist1d`` package's
    ``make_dataset`` (nothing is downloaded) and cached as ``.npz`` in the archrank cache
    folder: signals of length 40 in 10 classes. The default is the truth recipe's data
    (``MNIST1D_DEFAULT``; docs/benchmarks.md, "The committed truth"): 20,000 signals, of which
    the generator keeps 4,000 as the test set; the other 16,000 are split 3,200 / 12,800 into
    train / validation by a fixed permutation (``val_fraction=0.8``: a large validation split
    measures each trained network more exactly). Its name spells the settings out,
    ``mnist1d:num_samples=20000,val_fraction=0.8``, so the default and that explicit spec are
    one dataset (same name, cache file and fingerprint).
``"mnist1d:num_samples=5000,val_fraction=0.2"``
    MNIST-1D with other settings (``MNIST1D_SETTINGS``: the generator's sample count, noise,
    shear, scale, seed; ``val_fraction``); settings not given keep the default's values. This
    one is the earlier, smaller default (3,200 / 800 / 1,000 signals). The generation settings
    are part of the dataset's name and of its cache file's name (which always records the
    sample count, so the caches of two sizes are never confused).
``"digits"``
    scikit-learn's 8x8 handwritten digits (1,797 images, bundled with scikit-learn), split
    60 / 20 / 20 by a fixed permutation, scaled to [0, 1] and standardised.
a path to a ``.npz`` file
    arrays ``x_train, y_train, x_val, y_val`` and optionally ``x_test, y_test``. ``x`` is
    ``[N, L]`` (signals, one channel), ``[N, C, L]`` (signals with C channels) or
    ``[N, C, H, W]`` (images); ``y`` holds integer labels ``0..K-1``. The data are used as
    given (normalise them beforehand).

From Python, ``ArrayDataset.from_torch(train, val, test)`` (or ``load_dataset((train, val))``)
turns torch ``Dataset`` objects of ``(x, label)`` pairs into the same form.
"""

from __future__ import annotations

import hashlib
import math
import random
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archrank.errors import ArchrankError

BUILTIN = ("mnist1d", "digits")
# Generator settings a ``mnist1d:KEY=VALUE,...`` spec may change (mnist1d's get_dataset_args).
MNIST1D_SETTINGS: dict[str, type] = {
    "num_samples": int, "scale_coeff": float, "max_translation": int,
    "corr_noise_scale": float, "iid_noise_scale": float, "shear_scale": float, "seed": int,
    "val_fraction": float,
}
# Settings of the split, not of the generator: part of the dataset's name, not of its cache file.
_SPLIT_SETTINGS = ("val_fraction",)
# What plain ``mnist1d`` means: the data of the committed truth recipe (3,200 / 12,800 / 4,000
# signals). Every ``mnist1d:...`` spec starts from these; the name always spells them out.
MNIST1D_DEFAULT: dict[str, Any] = {"num_samples": 20000, "val_fraction": 0.8}
# What plain ``mnist1d`` meant before (3,200 / 800 / 1,000 signals): a name recorded then, by a
# run or a checkpoint, lacks a setting the names now always spell out (``recorded_spec``).
MNIST1D_BEFORE: dict[str, Any] = {"num_samples": 5000, "val_fraction": 0.2}
_MNIST1D_FILE = "mnist1d-v1.npz"  # bump the suffix if the generation below changes
MAX_CLASSES = 100_000  # a label beyond this is a data error, not a classifier to build
_SPLIT_SEED = 0  # fixed permutation of the validation split, independent of training seeds


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """Train / validation / (test) arrays: ``x`` float32 ``[N, C, *spatial]``, ``y`` int64."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    num_classes: int = 0

    def __post_init__(self) -> None:
        # Canonical C strides for every array: a view such as ``x[:, None, :]`` keeps an odd
        # stride on its size-1 axis, which pickling (to a worker) normalises, and torch picks
        # other kernels for the two, so a training gave other numbers inline than on workers.
        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
            arr = getattr(self, name)
            if arr is not None and arr.strides != np.empty(arr.shape, arr.dtype).strides:
                object.__setattr__(self, name, arr.copy(order="C"))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, channels first."""
        return tuple(int(s) for s in self.x_train.shape[1:])

    @property
    def input_kind(self) -> str:
        """``"1d"`` for signals, ``"2d"`` for images."""
        return "1d" if self.x_train.ndim == 3 else "2d"

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def has_test(self) -> bool:
        return self.x_test is not None

    def fingerprint(self) -> str:
        """Short digest of every array: run directories record it so data cannot change."""
        digest = hashlib.sha1()
        for arr in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test,
                    self.y_test):
            if arr is not None:
                digest.update(str(arr.shape).encode())
                digest.update(np.ascontiguousarray(arr).tobytes())
        return digest.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fingerprint": self.fingerprint(),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "sizes": [len(self.y_train), len(self.y_val),
                      0 if self.y_test is None else len(self.y_test)],
        }

    @classmethod
    def from_arrays(cls, name: str, arrays: dict[str, np.ndarray]) -> ArrayDataset:
        """Check and convert arrays (the keys of the ``.npz`` form); ``ArchrankError`` if bad."""
        return _from_arrays(name, arrays)

    @classmethod
    def from_torch(cls, train: Any, val: Any, test: Any = None,
                   name: str = "torch-dataset") -> ArrayDataset:
        """Materialise torch ``Dataset`` objects yielding ``(x, label)`` into arrays."""
        arrays: dict[str, np.ndarray] = {}
        for split, ds in (("train", train), ("val", val), ("test", test)):
            if ds is None:
                continue
            xs, ys = [], []
            for i in range(len(ds)):
                x, y = ds[i]
                if i == 0:
                    _check_channels_first(x, name, split)
                xs.append(np.asarray(x, dtype=np.float32))
                ys.append(int(y))
            if not xs:
                raise ArchrankError(f"{name}: the {split} dataset is empty")
            try:
                arrays[f"x_{split}"] = np.stack(xs)
            except ValueError:
                raise ArchrankError(
                    f"{name}: the {split} examples do not all have the same shape"
                ) from None
            arrays[f"y_{split}"] = np.asarray(ys, dtype=np.int64)
        return _from_arrays(name, arrays)


def _check_channels_first(x: Any, name: str, split: str,
                          fix: str = "transforms.ToTensor() or x.permute(2, 0, 1)") -> None:
    """Refuse an example whose layout would be misread: a PIL image, or an array whose last
    axis looks like colour channels and whose first does not (H, W, C instead of C, H, W:
    read as 32 channels of 32 x 3 images, it trained without a word). ``fix``: how to
    reorder, for the message."""
    if hasattr(x, "getbands"):
        raise ArchrankError(f"{name}: the {split} examples are PIL images; give tensors "
                            "(channels first), e.g. torchvision's transforms.ToTensor()")
    shape = np.shape(x)
    if len(shape) == 3 and shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4):
        raise ArchrankError(f"{name}: the {split} examples have shape {tuple(shape)}, which "
                            f"reads as channels last (H, W, C); give (C, H, W), e.g. with "
                            f"{fix}")


def load_dataset(spec: str | Path | ArrayDataset | tuple | list) -> ArrayDataset:
    """``"mnist1d"``, ``"digits"``, a ``.npz`` path or ``(train, val[, test])`` torch datasets."""
    if isinstance(spec, ArrayDataset):
        return spec
    if isinstance(spec, (tuple, list)):
        if len(spec) not in (2, 3):
            raise ArchrankError("give torch datasets as (train, val) or (train, val, test)")
        return ArrayDataset.from_torch(*spec)
    text = str(spec)
    if is_mnist1d(text):
        return mnist1d(**parse_mnist1d_spec(text))
    if text == "digits":
        return digits()
    path = Path(text)
    if path.suffix != ".npz" and not path.exists():
        raise ArchrankError(
            f"unknown dataset {text!r}; use {', '.join(BUILTIN)} or a path to a .npz file"
        )
    return load_npz(path)


def is_mnist1d(spec: str) -> bool:
    """Whether ``spec`` names generated MNIST-1D (``mnist1d`` or ``mnist1d:KEY=VALUE,...``)."""
    return spec == "mnist1d" or spec.startswith("mnist1d:")


def is_builtin(spec: str) -> bool:
    """Whether ``spec`` names a generated or bundled dataset (not a file)."""
    return spec in BUILTIN or is_mnist1d(spec)


def canonical_spec(spec: str) -> str:
    """The spec to record for ``spec``: a generated dataset by its full name (so a later change
    of the defaults cannot change what a recorded spec loads), a file as an absolute path (so a
    resume from another directory reads the same file)."""
    if is_mnist1d(spec):
        settings = mnist1d_settings(spec)
        if settings["num_samples"] % 10:  # a new spec (recorded ones load as generated)
            rounded = settings["num_samples"] // 10 * 10
            raise ArchrankError(f"dataset {spec!r}: num_samples must be a multiple of 10 (ten "
                                f"classes of equal size), e.g. {rounded}")
        return _mnist1d_name(settings)
    if is_builtin(spec):
        return spec
    path = Path(spec).expanduser()
    if path.suffix != ".npz" and not path.exists():  # a typo, named as typed
        raise ArchrankError(
            f"unknown dataset {spec!r}; use {', '.join(BUILTIN)} or a path to a .npz file")
    return str(path.resolve())


def recorded_spec(name: str) -> tuple[str, bool]:
    """The spec that reloads a dataset a run or a checkpoint recorded by ``name``, and whether
    the name dates from the earlier default (a generated MNIST-1D name lacking a setting: it
    meant ``MNIST1D_BEFORE``'s value, so old runs and supernets resume on their own data)."""
    if is_mnist1d(name):
        given = parse_mnist1d_spec(name)
        if not set(MNIST1D_DEFAULT) <= set(given):
            return _mnist1d_name({**MNIST1D_BEFORE, **given}), True
    return name, False


# -- MNIST-1D ----------------------------------------------------------------------------------
def parse_mnist1d_spec(text: str) -> dict[str, Any]:
    """The settings ``mnist1d:KEY=VALUE,...`` gives (``{}`` for plain ``mnist1d``); the
    defaults fill the rest (``mnist1d_settings``)."""
    _, _, rest = text.partition(":")
    settings: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        kind = MNIST1D_SETTINGS.get(key.strip())
        if not eq or kind is None:
            raise ArchrankError(
                f"dataset {text!r}: expected mnist1d:KEY=VALUE,... with KEY one of "
                f"{', '.join(MNIST1D_SETTINGS)}; got {item!r}")
        try:
            settings[key.strip()] = kind(value.strip())
        except ValueError:
            raise ArchrankError(f"dataset {text!r}: {key.strip()} must be "
                                f"{'an integer' if kind is int else 'a number'}") from None
    for key, value in settings.items():  # nan / inf / negatives: empty or failing data
        if key == "seed" and not 0 <= value < 2**32:
            raise ArchrankError(f"dataset {text!r}: seed must be between 0 and {2**32 - 1}, "
                                f"got {value}")
        if key in ("seed", "num_samples", "val_fraction"):
            continue
        if not math.isfinite(value) or value < 0 or (key == "max_translation" and value < 1):
            raise ArchrankError(f"dataset {text!r}: {key} must be a finite number at least "
                                f"{1 if key == 'max_translation' else 0}, got {value}")
    samples = settings.get("num_samples", MNIST1D_DEFAULT["num_samples"])
    if samples < 50:
        raise ArchrankError(f"dataset {text!r}: num_samples must be at least 50")
    if not 0.05 <= settings.get("val_fraction", MNIST1D_DEFAULT["val_fraction"]) <= 0.95:
        raise ArchrankError(f"dataset {text!r}: val_fraction must be between 0.05 and 0.95")
    return settings


def mnist1d_settings(text: str) -> dict[str, Any]:
    """Every setting of a ``mnist1d[:...]`` spec: the default's, updated by the spec's."""
    return {**MNIST1D_DEFAULT, **parse_mnist1d_spec(text)}


def _mnist1d_name(settings: dict[str, Any]) -> str:
    """``mnist1d:`` and the settings, sorted (the default's always spelled out)."""
    settings = {**MNIST1D_DEFAULT, **settings}
    return "mnist1d:" + ",".join(f"{k}={settings[k]}" for k in sorted(settings))


def _generate_mnist1d(settings: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Run the package's generator with its default arguments updated by ``settings``,
    leaving global RNGs untouched."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise ArchrankError(
            "the mnist1d dataset needs the mnist1d package: pip install 'archrank[train]'"
        ) from None
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        args = get_dataset_args()
        for key, value in (settings or {}).items():
            setattr(args, key, value)
        data = make_dataset(args)  # seeds numpy's global RNG itself
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {"x": np.asarray(data["x"], dtype=np.float32),
            "y": np.asarray(data["y"], dtype=np.int64),
            "x_test": np.asarray(data["x_test"], dtype=np.float32),
            "y_test": np.asarray(data["y_test"], dtype=np.int64)}


def _mnist1d_arrays(settings: dict[str, Any]) -> dict[str, np.ndarray]:
    from archrank.cache import atomic_path, cache_path

    settings = {k: v for k, v in settings.items() if k not in _SPLIT_SETTINGS}
    # the generation settings name the cache file; num_samples is always among them (the
    # caller fills in the default's), so the file of one size (e.g. mnist1d-v1.npz, the
    # 5,000-signal default before) never serves another
    tag = "-".join(f"{k}={settings[k]}" for k in sorted(settings))
    path = cache_path(_MNIST1D_FILE.replace(".npz", f"-{tag}.npz"))
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
            made = settings["num_samples"] // 10 * 10  # what the generator makes of it
            if len(arrays["y"]) + len(arrays["y_test"]) == made:
                return arrays
            warnings.warn(f"{path}: holds {len(arrays['y']) + len(arrays['y_test'])} "
                          f"signals, not {made}; generating it again", stacklevel=2)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # a damaged (empty, truncated) cache file is regenerated below
    arrays = _generate_mnist1d(settings)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    except OSError as exc:  # a read-only or full cache folder: the data is here all the same
        warnings.warn(f"{path}: cannot cache the generated MNIST-1D ({exc.strerror or exc}); "
                      "it is generated again next time (ARCHRANK_CACHE_DIR moves the cache)",
                      stacklevel=2)
    return arrays


def mnist1d(**settings: Any) -> ArrayDataset:
    """MNIST-1D, generated locally (the default's settings updated by ``settings``) and cached
    (module doc)."""
    settings = {**MNIST1D_DEFAULT, **settings}
    if settings["num_samples"] % 10:  # (a new spec refuses it: canonical_spec)
        warnings.warn(f"mnist1d num_samples={settings['num_samples']}: the generator makes "
                      f"{settings['num_samples'] // 10 * 10} signals (num_samples // 10 of "
                      "each of ten classes)", stacklevel=2)
    a = _mnist1d_arrays(settings)
    perm = np.random.default_rng(_SPLIT_SEED).permutation(len(a["y"]))
    n_val = round(len(perm) * settings["val_fraction"])
    val, train = perm[:n_val], perm[n_val:]
    x, x_test = a["x"][:, None, :], a["x_test"][:, None, :]
    return ArrayDataset(_mnist1d_name(settings), x[train], a["y"][train], x[val],
                        a["y"][val], x_test, a["y_test"], num_classes=10)


# -- scikit-learn digits -----------------------------------------------------------------------
def digits() -> ArrayDataset:
    """scikit-learn's 8x8 digits (see the module docstring)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ArchrankError(
            "the digits dataset needs scikit-learn: pip install 'archrank[trees]'"
        ) from None
    data = load_digits()
    x = (np.asarray(data.images, dtype=np.float32) / 16.0)[:, None, :, :]
    y = np.asarray(data.target, dtype=np.int64)
    perm = np.random.default_rng(_SPLIT_SEED).permutation(len(y))
    n_val = n_test = len(y) // 5
    val, test, train = perm[:n_val], perm[n_val : n_val + n_test], perm[n_val + n_test :]
    mean, std = float(x[train].mean()), float(x[train].std())
    x = (x - mean) / std
    return ArrayDataset("digits", x[train], y[train], x[val], y[val], x[test], y[test],
                        num_classes=10)


# -- user arrays -------------------------------------------------------------------------------
_REQUIRED = ("x_train", "y_train", "x_val", "y_val")
_OPTIONAL = ("x_test", "y_test")


def load_npz(path: str | Path) -> ArrayDataset:
    """A user dataset from ``.npz`` (see the module docstring); one-line errors if bad."""
    path = Path(path)
    if not path.is_file():
        raise ArchrankError(f"{path}: no such dataset file")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if not magic.startswith((b"PK", b"\x93NUMPY")):  # a CSV, a pickle...: no archive at all
        raise ArchrankError(f"{path}: not an .npz archive (expected x_train, y_train, x_val, "
                            "y_val arrays saved with numpy.savez)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ArchrankError(f"{path}: not a readable .npz file ({exc})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ArchrankError(
            f"{path}: holds a single array, not an .npz archive of x_train, y_train, x_val, "
            "y_val"
        )
    with loaded as f:
        missing = [k for k in _REQUIRED if k not in f.files]
        if missing:
            raise ArchrankError(
                f"{path}: missing array {missing[0]!r} (an .npz dataset needs "
                f"{', '.join(_REQUIRED)}; optional {', '.join(_OPTIONAL)})"
            )
        try:
            arrays = {k: f[k] for k in (*_REQUIRED, *_OPTIONAL) if k in f.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ArchrankError(f"{path}: not a readable .npz file ({exc})") from None
    return _from_arrays(str(path), arrays)


def _from_arrays(name: str, arrays: dict[str, np.ndarray]) -> ArrayDataset:
    if ("x_test" in arrays) != ("y_test" in arrays):
        have, lack = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise ArchrankError(f"{name}: has {have} but not {lack} (give both or neither)")
    for key in _REQUIRED:
        if key not in arrays:
            raise ArchrankError(f"{name}: missing array {key!r}")
    xs: dict[str, np.ndarray] = {}
    ys: dict[str, np.ndarray] = {}
    feature_shape: tuple[int, ...] | None = None
    for split in ("train", "val", "test"):
        if f"x_{split}" not in arrays:
            continue
        x, y = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"])
        if x.dtype.kind not in "fiub":
            raise ArchrankError(f"{name}: x_{split} has dtype {x.dtype}; expected numbers")
        if x.ndim not in (2, 3, 4):
            raise ArchrankError(
                f"{name}: x_{split} has shape {x.shape}; expected [N, L], [N, C, L] or "
                "[N, C, H, W]"
            )
        if x.ndim == 2:
            x = x[:, None, :]
        if x.ndim == 4 and len(x):
            _check_channels_first(x[0], name, f"x_{split}",
                                  fix=f"x_{split}.transpose(0, 3, 1, 2)")
        if len(x) == 0:
            raise ArchrankError(f"{name}: x_{split} is empty")
        if 0 in x.shape[1:]:
            raise ArchrankError(f"{name}: x_{split} has shape {tuple(x.shape)}: an example "
                                "with an empty axis")
        if feature_shape is None:
            feature_shape = x.shape[1:]
        elif x.shape[1:] != feature_shape:
            raise ArchrankError(
                f"{name}: x_{split} examples have shape {tuple(arrays[f'x_{split}'].shape[1:])} "
                f"but x_train examples have {tuple(arrays['x_train'].shape[1:])}"
            )
        if y.shape != (len(x),):
            raise ArchrankError(
                f"{name}: y_{split} has shape {y.shape}; expected ({len(x)},), one integer "
                f"label per row of x_{split}"
            )
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise ArchrankError(f"{name}: y_{split} must hold integer class labels")
        elif y.dtype.kind not in "iub":
            raise ArchrankError(f"{name}: y_{split} has dtype {y.dtype}; expected integers")
        x = x.astype(np.float32)
        if not np.all(np.isfinite(x)):
            raise ArchrankError(f"{name}: x_{split} contains NaN or infinity")
        if y.min() < 0:  # before the cast, which wraps huge values
            raise ArchrankError(f"{name}: y_{split} contains the negative label {y.min()}")
        if y.max() > MAX_CLASSES:
            raise ArchrankError(f"{name}: y_{split} contains label {y.max()}; labels must be "
                                f"0..K-1 with K at most {MAX_CLASSES:,} classes")
        y = y.astype(np.int64)
        xs[split], ys[split] = x, y
    num_classes = int(ys["train"].max()) + 1
    if num_classes > MAX_CLASSES:
        raise ArchrankError(
            f"{name}: y_train contains label {num_classes - 1}; labels must be 0..K-1 with "
            f"K at most {MAX_CLASSES:,} classes")
    present = np.unique(ys["train"])
    if len(present) < 2:  # labels all 1 made K=2 with one class never seen
        raise ArchrankError(f"{name}: y_train has a single class; need at least 2")
    if len(present) < num_classes:  # {3, 7} read as 8 classes, six never seen
        missing = sorted(set(range(num_classes)) - set(present.tolist()))
        raise ArchrankError(f"{name}: y_train lacks the labels {missing[:5]}"
                            f"{'...' if len(missing) > 5 else ''}; labels must be 0..K-1, "
                            "each present in y_train")
    for split in ("val", "test"):
        if split in ys and int(ys[split].max()) >= num_classes:
            raise ArchrankError(
                f"{name}: y_{split} contains label {int(ys[split].max())}, but y_train's "
                f"labels are 0..{num_classes - 1}"
            )
    return ArrayDataset(name, xs["train"], ys["train"], xs["val"], ys["val"],
                        xs.get("test"), ys.get("test"), num_classes=num_classes)
