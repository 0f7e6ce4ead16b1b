"""The predictor API every model follows (scikit-learn style).

``fit(archs, y)`` learns from evaluated architectures, ``predict(archs)`` returns one score per
architecture (higher = better; only the order is guaranteed to be meaningful for ranking
losses), ``save``/``load`` round-trip a fitted predictor. ``archs`` may be a list of the space's
architectures or a ``GraphBatch`` already built by ``space.to_graphs`` (the fast path for
scoring a whole space).

Architecture-level information travels the same way for every predictor. A predictor names
the signals it uses in two parameters: ``arch_inputs`` (known for every cell without training
it: FLOPs, parameters, zero-cost proxies; inputs of ``fit`` and ``predict``) and
``aux_targets`` (known only for labelled cells: other fidelities, other metrics of a table's
row; auxiliary targets of ``fit``). Whoever holds the data (``archrank.signals``: the bench
harness, guided search) resolves ``model.arch_inputs`` / ``model.aux_targets`` to matrices and
passes ``fit(archs, y, arch_features=[n, k], aux=[n, m])`` and ``predict(archs,
arch_features=...)``; ``aux`` may hold NaN (missing: masked out of the loss, never zero).
Predictors that cannot use a kind of signal (``uses_arch_inputs`` / ``uses_aux_targets``
False) do not accept the parameter, and ignore matrices passed to ``fit`` / ``predict``.
"""

from __future__ import annotations

import copy
import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Self

import numpy as np
import torch

from archrank.errors import ArchrankError, first_line
from archrank.params import check_kwargs, check_seed
from archrank.spaces import get_space
from archrank.spaces.base import GraphBatch, SearchSpace

ArchInput = Sequence[Any] | GraphBatch

# name -> "module:Class"; imported lazily so optional extras (xgboost) load only when used.
PREDICTORS: dict[str, str] = {}


def register(name: str, target: str) -> None:
    """Make ``make_predictor(name, ...)`` build ``target`` (``"package.module:Class"``)."""
    PREDICTORS[name] = target


def predictor_class(name: str) -> type[Predictor]:
    try:
        module, _, cls = PREDICTORS[name].partition(":")
    except KeyError:
        raise ArchrankError(
            f"unknown predictor {name!r}; choose from: {', '.join(sorted(PREDICTORS))}"
        ) from None
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise ArchrankError(
            f"predictor {name!r} needs a missing package ({exc.name}); "
            "install the extra: pip install 'archrank[trees]'"
        ) from None


def make_predictor(name: str, space: SearchSpace | str, **kwargs: Any) -> Predictor:
    """Build the predictor registered as ``name`` for ``space`` (a space or its name;
    checked: ``check_build``)."""
    model = predictor_class(name)(space, **kwargs)
    model.check_build()
    return model


def check_params(owner: str, params: dict[str, Any], allowed: dict[str, Any],
                 at_least_one: Iterable[str] = ()) -> dict[str, Any]:
    """``allowed`` updated with ``params``; a clear error names any parameter ``owner`` (e.g.
    "predictor 'gates'") does not have, or a value of the wrong type (``archrank.params``),
    or a count in ``at_least_one`` below 1."""
    return check_kwargs(owner, params, allowed, at_least_one=at_least_one)


def load_torch_file(path: str | Path, what: str) -> Any:
    """A torch file written by archrank (``weights_only``: no arbitrary code is unpickled),
    with one-line errors for a missing or foreign file (``what``: e.g. "predictor")."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArchrankError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise ArchrankError(f"{path}: a folder, not an archrank {what} file") from None
    except Exception as exc:  # corrupt or foreign file
        raise ArchrankError(f"{path}: not an archrank {what} file "
                            f"({torch_load_problem(path, exc)})") from None


def torch_load_problem(path: str | Path, exc: BaseException) -> str:
    """Why ``torch.load`` could not read ``path``, in plain words (torch's own messages are
    a key number, a list error or a paragraph cut mid-sentence)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        return err.strerror or type(err).__name__
    text = str(exc)
    if "Weights only load failed" in text or "weights_only" in text:
        return "it holds objects other than archrank's data"
    if head.startswith(b"PK"):  # torch's zip format
        return "a truncated or damaged torch file"
    if not head:
        return "the file is empty"
    return "not a torch file"


