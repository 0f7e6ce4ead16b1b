"""Tree-ensemble baselines: gradient-boosted trees (xgboost) and random forests (scikit-learn).

What a user would otherwise pick: a well-kept tree library on a fixed-length encoding of the
cell, either the one-hot adjacency+ops encoding (``xgb``, ``rf``) or the BANANAS path
encoding (``xgb_path``, ``rf_path``); see ``archrank.encodings``. Both libraries are the extra
``archrank[trees]`` and are imported only when a model is fitted or loaded.

Saved state holds no pickles: the xgboost booster as its JSON model (bytes in a uint8 tensor),
the random forest as the arrays of its trees (children, split feature, threshold, leaf value),
which ``ForestArrays`` evaluates with vectorised numpy (all trees and cells descending
together), reproducing scikit-learn's predictions; a forest fitted in this process predicts
with scikit-learn itself, which is faster.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import torch

from archrank import encodings
from archrank.errors import ArchrankError, InvalidOption
from archrank.metrics import rankdata
from archrank.predictors.base import Predictor, check_graphs, check_params
from archrank.spaces.base import GraphBatch, SearchSpace


def _require(module: str, predictor: str) -> ModuleType:
    """Import an optional dependency or say which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ArchrankError(
            f"predictor {predictor!r} needs the package {module.split('.')[0]!r}; "
            "install the extra: pip install 'archrank[trees]'"
        ) from None


class TreePredictor(Predictor):
    """Shared part: parameter checking and the encoding of cells into feature rows."""

    encoding: ClassVar[str] = "onehot"  # "onehot" or "path"
    defaults: ClassVar[dict[str, Any]] = {}
    #: What the trees regress: "rank" (the default since session 11): the training values'
    #: ranks scaled to (0, 1], which stops a few very poor cells (e.g. nb201's 10%
    #: accuracies) from dominating the squared error; only the order of predictions is
    #: meaningful then, which is all a ranking needs. Or "raw" values (what a first user of
    #: the library would do). Measured on nb201 (5 seeds, 100/1000 cells, docs/benchmarks.md):
    #: xgb 0.513/0.758 -> 0.602/0.808, xgb_path 0.423/0.567 -> 0.668/0.791 Kendall tau.
    COMMON: ClassVar[dict[str, Any]] = {"target": "rank"}
    #: library parameters that count something (>= 1, checked with the types by
    #: ``check_params``) and fractions in (0, 1]
    COUNTS: ClassVar[tuple[str, ...]] = ("n_estimators", "min_samples_leaf", "n_jobs")
    FRACTIONS: ClassVar[tuple[str, ...]] = ("subsample", "colsample_bytree", "learning_rate")

    def __init__(self, space: SearchSpace, *, seed: int = 0, **params: Any) -> None:
        merged = check_params(f"predictor {self.name!r}", params, self.param_defaults(),
                              at_least_one=self.COUNTS)
        super().__init__(space, seed=seed, **params)
        self.target = str(merged.pop("target"))
        if self.target not in ("raw", "rank"):
            raise ArchrankError(f"predictor {self.name!r}: target must be 'raw' or 'rank', "
                                f"got {self.target!r}")
        self.hp: dict[str, Any] = merged  # the library's own keyword arguments
        self._check_ranges()

    def param_defaults(self) -> dict[str, Any]:
        return {**self.COMMON, **self.defaults}

    def check_build(self) -> None:
        """The path encoding exists only where paths can be listed: refused when built, not
        at the first fit of a search."""
        if self.encoding == "path":
            try:
                encodings.path_vocabulary(self.space)
            except ArchrankError as exc:
                raise ArchrankError(f"predictor {self.name!r}: {exc}") from None

    def _check_ranges(self) -> None:
        """The libraries check their arguments only when fitting: check them before work."""
        owner = f"predictor {self.name!r}"
        for key, value in self.hp.items():  # (COUNTS: checked by check_params)
            if key in self.FRACTIONS and not 0 < value <= 1:
                raise InvalidOption(f"{owner}: parameter {key!r} must lie in (0, 1], got "
                                    f"{value}")
        features = self.hp.get("max_features")
        if isinstance(features, float) and not 0 < features <= 1:
            raise InvalidOption(f"{owner}: parameter 'max_features' must be a fraction in "
                                f"(0, 1] or a count of at least 1, got {features}")
        if isinstance(features, int) and features < 1:
            raise InvalidOption(f"{owner}: parameter 'max_features' must be at least 1, got "
                                f"{features}")

    @staticmethod
    def chunks(n: int, size: int = 65536) -> list[slice]:
        """Cells per predict call: the encodings of a whole space would take gigabytes."""
        return [slice(i, min(i + size, n)) for i in range(0, n, size)]

    @classmethod
    def params_recorded_by(cls, session: int, space: str) -> dict[str, Any]:
        """Runs recorded before session 11 regressed raw values."""
        return {"target": "raw"} if session < 11 else {}

    def fit_target(self, y: np.ndarray) -> np.ndarray:
        return rankdata(y) / len(y) if self.target == "rank" else y

    def features(self, graphs: GraphBatch) -> np.ndarray:
        check_graphs(graphs, self.space)
        if graphs.num_nodes > self.space.max_nodes:
            raise ArchrankError(f"graph batch has {graphs.num_nodes} nodes; space "
                                f"{self.space.name!r} has at most {self.space.max_nodes}")
        if self.encoding == "path":
            x = encodings.path_encoding(graphs, self.space)
        else:
            x = encodings.onehot(graphs, self.space)
        return x.cpu().numpy().astype(np.float32, copy=False)


