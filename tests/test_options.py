"""``--set`` options are checked against each component's declared parameters (names, types,
values) before any work and before any run directory exists (issue 16)."""

from __future__ import annotations

import re

import pytest

from archrank.errors import ArchrankError
from archrank.params import check_kwargs, check_value
from conftest import one_line_error

CELLS = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
         "nor_conv_3x3~2|",
         "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
         "nor_conv_3x3~2|",
         "|avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
         "nor_conv_3x3~2|",
         "|none~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
         "nor_conv_3x3~2|"]


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "small.csv"
    path.write_text("arch,acc\n" + "".join(f"{c},{90 + i}\n" for i, c in enumerate(CELLS)))
    return path


BAD_SETS = [
    ("nosuch=1", "has no parameter 'nosuch'"),
    ("explore=abc", "'explore' must be a number"),
    ("explore=2", "explore must lie in [0, 1]"),
    ("n_init=1e999", "'n_init' must be"),
    ("n_init=-1", "at least 0"),
    ("n_init=2.5", "an integer"),
    ("explore=NaN", "finite"),
    ("batch=[1,2]", "an integer"),
    ("pool_size=99999999999999999999", "in size"),
    ("predictor.nosuch=1", "predictor 'gates' has no parameter 'nosuch'"),
    ("predictor.epochs=abc", "'epochs' must be an integer"),
    ("predictor.lr=Infinity", "finite"),
    ("predictor.loss=zzz", "unknown loss"),
    ("predictor_params=3", "JSON object"),
    ("a.b.c.d=1", "too many dotted parts"),
    ("noequals", "expected KEY=VALUE"),
    ("explore=" + "[" * 5000, "explore"),
]


@pytest.mark.parametrize(("item", "message"), BAD_SETS)
def test_search_set_checked_before_run_directory(tmp_path, table, cli, item, message):
    run_dir = tmp_path / "run"
    status, _, err = cli("search", "--space", "nb201", "--bench", table, "--metric", "acc",
                         "--space-from-bench", "--budget", "3", "--run-dir", run_dir,
                         "--set", item)
    line = one_line_error(status, err)
    assert message in line
    assert not run_dir.exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["bench", "search", "--strategies", "rea,gates", "--set", "rea.population=-1"],
     "'population' must be at least 0"),
    (["bench", "search", "--strategies", "rea,gates", "--set", "gates.predictor.layers=x"],
     "'layers' must be an integer"),
    (["bench", "search", "--strategies", "rea", "--set", "foo.x=1"], "not among --strategies"),
    (["bench", "predictor", "--predictors", "gates,mlp", "--set", "mlp.hidden=ab"],
     "'hidden' must be an integer"),
    (["bench", "predictor", "--predictors", "gates", "--set", "mlp.layers=3"],
     "not among the predictors"),
    (["bench", "predictor", "--predictors", "gates", "--set", "gates.readout=zzz"],
     "unknown readout"),
])
def test_bench_set_checked_before_any_fit(table, cli, argv, message):
    status, _, err = cli(*argv, "--space", "nb201", "--bench", table, "--metric", "acc",
                         "--space-from-bench" if argv[1] == "search" else "--seeds",
                         *([] if argv[1] == "search" else ["1"]))
    assert message in one_line_error(status, err)


def test_bench_speed_options(cli):
    # a count: below 0 as at 0 "at least 1" (it said "at least 0" for -1, the default's sign)
    assert "'dim' must be at least 1, got -1" in one_line_error(*cli("bench", "speed", "--set",
                                                                    "gates.dim=-1")[::2])
    assert "--train-size" in one_line_error(*cli("bench", "speed", "--train-size",
                                                 "100000")[::2])


def test_value_rules():
    assert check_value("x", "n", 1e3, 5) == 1000 and isinstance(check_value("x", "n", 1e3, 5), int)
    assert check_value("x", "r", 3, 0.5) == 3
    assert check_value("x", "epochs", None, None) is None
    assert check_value("x", "epochs", 7, None) == 7
    # --set reads JSON: a text option given as a number or bool gets its text back
    assert check_value("x", "op_info", 0, "auto") == "0"
    assert check_value("x", "flag", True, "auto") == "true"
    for value, default in [(True, 3), (1, True), ("1", 0.5), ([1], "text"), ([1], {}),
                           (float("inf"), 1.0), ({"a": 1}, None)]:
        with pytest.raises(ArchrankError):
            check_value("x", "p", value, default)
    with pytest.raises(ArchrankError, match="'epochs' must be an integer"):
        check_value("x", "epochs", "many", None)
    merged = check_kwargs("thing", {"a": 2}, {"a": 1, "b": "t"})
    assert merged == {"a": 2, "b": "t"}
    with pytest.raises(ValueError, match="valid: a, b"):  # also a ValueError for Python callers
        check_kwargs("thing", {"c": 2}, {"a": 1, "b": "t"})


