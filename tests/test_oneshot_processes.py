"""Supernet training across processes: 2-rank DDP on loopback, and a SIGKILL + resume."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from archrank.errors import ArchrankError
from archrank.oneshot import SupernetTrainer, load_checkpoint
from archrank.oracles.training import TrainRecipe

TESTS = Path(__file__).resolve().parent
ARCHRANK = Path(sys.executable).with_name("archrank")

DDP_WORKER = """
import sys
sys.path.insert(0, {tests!r})
import torch, torch.distributed as dist
from test_oneshot import tiny_data, tiny_trainer
trainer = tiny_trainer(tiny_data(), epochs=2, seed=0)
trainer.train(checkpoint={out!r} + "/ck.pt")
rank = dist.get_rank()
codes = tuple(int(c) for c in trainer.sampler.sample(trainer.step - 1))
with_grad = sorted(n for n, p in trainer.supernet.named_parameters() if p.grad is not None)
assert with_grad == sorted(trainer.supernet.path_parameters(codes)), "grads off the path"
torch.save(trainer.supernet.state_dict(), {out!r} + f"/rank{{rank}}.pt")
open({out!r} + f"/history{{rank}}.txt", "w").write(repr(trainer.history))
dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_weights(tmp_path):
    code = DDP_WORKER.format(tests=str(TESTS), out=str(tmp_path))
    port = str(_free_port())
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
               "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env,
                                      stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, stderr = p.communicate(timeout=240)
        assert p.returncode == 0, stderr[-2000:]
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ckpt = load_checkpoint(tmp_path / "ck.pt")
    assert ckpt.finished and all(torch.equal(ckpt.model[k], a[k]) for k in a)
    # the recorded loss is over the whole batch (both ranks' shares), the same on each rank
    histories = [(tmp_path / f"history{r}.txt").read_text() for r in (0, 1)]
    assert histories[0] == histories[1] == repr(ckpt.history)
    assert ckpt.world == 2
    fresh = ckpt.supernet().state_dict()  # the training moved the weights
    start = SupernetTrainer.create("nb201", ckpt.dataset(_tiny()), width=4, depth=1, seed=0,
                                   recipe=TrainRecipe(epochs=2, batch_size=32)).supernet
    assert not torch.equal(fresh["net.stem.0.weight"], start.state_dict()["net.stem.0.weight"])


def _tiny():
    sys.path.insert(0, str(TESTS))
    from test_oneshot import tiny_data

    return tiny_data()