# -- gradient-boosted trees -------------------------------------------------------------------
class XGBPredictor(TreePredictor):
    """xgboost regressor on the one-hot encoding."""

    name = "xgb"
    encoding = "onehot"
    defaults: ClassVar[dict[str, Any]] = {
        "n_estimators": 500,
        "max_depth": 6,
        "learning_rate": 0.05,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "min_child_weight": 1.0,
        # One thread: on the few thousand rows of a predictor's training set, more threads
        # gain little and, when the machine is busy, xgboost's per-split thread barriers made
        # a 1-second fit take 5 to 70 seconds (measured on 2 cores).
        "n_jobs": 1,
    }

    def _regressor(self) -> Any:
        xgb = _require("xgboost", self.name)
        return xgb.XGBRegressor(tree_method="hist", random_state=self.library_seed, **self.hp)

    def _fit(self, graphs: GraphBatch, y: np.ndarray, unlabeled: GraphBatch | None) -> None:
        self.model_ = self._regressor()
        self.model_.fit(self.features(graphs), self.fit_target(y))

    def _predict(self, graphs: GraphBatch) -> np.ndarray:
        return np.concatenate([self.model_.predict(self.features(graphs[part]))
                               for part in self.chunks(len(graphs))]).astype(np.float64)

    def get_state(self) -> dict[str, Any]:
        raw = bytes(self.model_.get_booster().save_raw(raw_format="json"))
        return {"xgboost_json": torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.model_ = self._regressor()
        self.model_.load_model(bytearray(state["xgboost_json"].numpy().tobytes()))


class XGBPathPredictor(XGBPredictor):
    """xgboost regressor on the BANANAS path encoding."""

    name = "xgb_path"
    encoding = "path"


# -- random forest ----------------------------------------------------------------------------
@dataclass
class ForestArrays:
    """A regression forest as flat arrays of all its nodes (trees laid end to end).

    Leaves point to themselves, so walking ``depth`` levels from every root lands on the leaf
    of each (tree, cell) pair; the prediction is the mean of the trees' leaf values, as in
    scikit-learn.
    """

    roots: np.ndarray      # int64 [T]   index of each tree's root
    left: np.ndarray       # int64 [M]   child taken when x[feature] <= threshold
    right: np.ndarray      # int64 [M]
    feature: np.ndarray    # int64 [M]
    threshold: np.ndarray  # float64 [M]
    value: np.ndarray      # float64 [M]
    depth: int

    @classmethod
    def from_sklearn(cls, forest: Any) -> ForestArrays:
        lefts, rights, feats, thrs, vals, roots = [], [], [], [], [], []
        offset, depth = 0, 0
        for est in forest.estimators_:
            tree = est.tree_
            n = tree.node_count
            idx = np.arange(n) + offset
            leaf = tree.children_left == -1
            lefts.append(np.where(leaf, idx, tree.children_left + offset))
            rights.append(np.where(leaf, idx, tree.children_right + offset))
            feats.append(np.where(leaf, 0, tree.feature))
            thrs.append(np.where(leaf, 0.0, tree.threshold))
            vals.append(tree.value.reshape(n, -1)[:, 0])
            roots.append(offset)
            offset += n
            depth = max(depth, int(tree.max_depth))
        return cls(np.asarray(roots, dtype=np.int64), np.concatenate(lefts).astype(np.int64),
                   np.concatenate(rights).astype(np.int64),
                   np.concatenate(feats).astype(np.int64),
                   np.concatenate(thrs).astype(np.float64),
                   np.concatenate(vals).astype(np.float64), depth)

    def predict(self, x: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """Mean leaf value over the trees for each row of ``x``.

        All (tree, row) pairs descend together, one level per step; pairs that reached a leaf
        drop out of the active set, so the work is the total path length, not trees x depth.
        """
        x = np.asarray(x, dtype=np.float32)
        n_feat = x.shape[1]
        if self.feature.max() >= n_feat:
            raise ArchrankError(f"the forest splits on feature {int(self.feature.max())}; "
                                f"these cells have {n_feat} (a forest of another encoding?)")
        out = np.empty(len(x), dtype=np.float64)
        for start in range(0, len(x), chunk):
            part = x[start:start + chunk].ravel()
            rows = len(part) // max(n_feat, 1)
            node = np.repeat(self.roots, rows)                    # [T * rows], tree-major
            base = np.tile(np.arange(rows) * n_feat, len(self.roots))
            active = np.flatnonzero(self.left[node] != node)
            while active.size:
                at = node[active]
                go_left = part[base[active] + self.feature[at]] <= self.threshold[at]
                nxt = np.where(go_left, self.left[at], self.right[at])
                node[active] = nxt
                active = active[self.left[nxt] != nxt]
            out[start:start + chunk] = self.value[node].reshape(len(self.roots), rows).mean(0)
        return out

    def state(self) -> dict[str, Any]:
        return {"roots": torch.from_numpy(self.roots), "left": torch.from_numpy(self.left),
                "right": torch.from_numpy(self.right), "feature": torch.from_numpy(self.feature),
                "threshold": torch.from_numpy(self.threshold),
                "value": torch.from_numpy(self.value), "depth": self.depth}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ForestArrays:
        forest = cls(*(state[k].numpy() for k in
                       ("roots", "left", "right", "feature", "threshold", "value")),
                     depth=int(state["depth"]))
        forest.check()
        return forest

    def check(self) -> None:
        """A damaged file: arrays of other lengths, or links outside the forest."""
        m = len(self.value)
        if not len(self.roots) or any(len(a) != m for a in (self.left, self.right,
                                                             self.feature, self.threshold)):
            raise ArchrankError("the saved forest's arrays do not fit together")
        for name, a in (("roots", self.roots), ("left", self.left), ("right", self.right)):
            if a.min() < 0 or a.max() >= m:
                raise ArchrankError(f"the saved forest's {name} point outside its {m} nodes")
        if self.feature.min() < 0:
            raise ArchrankError("the saved forest has negative feature indices")
        nodes = np.arange(m)
        leaf = (self.left == nodes) & (self.right == nodes)
        inner = (self.left > nodes) & (self.right > nodes)
        if not (leaf | inner).all():  # children follow their parent; leaves point to themselves
            raise ArchrankError("the saved forest's links point backwards (a cycle would "
                                "never reach a leaf)")


class RFPredictor(TreePredictor):
    """scikit-learn random forest on the one-hot encoding."""

    name = "rf"
    encoding = "onehot"
    defaults: ClassVar[dict[str, Any]] = {
        "n_estimators": 300,
        "max_features": 0.3,
        "min_samples_leaf": 1,
        "bootstrap": True,
        "n_jobs": 2,
    }

    def _fit(self, graphs: GraphBatch, y: np.ndarray, unlabeled: GraphBatch | None) -> None:
        ensemble = _require("sklearn.ensemble", self.name)
        forest = ensemble.RandomForestRegressor(random_state=self.library_seed, **self.hp)
        forest.fit(self.features(graphs), self.fit_target(y))
        # Threads would add the trees' outputs in a varying order (last-bit differences).
        forest.set_params(n_jobs=1)
        self.sklearn_: Any = forest
        self.forest_ = ForestArrays.from_sklearn(forest)

    def _predict(self, graphs: GraphBatch) -> np.ndarray:
        return np.concatenate([self._predict_rows(self.features(graphs[part]))
                               for part in self.chunks(len(graphs))])

    def _predict_rows(self, x: np.ndarray) -> np.ndarray:
        if getattr(self, "sklearn_", None) is not None:  # fitted here: scikit-learn's fast path
            return self.sklearn_.predict(x).astype(np.float64)
        return self.forest_.predict(x)

    def get_state(self) -> dict[str, Any]:
        return {"forest": self.forest_.state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.sklearn_ = None
        self.forest_ = ForestArrays.from_state(state["forest"])


class RFPathPredictor(RFPredictor):
    """scikit-learn random forest on the BANANAS path encoding."""

    name = "rf_path"
    encoding = "path"