def test_version_and_group_help_examples(cli):
    from archrank import __version__

    status, out, _ = cli("--version")
    assert status == 0 and out.strip() == f"archrank {__version__}"
    for group in ([], ["bench"], ["space"], ["runs"]):
        status, out, _ = cli(*group, "--help")
        assert status == 0 and "Example" in out, group
    status, _, err = cli("no-such-command")
    assert "No such command" in one_line_error(status, err)


def test_the_help_lists_every_registered_predictor() -> None:
    """``--predictors`` / ``--predictor`` help names the registry's predictors (kept as text
    so that the CLI starts without importing torch)."""
    from archrank.cli.app import PREDICTOR_NAMES
    from archrank.predictors.base import PREDICTORS

    assert PREDICTOR_NAMES.split(", ") == sorted(PREDICTORS)


# Every command that trains networks names the flag of an out-of-range recipe value (search
# and bench table said "epochs and batch sizes must be positive", naming no flag).
EPOCHS_ARGV = [
    ("search", "--oracle", "train", "--budget", "2"),
    ("oneshot", "train", "--out", "{tmp}/s.pt"),
    ("oneshot", "search", "--out", "{tmp}/s.pt"),
    ("bench", "oneshot", "--truth", "{tmp}/truth.csv"),
    ("bench", "oneshot-search", "--truth", "{tmp}/truth.csv", "--json", "{tmp}/o.json"),
    ("bench", "table", "--n", "2", "--out", "{tmp}/t.csv"),
]


@pytest.mark.parametrize("argv", EPOCHS_ARGV, ids=lambda a: " ".join(a[:2]))
@pytest.mark.parametrize("value", ["0", "-3"])
def test_epochs_out_of_range_names_the_flag(tmp_path, cli, argv, value):
    argv = [a.format(tmp=tmp_path) for a in argv]
    status, _, err = cli(*argv, "--epochs", value)
    line = one_line_error(status, err)
    assert f"--epochs must be at least 1, got {value}" in line
    assert not (tmp_path / "s.pt").exists()


@pytest.mark.parametrize("argv", [EPOCHS_ARGV[0], EPOCHS_ARGV[1], EPOCHS_ARGV[2]],
                         ids=lambda a: " ".join(a[:2]))
@pytest.mark.parametrize("flag", ["--width", "--depth"])
def test_network_size_out_of_range_names_the_flag(tmp_path, cli, argv, flag):
    argv = [a.format(tmp=tmp_path) for a in argv]
    line = one_line_error(*cli(*argv, flag, "0")[::2])
    assert f"{flag} must be at least 1, got 0" in line


def test_a_recipe_names_its_field():
    from archrank.oracles.training import TrainRecipe

    with pytest.raises(ArchrankError, match="epochs must be at least 1, got 0"):
        TrainRecipe(epochs=0)
    with pytest.raises(ArchrankError, match="batch_size must be at least 1, got -1"):
        TrainRecipe(batch_size=-1)


def _every_command():
    import typer

    from archrank.cli.app import app, tidy_help

    def walk(command, path):
        yield path, command
        for name, sub in (getattr(command, "commands", None) or {}).items():
            yield from walk(sub, [*path, name])

    yield from walk(tidy_help(typer.main.get_command(app)), [])


def test_help_shows_switches_without_metavar_and_defaults_one_way(cli):
    """`--help <bool>`, defaults as '(100)', '(default: X)' and '[default: X]' side by side,
    and prose paragraphs broken where the source line ended ('again' / 'after a kill')."""
    import re

    seen = 0
    for path, command in _every_command():
        seen += 1
        status, out, err = cli(*path, "--help")
        assert status == 0 and "<bool>" not in out, (path, err)
        for param in command.params:  # a default in words is at the end, shown as typer's
            words = re.search(r"\((default\b[^()]*|-?\d[\d.,_]*)\)\.?$", param.help or "")
            assert not words, (path, param.name)
    assert seen > 20
    _, out, _ = cli("search", "--help")
    assert "Evaluations to spend. [default: 100]" in out
    _, out, _ = cli("bench", "table", "--help")
    assert "run the same command again after a kill" in out  # one line at 200 columns
    assert "[default: the training oracle's for the dataset]" in out
    assert "  archrank bench table ... --train-seeds 0,1,2,3,4" in out  # examples keep lines
    # a group's list of commands: each command's first sentence, as one paragraph (it was
    # the whole first paragraph, its source lines wrapped again one by one)
    _, out, _ = cli("bench", "--help")
    assert "Check a benchmark table: valid and invalid rows, duplicates, disagreeing" in out
    assert "graph fit." in out and "Resumable" not in out
    _, out, _ = cli("--help")
    assert "with real training on MNIST-1D (what" in out