def check_graphs(graphs: GraphBatch, space: SearchSpace) -> None:
    """Reject tensors that do not come from ``space``: another node count (``to_graphs``
    pads every batch to ``max_nodes``), node (and edge) op indices outside its vocabularies,
    ``edge_ops`` missing on a space that puts its ops on edges or present on one that does
    not."""
    if graphs.num_nodes != space.max_nodes:
        raise ArchrankError(f"graph batch has {graphs.num_nodes} nodes; graphs of space "
                            f"{space.name!r} have {space.max_nodes} (another space's batch?)")
    if space.op_on != "edge" and graphs.edge_ops is not None:
        raise ArchrankError(f"graph batch has edge ops; space {space.name!r} puts its ops "
                            "on nodes (another space's batch?)")
    n_ops = len(space.node_op_names)
    if graphs.ops.numel() and (int(graphs.ops.max()) >= n_ops or int(graphs.ops.min()) < 0):
        raise ArchrankError(f"graph batch has node op indices outside the {n_ops} ops of "
                            f"space {space.name!r}")
    if space.op_on != "edge":
        return
    if graphs.edge_ops is None:
        raise ArchrankError(f"space {space.name!r} puts ops on edges but the batch has no "
                            "edge_ops")
    n_edge = len(space.edge_op_names)
    if graphs.edge_ops.numel() and (int(graphs.edge_ops.max()) >= n_edge
                                    or int(graphs.edge_ops.min()) < 0):
        raise ArchrankError(f"graph batch has edge op indices outside the {n_edge} ops of "
                            f"space {space.name!r}")