@pytest.mark.slow
@pytest.mark.skipif(not ARCHRANK.exists(), reason="the archrank script is not installed")
def test_killed_supernet_training_resumes_to_the_same_weights(tmp_path):
    data = _tiny()
    arrays = {"x_train": data.x_train, "y_train": data.y_train, "x_val": data.x_val,
              "y_val": data.y_val}
    npz = tmp_path / "tiny.npz"
    np.savez(npz, **arrays)
    ckpt_path = tmp_path / "supernet.pt"
    epochs = 12
    args = [str(ARCHRANK), "oneshot", "train", "--dataset", str(npz), "--epochs", str(epochs),
            "--width", "4", "--depth", "1", "--batch-size", "16", "--seed", "2",
            "--device", "cpu"]
    env = {**os.environ, "COLUMNS": "100"}
    proc = subprocess.Popen([*args, "--out", str(ckpt_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt_path.exists():
            try:
                killed_at = load_checkpoint(ckpt_path).epoch
            except ArchrankError:
                killed_at = None
            if killed_at is not None and killed_at >= 2:
                break
        time.sleep(0.02)
    assert proc.poll() is None, f"training ended before it was killed: {proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= load_checkpoint(ckpt_path).epoch < epochs

    resumed = subprocess.run([str(ARCHRANK), "oneshot", "train", "--resume", str(ckpt_path),
                              "--device", "cpu"], env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    after = load_checkpoint(ckpt_path)
    assert after.finished and after.epoch == epochs and len(after.history) == epochs

    reference = SupernetTrainer.create(
        "nb201", str(npz), width=4, depth=1, seed=2, device="cpu",
        recipe=TrainRecipe(epochs=epochs, batch_size=16)).train()
    ref = reference.supernet.state_dict()
    assert all(torch.equal(after.model[k], ref[k]) for k in ref)
    assert after.history == pytest.approx(reference.history)


# -- the command line -------------------------------------------------------------------------
def test_oneshot_train_fit_select_and_search(cli, tmp_path):
    import json

    data = _tiny()
    npz = tmp_path / "tiny.npz"
    np.savez(npz, x_train=data.x_train, y_train=data.y_train, x_val=data.x_val,
             y_val=data.y_val)
    ckpt = tmp_path / "s.pt"
    base = ["--dataset", str(npz), "--width", "4", "--batch-size", "32", "--device", "cpu"]
    code, out, err = cli("oneshot", "train", *base, "--epochs", "2", "--out", str(ckpt))
    assert code == 0, err
    assert "trained 2 epochs" in out and load_checkpoint(ckpt).finished
    code, _, err = cli("oneshot", "train", *base, "--epochs", "2", "--out", str(ckpt))
    assert code == 2 and "exists; continue it with --resume" in err
    code, _, err = cli("oneshot", "train", "--resume", str(ckpt), "--width", "8")
    assert code == 2 and "not width 8" in err and err.count("\n") == 1
    for option in (["--lr", "5"], ["--seed", "7"], ["--sampler", "fair"],
                   ["--batch-size", "3"], ["--dataset", "digits"]):  # were silently ignored
        code, _, err = cli("oneshot", "train", "--resume", str(ckpt), *option)
        assert code == 2 and f"was trained with {option[0]}" in err, err
    code, _, err = cli("oneshot", "train", "--resume", str(ckpt), "--batch-size", "32",
                       "--dataset", str(npz))  # the checkpoint's own values: fine
    assert code == 0, err
    code, _, err = cli("oneshot", "latency", str(ckpt), "--dataset", str(npz), "--width", "4",
                       "--validate", "0")  # the checkpoint's setting, given again: fine
    assert code == 0, err
    code, _, err = cli("oneshot", "latency", str(ckpt), "--width", "8", "--validate", "0")
    assert code == 2 and "has --width 4; got 8" in err
    code, _, err = cli("oneshot", "train", *base, "--epochs", "0", "--out",
                       str(tmp_path / "zero.pt"))  # was read as "the default, 150"
    assert code == 2 and "--epochs must be at least 1, got 0" in err and err.count("\n") == 1

    scores = tmp_path / "scores.csv"
    code, out, err = cli("oneshot", "fit", str(ckpt), "--samples", "20", "--set", "epochs=20",
                         "--out", str(scores), "--json", str(tmp_path / "fit.json"))
    assert code == 0, err
    assert "15,625 cells written" in out
    info = json.loads((tmp_path / "fit.json").read_text())
    assert info["samples"] == 20 and info["latency_table"]["units"][0] == "base"
    header = scores.read_text().splitlines()[0]
    assert header == ("arch,hash,predicted,supernet_val_acc,supernet_val_loss,params,flops,"
                      "latency_ms")

    code, out, err = cli("oneshot", "select", str(scores), "--max-flops", "40000", "--top", "3",
                         "--json", str(tmp_path / "sel.json"))
    assert code == 0, err
    sel = json.loads((tmp_path / "sel.json").read_text())
    assert len(sel["top"]) == 3 and all(r["flops"] <= 40000 for r in sel["top"])
    preds = [r["predicted"] for r in sel["top"]]
    assert preds == sorted(preds, reverse=True)
    front = sel["pareto"]
    assert [r["latency_ms"] for r in front] == sorted(r["latency_ms"] for r in front)
    assert [r["predicted"] for r in front] == sorted(r["predicted"] for r in front)
    code, _, err = cli("oneshot", "select", str(scores), "--max-flops", "10")
    assert code == 2 and "no cell satisfies --max-flops 10" in err and err.count("\n") == 1
    # the size prior: the top cells ordered by the blend of the score's and the FLOPs' ranks
    code, out, err = cli("oneshot", "select", str(scores), "--max-flops", "40000", "--top", "3",
                         "--size-prior", "1", "--json", str(tmp_path / "big.json"))
    assert code == 0 and "size prior 1" in out, err
    big = json.loads((tmp_path / "big.json").read_text())
    assert big["size_prior"] == 1.0 and big["pareto"] == sel["pareto"]  # the front stays
    # weight 1: the largest cells by the FLOPs of their live ops (dead ones compute on zeros)
    from archrank.oneshot.fit import ScoreTable
    from archrank.oneshot.hardware import live_size
    from archrank.spaces import get_space

    whole, space = ScoreTable.read_csv(scores), get_space("nb201")
    live = live_size(space, [space.parse(a) for a in whole.archs], whole.columns["flops"])
    size = dict(zip(whole.archs, live, strict=True))
    top = [size[r["arch"]] for r in big["top"]]
    assert top == sorted(top, reverse=True)
    assert top[0] == max(v for v, f in zip(live, whole.columns["flops"], strict=True)
                         if f <= 40000)
    for bad in ("1.5", "-0.1", "nan"):
        code, _, err = cli("oneshot", "select", str(scores), "--size-prior", bad)
        assert code == 2 and "--size-prior must be a weight in [0, 1]" in err, (bad, err)

    truncated = tmp_path / "t.pt"
    truncated.write_bytes(ckpt.read_bytes()[:500])
    code, _, err = cli("oneshot", "fit", str(truncated), "--out", str(tmp_path / "x.csv"))
    assert code == 2 and "not a readable supernet checkpoint" in err and err.count("\n") == 1
    # a bad score is refused before the checkpoint is read (or a latency table measured)
    code, _, err = cli("oneshot", "fit", str(truncated), "--score", "val_f1", "--out",
                       str(tmp_path / "x.csv"))
    assert code == 2 and "unknown supernet score 'val_f1'" in err and err.count("\n") == 1

    code, out, err = cli("search", "--oracle", "supernet", "--supernet", str(ckpt),
                         "--strategy", "random", "--budget", "3",
                         "--run-dir", str(tmp_path / "run"), "--json", str(tmp_path / "r.json"))
    assert code == 0, err
    summary = json.loads((tmp_path / "r.json").read_text())
    assert summary["queries"] == 3 and 0 <= summary["best"]["value"] <= 100
    code, _, err = cli("search", "--oracle", "supernet", "--supernet", str(ckpt),
                       "--space", "nb101", "--budget", "3", "--run-dir", str(tmp_path / "r2"))
    assert code == 2 and "not space nb101" in err


def test_training_seed_is_its_own_option_recorded_in_the_run():
    from archrank.runs.config import SearchConfig, build_oracle

    config = SearchConfig(space="nb201", metric="val_acc", strategy="random", seed=0,
                          oracle="train", oracle_params={"dataset": "digits", "train_seed": 7})
    oracle = build_oracle(config)
    assert oracle.seed == 7 and oracle.describe()["seed"] == 7
    assert build_oracle(SearchConfig(space="nb201", metric="val_acc", strategy="random",
                                     seed=3, oracle="train",
                                     oracle_params={"dataset": "digits"})).seed == 3


def test_a_training_continues_with_the_process_count_it_had(tmp_path):
    """Each process computes BN statistics on its share of a batch, so a resume with another
    count would end elsewhere: refused, saying how to continue (torchrun and its count)."""
    trainer = SupernetTrainer.create("nb201", _tiny(), width=4, depth=1, device="cpu",
                                     recipe=TrainRecipe(epochs=3, batch_size=32))
    trainer.recipe = TrainRecipe(epochs=1, batch_size=32)
    trainer.train()
    trainer.recipe = TrainRecipe(epochs=3, batch_size=32)
    trainer.world = 2  # as if the first epoch ran under torchrun with two processes
    trainer.checkpoint().save(tmp_path / "ck.pt")
    ckpt = load_checkpoint(tmp_path / "ck.pt")
    assert ckpt.world == 2 and ckpt.epoch == 1
    resumed = SupernetTrainer.resume(ckpt, dataset=_tiny(), device="cpu")
    with pytest.raises(ArchrankError, match="trained by 2 process.*resumed with 1; continue "
                       r"with: torchrun --nproc-per-node 2 -m archrank oneshot train --resume"):
        resumed.train(checkpoint=tmp_path / "ck.pt")


def test_a_torchrun_environment_is_checked(monkeypatch, capsys):
    from archrank.cli import run
    from archrank.oneshot.trainer import dist_info

    monkeypatch.setenv("WORLD_SIZE", "2")
    for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ArchrankError, match="RANK, MASTER_ADDR, MASTER_PORT not set; launch "
                       "data-parallel training with: torchrun"):
        dist_info()
    # only the supernet training is data-parallel: other commands would run once a process
    assert run(["oneshot", "search", "--method", "spos-ea", "--out", "s.pt"]) == 2
    assert "only `archrank oneshot train` runs data-parallel" in capsys.readouterr().err
    # bad input fails every process alike: rank 0 says it, the others keep quiet
    monkeypatch.setenv("RANK", "1")
    assert run(["oneshot", "train", "--resume", "absent.pt"]) == 2
    assert capsys.readouterr().err == ""


def test_a_lost_peer_says_how_to_continue(tmp_path):
    from archrank.cli.oneshot import _resume_hint
    from archrank.oneshot.trainer import PeerLost

    ckpt = tmp_path / "ck.pt"
    ckpt.write_bytes(b"x")
    match = (r"stopped \(reset\); continue with: torchrun --nproc-per-node 2 -m archrank "
             r"oneshot train --resume .*ck\.pt")
    with pytest.raises(PeerLost, match=match), _resume_hint("train", ckpt, 2):
        raise PeerLost("another process of this 2-process torchrun job stopped (reset)")


def test_only_a_lost_peer_reads_as_one():
    from archrank.oneshot.trainer import peer_loss

    gloo = RuntimeError("[/__w/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] "
                        "Connection closed by peer [127.0.0.1]:41132. This is typically "
                        "caused by a remote worker crashing.")
    assert peer_loss(gloo) == "Connection closed by peer [127.0.0.1]:41132"
    assert peer_loss(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")) is None
    assert peer_loss(RuntimeError("expected scalar type Float but found Double")) is None


def test_a_checkpoint_from_before_the_process_count_continues_with_any(tmp_path):
    trainer = SupernetTrainer.create("nb201", _tiny(), width=4, depth=1, device="cpu",
                                     recipe=TrainRecipe(epochs=1, batch_size=32)).train()
    trainer.recipe = TrainRecipe(epochs=3, batch_size=32)
    blob = trainer.checkpoint().to_dict()
    del blob["world"]  # as written before archrank recorded it
    torch.save(blob, tmp_path / "old.pt")
    ckpt = load_checkpoint(tmp_path / "old.pt")
    assert ckpt.world is None
    resumed = SupernetTrainer.resume(ckpt, dataset=_tiny(), device="cpu")
    resumed.check_world(2, tmp_path / "old.pt")  # torchrun's count is not known: any goes
    resumed.train()
    assert resumed.epoch == 3 and resumed.world == 1


def test_ranks_other_than_0_speak_when_it_is_news(monkeypatch, capsys):
    from archrank.cli import run

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    # a command refused under torchrun says so on every rank (rank 0 may be elsewhere)
    assert run(["bench", "check", "t.csv", "--space", "nb201"]) == 2
    assert "only `archrank oneshot train` runs data-parallel" in capsys.readouterr().err
    # processes that never meet: every one says so
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    monkeypatch.setenv("ARCHRANK_DIST_TIMEOUT", "1")
    assert run(["oneshot", "train", "--dataset", "digits", "--epochs", "1", "--width", "4",
                "--out", "never.pt"]) == 2
    assert "processes of this torchrun job did not meet" in capsys.readouterr().err