def test_every_device_option_defaults_to_auto_with_one_help(cli, tmp_path):
    """Every command that takes --device uses the GPU when one is present (the house rule):
    oneshot search defaulted to cpu while oneshot train took the GPU."""
    from archrank.cli.app import DEVICE_DEFAULT

    options = {" ".join(path): param for path, command in _every_command()
               for param in command.params if "--device" in getattr(param, "opts", ())}
    assert {"oneshot train", "oneshot search"} <= set(options)
    assert DEVICE_DEFAULT == "auto"
    assert {param.default for param in options.values()} == {"auto"}, options
    assert len({param.help for param in options.values()}) == 1
    for path in options:
        _, out, _ = cli(*path.split(), "--help")
        assert "[default: auto]" in out and "GPU when one is present" in out, path
        # a bad device is one line before any output (oneshot search drew its bar first)
        status, out, err = cli(*path.split(), "--device", "bogus", "--out", tmp_path / "x.pt")
        assert status == 2 and not out and not list(tmp_path.iterdir()), (path, out)
        assert err.strip() == "error: --device: unknown device 'bogus'; use auto, cpu or " \
            "cuda", (path, err)


@pytest.mark.parametrize("argv", [EPOCHS_ARGV[1], EPOCHS_ARGV[2], EPOCHS_ARGV[5]],
                         ids=lambda a: " ".join(a[:2]))
def test_a_network_too_large_for_the_machine_names_the_flag(tmp_path, cli, argv):
    """A --depth of absurdly large networks is refused before any file, naming the flag."""
    argv = [a.format(tmp=tmp_path) for a in argv]
    line = one_line_error(*cli(*argv, "--depth", "999999")[::2])
    assert line.startswith("error: --depth 999999 (with --width ") and "memory" in line
    assert list(tmp_path.iterdir()) == []


def test_a_search_without_space_names_the_size_flags(tmp_path, cli):
    """search --oracle train without --space trains the main job's space: its too-large
    network is refused naming --width, as with --space given."""
    line = one_line_error(*cli("search", "--oracle", "train", "--width", "100000", "--budget",
                               "5", "--run-dir", str(tmp_path / "r"))[::2])
    assert line.startswith("error: --width 100000 (with --depth ") and "nb201" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("columns", [40, 60, 80, 120])
def test_help_examples_are_not_broken_mid_command(cli, monkeypatch, columns):
    """rich wrapped a long example command at the terminal's width, wherever the column fell
    (`--metric` / `cifar10_test --seeds 5` on two lines that no longer pasted as one
    command): every example line of every command's --help comes out whole, a long command
    continued with a trailing backslash between flags, also an example written on its
    label's line (`Example: archrank ...`) and one with a trailing comment (a backslash in
    a comment continues nothing: `# the darts pool \\` then `alone` ran as a command)."""
    def example_lines(text):  # a command's lines, and the lines a trailing \ continues
        found, going_on = [], False
        for line in text.split("\n"):
            if going_on or line.strip().startswith(("archrank ", "torchrun ")):
                found.append(line)
                going_on = line.rstrip().endswith("\\")
        return found

    monkeypatch.setenv("COLUMNS", str(columns))
    checked = 0
    for path, command in _every_command():
        status, out, err = cli(*path, "--help")
        assert status == 0, (path, err)
        assert not re.search(r"Examples?: +(archrank|torchrun) ", out), path
        shown = {line.strip() for line in out.splitlines()}
        lines = example_lines(command.help or "")
        # every example starts at one indentation (`Example: archrank zc ...` with the next
        # example aligned under the first showed that one moved and the other 7 further in)
        starts = [line for i, line in enumerate(lines) if line.lstrip().startswith(
            ("archrank ", "torchrun ")) and not (i and lines[i - 1].rstrip().endswith("\\"))]
        assert len({len(line) - len(line.lstrip()) for line in starts}) <= 1, (path, starts)
        for i, line in enumerate(lines):
            if len(line) > columns - 4:  # only a word longer than the terminal may be
                assert len(line.strip().removesuffix("\\").split()) == 1, (path, line)
                continue  # cut by the terminal (a long path at 40 columns)
            assert line.strip() in shown, (path, line)
            assert "#" not in line or not line.rstrip().endswith("\\"), (path, line)
            if i + 1 < len(lines) and line.rstrip().endswith("\\"):
                assert lines[i + 1].startswith(" "), (path, lines[i + 1])  # continued
            checked += 1
    assert checked > 30


def test_a_long_example_breaks_between_flags_and_keeps_its_comment_apart():
    """The wrapping itself, at a width of 40: breaks before a flag (a flag with its value),
    room for the backslash only on lines continued, a trailing comment above the command,
    and an example on its label's line moved below the label."""
    from archrank.cli.app import _wrap_examples

    text = ("Example: archrank bench predictor --metric cifar10_test --seeds 5 "
            "# five seeds")
    assert _wrap_examples(text, 40).split("\n") == [
        "Example:", "", "  # five seeds", "  archrank bench predictor \\",
        "    --metric cifar10_test --seeds 5"]
    assert _wrap_examples("  archrank spaces", 40) == "  archrank spaces"
    # a flag with a value too long for a line of their own: apart, the flag kept on
    assert _wrap_examples("archrank x --truth " + "p" * 30, 30).split("\n") == [
        "archrank x --truth \\", "  " + "p" * 30]