def signal_names(value: Any, space: SearchSpace | None = None) -> tuple[str, ...]:
    """Signal names from ``"a,b"``, a list, or ``None`` / ``""`` (none); with ``space``,
    ``structure`` stands for every structural signal of the space (``archrank.structure``)."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    names = [v.strip() for v in items if v.strip()]
    if space is not None and "structure" in names:
        from archrank.structure import structure_names

        every = structure_names(space)
        names = [m for n in names for m in (every if n == "structure" else (n,))]
    return tuple(dict.fromkeys(names))


def signal_matrix_arg(value: Any, n: int, names: Sequence[str], what: str,
                      missing_ok: bool) -> np.ndarray | None:
    """``value`` as a float [n, len(names)] matrix (checked), or ``None`` without names."""
    if not names:
        return None
    if value is None:
        how = ("archrank.signals.fit_signals(model, archs, table=T, rows=R) builds it"
               if what == "aux" else
               "archrank.signals.arch_matrix(model.space, archs, model.arch_inputs) builds "
               "it")
        raise ArchrankError(f"this predictor uses {what} {', '.join(names)}: pass {what} "
                            f"[{n}, {len(names)}] ({how})")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ArchrankError(f"{what} must be numbers ({first_line(exc)})") from None
    if arr.ndim == 1 and len(names) == 1:
        arr = arr[:, None]
    if arr.shape != (n, len(names)):
        raise ArchrankError(f"{what} has shape {tuple(arr.shape)}, expected ({n}, "
                            f"{len(names)}) for {', '.join(names)}")
    if not missing_ok:  # arch inputs: -inf is a value (a proxy's worst), NaN is missing
        bad = np.isnan(arr)
        if bad.any():
            col = names[int(np.flatnonzero(bad.any(axis=0))[0])]
            raise ArchrankError(f"{what} {col!r} is missing (NaN) for "
                                f"{int(bad.any(axis=1).sum())} of {n} cells")
    elif np.isinf(arr).any():
        raise ArchrankError(f"{what} contain infinity (use NaN for a missing value)")
    return arr


def save_torch_file(obj: Any, path: str | Path) -> None:
    """``torch.save`` with the output checks every command makes (``files.check_output``: a
    folder, a missing folder, an unwritable file), written through ``files.open_output`` (a
    kill while saving leaves the earlier file whole; a device such as /dev/null is written
    in place, never replaced by a file), and a one-line error for a file that cannot be
    written (torch's names its C++ source line)."""
    from archrank.files import check_output, is_stream, open_output

    check_output(path, "")
    if is_stream(path):
        raise ArchrankError(f"{path}: a model is saved to a file, not to a stream")
    try:
        with open_output(path, "wb", "") as fh:
            torch.save(obj, fh)
    except RuntimeError as exc:
        text = str(exc)  # torch's: "[enforce fail at ...] ... strerror: REASON"
        why = text.rsplit("strerror:", 1)[1].strip() if "strerror:" in text else \
            "permission denied" if "Permission denied" in text else first_line(exc)
        raise ArchrankError(f"{path}: cannot write ({why})") from None


def as_cell_list(archs: Any) -> None:
    """Refuse one cell where a list of cells is expected (iterating a cell's text or graph
    gave errors about its characters)."""
    if isinstance(archs, str) or not isinstance(archs, Iterable):
        raise ArchrankError(f"expected a list of architectures (or a GraphBatch), got "
                            f"one {type(archs).__name__}: wrap a single cell in a list")


def vocabulary(space: SearchSpace) -> dict[str, list[str]]:
    """What a space's op ids mean: its node and edge op names."""
    return {"node": list(space.node_op_names), "edge": list(space.edge_op_names)}


def _saved_space(blob: Mapping[str, Any], given: SearchSpace | str | None) -> SearchSpace:
    """The space a saved predictor was fitted on: ``given``, else the registered space of the
    saved name, rebuilt on the saved op vocabulary where that differs (one-line errors when
    it cannot be, or when ``given`` is another space)."""
    name, saved = blob["space"], blob.get("vocabulary")
    space = get_space(given if given is not None else name) if not isinstance(
        given, SearchSpace) else given
    if space.name != name:
        raise ArchrankError(f"fitted on space {name!r}, not {space.name!r}")
    if saved is None or saved == vocabulary(space):
        return space
    if not isinstance(given, SearchSpace):  # by name: that kind of space on the saved ops
        rebuilt = space.with_vocabulary(saved["node"], saved["edge"])
        if rebuilt is not None:
            return rebuilt
    raise ArchrankError(f"fitted on a {name} space with ops {', '.join(saved['node'])}"
                        + (f" / {', '.join(saved['edge'])}" if saved["edge"] else "")
                        + f", not {', '.join(space.node_op_names)}"
                        + ("" if isinstance(given, SearchSpace) else
                           "; pass that space: Predictor.load(path, space=...)"))


def default_device() -> torch.device:
    """The GPU when one is present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _targets(y: Any) -> np.ndarray:
    """``y`` as a float vector: one number per architecture ([n] or [n, 1])."""
    try:
        arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ArchrankError(f"target values must be numbers ({first_line(exc)})") from None
    if arr.ndim > 2 or (arr.ndim == 2 and arr.shape[1] != 1):
        raise ArchrankError(f"target values have shape {arr.shape}: give one number per "
                            "architecture, shape (n,)")
    return arr.reshape(-1)


class ConstantTargets(ArchrankError, ValueError):
    """Training targets that are all alike: there is no ranking to learn from them."""


class Predictor(ABC):
    """Base class: input checking, graph conversion and save/load live here."""

    name: ClassVar[str]
    uses_arch_inputs: ClassVar[bool] = False  # takes the ``arch_inputs`` parameter
    uses_aux_targets: ClassVar[bool] = False  # takes the ``aux_targets`` parameter
    # Options of guided search (``GuidedSearch``'s keywords) that this predictor searches best
    # with on a space, by measurement (docs/benchmarks.md): space name -> options.
    # ``make_strategy`` applies them where the user sets none, so ``--strategy guided
    # --predictor NAME`` searches as measured; other spaces keep GuidedSearch's own defaults.
    guided_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = MappingProxyType({})

    def __init__(self, space: SearchSpace | str, *, seed: int = 0, **params: Any) -> None:
        self.space = get_space(space) if isinstance(space, str) else space
        self.seed = check_seed(f"predictor {self.name!r}", seed)
        self.params = params
        self.fitted_ = False
        self.arch_inputs = signal_names(params.get("arch_inputs"), self.space)
        self.aux_targets = signal_names(params.get("aux_targets"))

    def check_build(self) -> None:  # noqa: B027  (a hook: most predictors have nothing to do)
        """Raise a one-line error if the parameters cannot build the model (a hook)."""

    def param_defaults(self) -> dict[str, Any]:
        """Every hyper-parameter the predictor declares, with its default: what its
        constructor checks keywords against (``check_params``) and ``get_params`` lists."""
        return {}

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Every constructor argument, defaults included (scikit-learn's protocol:
        ``sklearn.base.clone``, ``GridSearchCV`` and ``cross_val_score`` take predictors;
        give them a ``scoring``, e.g. ``make_scorer(archrank.metrics.kendall_tau)``)."""
        return {"space": self.space, "seed": self.seed,
                **copy.deepcopy(self.param_defaults()), **self.params}

    def __sklearn_tags__(self) -> Any:
        """A regressor's tags (scikit-learn 1.6+ asks every estimator; imported here, as
        scikit-learn is an optional extra)."""
        from sklearn.utils import RegressorTags, Tags, TargetTags

        return Tags(estimator_type="regressor", target_tags=TargetTags(required=True),
                    regressor_tags=RegressorTags())

    def set_params(self, **params: Any) -> Self:
        """Rebuild with some arguments changed (unfitted, as scikit-learn's ``set_params``
        followed by a new ``fit``); unknown names are one-line errors, as in the
        constructor. Parameters left at their default stay so (not pinned)."""
        merged = {"space": self.space, "seed": self.seed, **self.params, **params}
        space, seed = merged.pop("space"), merged.pop("seed")
        fresh = type(self)(space, seed=seed, **merged)
        fresh.check_build()
        self.__dict__.clear()
        self.__dict__.update(fresh.__dict__)
        return self

    @property
    def library_seed(self) -> int:
        """``seed`` folded into 32 bits, what torch, numpy, xgboost and scikit-learn take
        (the same number for every seed in [0, 2^32))."""
        return self.seed % 2**32

    # -- API --------------------------------------------------------------------------------
    def fit(self, archs: ArchInput, y: Sequence[float] | np.ndarray,
            unlabeled: ArchInput | None = None, *, arch_features: Any = None,
            aux: Any = None) -> Self:
        """Learn from ``archs`` and their measured ``y`` (higher = better).

        ``unlabeled`` architectures are used by semi-supervised predictors and ignored by the
        rest. ``arch_features`` [n, k] and ``aux`` [n, m] (NaN = missing) are the columns
        ``arch_inputs`` / ``aux_targets`` name (see the module docstring).
        """
        graphs = self.as_graphs(archs)
        target = _targets(y)
        if len(graphs) == 0:
            raise ArchrankError("cannot fit a predictor on zero architectures")
        if len(target) != len(graphs):
            raise ArchrankError(
                f"got {len(graphs)} architectures but {len(target)} target values"
            )
        if not np.all(np.isfinite(target)):
            raise ArchrankError("target values contain NaN or infinity")
        if float(np.abs(target).max()) > 1e30:
            raise ArchrankError(f"target values up to {float(np.abs(target).max()):.3g} are "
                                "too large to fit (rescale them; at most 1e30 in size)")
        if len(target) < 2 or np.all(target == target[0]):
            raise ConstantTargets(
                f"cannot learn a ranking from {len(target)} target value(s) that are all "
                f"{target[0]:g}: a predictor needs at least two different values")
        unl = None if unlabeled is None else self.as_graphs(unlabeled)
        arch = signal_matrix_arg(arch_features, len(graphs), self.arch_inputs,
                                 "arch_features", missing_ok=False)
        aux_m = signal_matrix_arg(aux, len(graphs), self.aux_targets, "aux", missing_ok=True)
        self.fitted_ = False  # a refit that fails or is interrupted leaves no half-fitted model
        if arch is None and aux_m is None:
            self._fit(graphs, target, unl)
        else:
            self._fit_signals(graphs, target, unl, arch, aux_m)
        self.fitted_ = True
        return self

    def predict(self, archs: ArchInput, arch_features: Any = None) -> np.ndarray:
        """One score per architecture, in input order (``arch_features``: as for ``fit``)."""
        if not self.fitted_:
            raise ArchrankError(f"predictor {self.name!r} is not fitted; call fit() first")
        graphs = self.as_graphs(archs)
        if len(graphs) == 0:
            return np.zeros(0)
        arch = signal_matrix_arg(arch_features, len(graphs), self.arch_inputs,
                                 "arch_features", missing_ok=False)
        scores = self._predict(graphs) if arch is None else self._predict_signals(graphs, arch)
        return np.asarray(scores, dtype=np.float64).reshape(-1)

    def as_graphs(self, archs: ArchInput) -> GraphBatch:
        if isinstance(archs, GraphBatch):
            return archs
        as_cell_list(archs)
        return self.space.to_graphs(list(archs))

    # -- subclass hooks ---------------------------------------------------------------------
    @abstractmethod
    def _fit(self, graphs: GraphBatch, y: np.ndarray, unlabeled: GraphBatch | None) -> None:
        ...

    @abstractmethod
    def _predict(self, graphs: GraphBatch) -> np.ndarray:
        ...

    def _fit_signals(self, graphs: GraphBatch, y: np.ndarray, unlabeled: GraphBatch | None,
                     arch: np.ndarray | None, aux: np.ndarray | None) -> None:
        """``_fit`` with arch-level inputs and auxiliary targets (predictors that use them)."""
        raise NotImplementedError(f"predictor {self.name!r} takes no arch-level signals")

    def _predict_signals(self, graphs: GraphBatch, arch: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"predictor {self.name!r} takes no arch-level inputs")

    @abstractmethod
    def get_state(self) -> dict[str, Any]:
        """Fitted state as tensors, numbers, strings, lists and dicts (safe to torch.load)."""

    @abstractmethod
    def set_state(self, state: dict[str, Any]) -> None:
        ...

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the fitted predictor to ``path`` (a torch file, loadable with weights_only)."""
        if not self.fitted_:
            raise ArchrankError("cannot save a predictor that is not fitted")
        save_torch_file(
            {"predictor": self.name, "space": self.space.name, "seed": self.seed,
             # the op ids' meaning: a table's own space may share a name with another
             # vocabulary (NAS-Bench-Graph's proteins: 5 of the 9 ops)
             "vocabulary": vocabulary(self.space),
             # where it trained is not what it is: a file saved on a GPU loads on a CPU
             "params": {k: v for k, v in self.params.items() if k != "device"},
             "state": self.get_state(),
             # the names as resolved now ("auto", "structure" may resolve otherwise later)
             "signals": {"arch_inputs": list(self.arch_inputs),
                         "aux_targets": list(self.aux_targets)}},
            path,
        )

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace | str | None = None) -> Predictor:
        """Read a predictor written by ``save`` (no arbitrary code is unpickled); called on a
        subclass (``GatesPredictor.load``), a file of another predictor is refused.

        ``space``: the space it was fitted on, where its name alone does not give it back (a
        space of your own); by default the registered space of the saved name, with the
        saved op vocabulary (a table's own NAS-Bench-Graph space is rebuilt)."""
        blob = load_torch_file(path, "predictor")
        need = ("predictor", "space", "seed", "params", "state")
        if not isinstance(blob, dict) or any(k not in blob for k in need):
            raise ArchrankError(f"{path}: not an archrank predictor file (no "
                                f"{', '.join(need)})")
        try:
            klass = predictor_class(blob["predictor"])
            if not issubclass(klass, cls):  # GatesPredictor.load of an rf_path file
                raise ArchrankError(f"holds a {blob['predictor']!r} predictor, not "
                                    f"{getattr(cls, 'name', cls.__name__)!r}; read any "
                                    f"predictor file with Predictor.load")
            params = {k: v for k, v in blob["params"].items() if k != "device"}  # older files
            space = _saved_space(blob, space)
            model = klass(space, seed=blob["seed"], **params)
        except ArchrankError as exc:
            raise ArchrankError(f"{path}: {exc}") from None
        signals = blob.get("signals")
        if signals is not None:
            model.arch_inputs = tuple(signals["arch_inputs"])
            model.aux_targets = tuple(signals["aux_targets"])
        else:  # written before the resolved names were saved
            model.arch_inputs = model.saved_arch_inputs(blob["state"])
        try:
            model.set_state(blob["state"])
        except ArchrankError as exc:
            raise ArchrankError(f"{path}: {exc}") from None
        except (KeyError, RuntimeError, TypeError, ValueError, IndexError,
                AttributeError) as exc:  # damaged or foreign
            reason = first_line(exc, empty=type(exc).__name__)
            raise ArchrankError(f"{path}: a {blob['predictor']} file this archrank cannot "
                                f"load ({reason})") from None
        model.fitted_ = True
        return model

    @classmethod
    def params_recorded_by(cls, session: int, space: str) -> dict[str, Any]:
        """Parameters whose default has changed since development session ``session``, with
        the value they had then: a run recorded then resumes with them (``runs.config``);
        none by default."""
        return {}

    def saved_arch_inputs(self, state: dict[str, Any]) -> tuple[str, ...]:
        """The arch inputs of a file that does not name them (``arch_inputs`` resolved by the
        defaults of the archrank that wrote it): by default, as they resolve now."""
        return self.arch_inputs
