"""Supernet checkpoints: one torch file that says what it is and refuses to be misused.

A checkpoint records the network setting (space, width, depth, input kind and shape, classes),
the training recipe, the sampler, the seed, the number of processes that trained it, the
dataset (how to load it and a fingerprint of its arrays), the progress (epochs and steps done,
loss history, seconds) and the weights and optimizer state. It is written atomically (a kill
leaves the previous one) and read with ``weights_only`` (no code is unpickled). Reading a
truncated or foreign file, or one made for another space/width/depth/dataset than the caller
expects, is a one-line ``ArchrankError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from archrank.cache import atomic_path
from archrank.datasets import ArrayDataset, load_dataset, recorded_spec
from archrank.errors import ArchrankError
from archrank.oneshot.supernet import NetworkSetting, Supernet, build_supernet
from archrank.oracles.training import TrainRecipe

FORMAT = "archrank-supernet"
VERSION = 1


@dataclass
class Checkpoint:
    """The content of a supernet checkpoint (see the module docstring)."""

    setting: NetworkSetting
    recipe: TrainRecipe
    sampler: str
    seed: int
    dataset_spec: str
    data: dict[str, Any]
    epoch: int = 0
    step: int = 0
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    model: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    sampler_state: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    # processes that trained it (torchrun): each computes BN statistics on its own share of a
    # batch, so the count is part of the run; a resume must keep it to end where one run would
    # (None: written before archrank recorded the count)
    world: int | None = 1

    @property
    def finished(self) -> bool:
        return self.epoch >= self.recipe.epochs

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "format": FORMAT, "version": VERSION, "setting": self.setting.to_dict(),
            "recipe": asdict(self.recipe), "sampler": self.sampler, "seed": self.seed,
            "dataset_spec": self.dataset_spec, "data": self.data, "epoch": self.epoch,
            "step": self.step, "history": list(self.history), "seconds": self.seconds,
            "model": self.model, "optimizer": self.optimizer,
            "sampler_state": self.sampler_state, "world": self.world,
        }

    def save(self, path: str | Path) -> None:
        """Write atomically: the file is the old checkpoint or the complete new one."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                torch.save(self.to_dict(), tmp)
        except OSError as exc:
            raise ArchrankError(f"{path}: cannot write the checkpoint ({exc.strerror})") from None

    def supernet(self) -> Supernet:
        """The supernet with the checkpoint's weights (on the CPU)."""
        net = build_supernet(self.setting)
        if self.model:
            try:
                net.load_state_dict(self.model)
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()[0]
                raise ArchrankError(f"{self.path}: weights do not fit the supernet "
                                    f"({first})") from None
        return net

    def dataset(self, dataset: Any = None) -> ArrayDataset:
        """The training data (``dataset`` if given, else reloaded from the recorded spec),
        checked against the recorded fingerprint."""
        if dataset is None:  # a supernet trained before the MNIST-1D default changed: its data
            old, legacy = recorded_spec(str(self.data.get("name", "")))
            dataset = old if legacy else self.dataset_spec
        data = load_dataset(dataset)
        if data.fingerprint() != self.data.get("fingerprint"):
            raise ArchrankError(
                f"{self.path}: the supernet was trained on data {self.data.get('name')!r} "
                f"(fingerprint {self.data.get('fingerprint')}), but {data.name!r} has "
                f"fingerprint {data.fingerprint()}"
            )
        return data


def load_checkpoint(path: str | Path, **expect: Any) -> Checkpoint:
    """Read a checkpoint; ``expect`` (e.g. ``space="nb201", width=8``) must match its setting."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArchrankError(f"{path}: no such supernet checkpoint (a training writes its first "
                            "one after epoch 1: one stopped before that starts again with "
                            "--out)") from None
    except IsADirectoryError:
        raise ArchrankError(f"{path}: a directory, not a supernet checkpoint") from None
    except Exception as exc:  # truncated, corrupt or foreign
        from archrank.predictors.base import torch_load_problem

        raise ArchrankError(f"{path}: not a readable supernet checkpoint "
                            f"({torch_load_problem(path, exc)})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ArchrankError(f"{path}: not an archrank supernet checkpoint")
    if blob.get("version") != VERSION:
        raise ArchrankError(f"{path}: supernet checkpoint version {blob.get('version')}, this "
                            f"archrank reads version {VERSION}")
    try:
        ckpt = Checkpoint(
            setting=NetworkSetting.from_dict(blob["setting"]),
            recipe=TrainRecipe(**blob["recipe"]), sampler=str(blob["sampler"]),
            seed=int(blob["seed"]), dataset_spec=str(blob["dataset_spec"]),
            data=dict(blob["data"]), epoch=int(blob["epoch"]), step=int(blob["step"]),
            history=[float(v) for v in blob["history"]], seconds=float(blob["seconds"]),
            model=blob["model"], optimizer=blob["optimizer"],
            sampler_state=blob.get("sampler_state") or {}, path=path,
            world=None if blob.get("world") is None else int(blob["world"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ArchrankError(f"{path}: damaged supernet checkpoint (field {exc})") from None
    setting = ckpt.setting.to_dict()
    for key, want in expect.items():
        if want is None:
            continue
        have = setting.get(key)
        if have != want:
            raise ArchrankError(
                f"{path}: a supernet of {ckpt.setting.describe()}, not {key} {want}"
            )
    return ckpt
