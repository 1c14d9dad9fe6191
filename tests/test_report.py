"""The sweep report on hand-made metrics files."""

import csv
import json
import statistics

import pytest
from PIL import Image

from gdrdd.report.cells import cell_shift
from gdrdd.report.run import main

METRICS = ("acc", "worst_group_acc", "mean_group_acc", "acc_noise", "acc_blur", "acc_invert", "test_cvar")


def write_run(folder, seed, alpha, acc, worst, method="dm", shift=None, init=None, iterations=None, during=(),
              **options):
    folder.mkdir(parents=True)
    cvar = {"name": "none"} if alpha is None else {"name": "cvar", "alpha": alpha, "target": "matching",
                                                   "mix": 0.5, "shrink": 0.0, "features": "step", **options}
    scored = {m: acc for m in METRICS}
    scored.update({f"{m}_std": 0.0 for m in METRICS}, worst_group_acc=worst)
    record = {"method": method, "dataset": "mnist_mini", "ipc": 10, "seed": seed, "cvar": cvar, "shift": shift,
              "scored": {"distilled": scored, "random": scored}}
    if init is not None:
        record["init"] = init
    if iterations is not None:  # scored also after the steps in ``during``: (iteration, acc, worst) each
        record["iterations"] = iterations
        record["during"] = [{"iteration": n, "metrics": {**scored, "acc": a, "worst_group_acc": w}}
                            for n, a, w in during]
    (folder / "metrics.json").write_text(json.dumps(record))


def test_report_averages_seeds_per_setting_and_writes_table_csv_and_plot(tmp_path):
    sweep = tmp_path / "multirun"
    for i, (alpha, seed, acc, worst) in enumerate([(None, 0, 90, 80), (None, 1, 92, 82), (0.8, 0, 88, 85),
                                                   (0.8, 1, 86, 87), (0.8, 2, 87, 86), (0.5, 0, 89, 83)]):
        write_run(sweep / str(i), seed, alpha, acc, worst)
    other_machine = tmp_path / "copied" / "run"  # a run folder copied from elsewhere
    write_run(other_machine, 0, 0.8, 80, 70, method="dsa")
    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "metrics.json").write_text(json.dumps({"method": "random", "scored": {"random": {}}}))
    rows = main([str(sweep), str(sweep / "0"), str(tmp_path / "copied"), str(tmp_path / "random"), "--out",
                 str(tmp_path / "out")])  # sweep/0 twice: counted once
    by_key = {(r["method"], r["objective"], r["alpha"]): r for r in rows}
    assert set(by_key) == {("dm", "none", None), ("dm", "cvar-matching", 0.5), ("dm", "cvar-matching", 0.8),
                           ("dsa", "cvar-matching", 0.8)}
    robust = by_key[("dm", "cvar-matching", 0.8)]
    assert robust["seeds"] == 3 and robust["acc"] == 87 and robust["acc_std"] == 1.0 and robust["worst_group_acc"] == 86
    assert by_key[("dm", "none", None)]["acc"] == 91 and by_key[("dm", "none", None)]["worst_group_acc_std"] > 1.4
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| dm | mnist_mini | 10 | - | cvar-matching | 0.8 | - | 3 | 87.00 ± 1.00 | 86.00 ± 1.00 |" in md
    with open(tmp_path / "out" / "report.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and table[0]["method"] == "dm" and float(table[0]["acc"]) == 91
    png = tmp_path / "out" / "report.png"
    assert png.stat().st_size > 10_000
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] > 600


def test_runs_that_differ_in_design_options_get_rows_of_their_own(tmp_path):
    write_run(tmp_path / "a", 0, 0.8, 80, 70)
    write_run(tmp_path / "b", 0, 0.8, 82, 75, mix=1.0, shrink=16.0)
    write_run(tmp_path / "c", 1, 0.8, 84, 77, mix=1.0, shrink=16.0)
    write_run(tmp_path / "d", 0, 0.8, 81, 71, features="evaluation", refresh=100)
    rows = main([str(tmp_path), "--out", str(tmp_path / "out")])
    by_options = {r["options"]: r for r in rows}
    assert set(by_options) == {"", "mix=1 shrink=16", "features=evaluation refresh=100"}
    assert by_options["mix=1 shrink=16"]["seeds"] == 2 and by_options["mix=1 shrink=16"]["acc"] == 83
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| cvar-matching | 0.8 | mix=1 shrink=16 | 2 | 83.00 ± 1.41 |" in report


def test_a_coreset_start_is_an_option_of_its_own_and_paired_with_the_plain_method(tmp_path):
    real, kcenter = {"init": "real", "init_epochs": 0}, {"init": "kcenter", "init_epochs": 0}
    write_run(tmp_path / "plain", 0, None, 80, 70, init=real)
    write_run(tmp_path / "kc", 0, None, 78, 74, init=kcenter)
    write_run(tmp_path / "kc_trained", 0, None, 79, 71, init={"init": "kcenter", "init_epochs": 3})
    write_run(tmp_path / "kc_robust", 0, 0.8, 81, 76, init=kcenter)
    rows = main([str(tmp_path), "--out", str(tmp_path / "out")])
    assert {(r["objective"], r["options"]) for r in rows} == {
        ("none", "init=real"), ("none", "init=kcenter"), ("none", "init=kcenter init_epochs=3"),
        ("cvar-matching", "init=kcenter")}
    with open(tmp_path / "out" / "paired_differences.csv") as f:
        paired = {(r["objective"], r["options"]): float(r["worst_group_acc"]) for r in csv.DictReader(f)}
    assert paired == {("none", "init=kcenter"): 4, ("none", "init=kcenter init_epochs=3"): 1,
                      ("cvar-matching", "init=kcenter"): 6}


def test_paired_differences_match_robust_and_plain_runs_by_seed(tmp_path):
    shift = {"keep": [1, 0.5], "balanced_batches": False}
    for i, (alpha, seed, acc, worst) in enumerate([(None, 0, 90, 80), (None, 1, 92, 82), (0.8, 0, 88, 85),
                                                   (0.8, 1, 86, 87), (0.8, 2, 99, 99)]):  # seed 2 has no plain run
        write_run(tmp_path / "sweep" / str(i), seed, alpha, acc, worst, shift=shift)
    write_run(tmp_path / "sweep" / "other", 0, 0.8, 50, 50, method="dsa", shift=shift)  # no dsa plain: no pair
    write_run(tmp_path / "sweep" / "oracle", 1, None, 93, 90, shift={**shift, "balanced_batches": True})
    main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")])
    with open(tmp_path / "out" / "paired_differences.csv") as f:
        oracle, row = list(csv.DictReader(f))  # plain-objective settings first
    assert (oracle["objective"], oracle["options"], oracle["seeds"], float(oracle["acc"])) == (
        "none", "balanced_batches", "1", 1.0)  # 93 - 92: a plain-objective setting, paired with plain runs
    assert (row["method"], row["seeds"]) == ("dm", "2")
    assert float(row["acc"]) == -4 and abs(float(row["acc_std"]) - 8 ** 0.5) < 1e-9  # 88 - 90, 86 - 92
    assert float(row["worst_group_acc"]) == 5 and float(row["worst_group_acc_std"]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Paired differences" in md and "| 2 | -4.00 ± 2.83 | +5.00 ± 0.00 |" in md


def test_coverage_group_sizes_and_plots(tmp_path, tiny):
    import torch

    from gdrdd.evaluation.coverage import group_sizes
    from gdrdd.jobs.coverage import main as coverage_main
    from gdrdd.jobs.distill import run

    real = torch.tensor([[0.0, 0], [0.1, 0], [5, 5], [5.2, 5], [4.9, 5], [0, 0.2]])
    labels = torch.tensor([0, 0, 0, 0, 0, 1])
    synthetic = torch.tensor([[0.0, 0], [5, 5], [1, 1], [9, 9]])  # class-major: two per class
    sizes = group_sizes(real, labels, synthetic, torch.tensor([0, 0, 1, 1]), num_classes=2)
    assert sizes.tolist() == [2, 3, 1, 0] and int(sizes.sum()) == len(real)

    for name, objective in (("plain", "cvar=none"), ("robust", "cvar.alpha=0.8")):
        run(tiny("iterations=1", "eval.baseline=false", "eval.coverage=true", objective, out=tmp_path / name))
    with Image.open(tmp_path / "plain" / "coverage.png") as img:
        assert img.format == "PNG" and img.size[0] > 400
    out = coverage_main([str(tmp_path / "plain"), str(tmp_path / "robust"), "--out", str(tmp_path / "both.png"),
                         "--real", "300"])
    assert out.stat().st_size > 20_000
    with Image.open(out) as img:
        assert img.size[0] > 1000  # two panels side by side


def test_a_file_that_is_not_a_metrics_file_is_refused_by_name_before_any_output(tmp_path, capsys):
    write_run(tmp_path / "run_seed0", 0, None, 90, 80)
    log = tmp_path / "run_seed0.log"
    log.write_text("not json")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "run_seed0"), str(log), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and not (tmp_path / "out").exists()
    assert f"{log}: neither a folder nor a metrics.json or run.json file" in capsys.readouterr().err


def test_runs_scored_during_distillation_give_a_paired_budget_trend(tmp_path):
    early = lambda acc, worst: [(100, acc, worst)]  # noqa: E731
    for seed, (plain, robust) in enumerate([((90, 80), (88, 85)), ((92, 82), (86, 87))]):
        write_run(tmp_path / "sweep" / f"plain{seed}", seed, None, *plain, iterations=400,
                  during=early(plain[0] - 10, plain[1] - 10))
        write_run(tmp_path / "sweep" / f"cvar{seed}", seed, 0.8, *robust, iterations=400,
                  during=early(robust[0] - 7, robust[1] - 10))
    main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")])
    with open(tmp_path / "out" / "report.csv") as f:
        rows = {(r["iterations"], r["objective"]): r for r in csv.DictReader(f)}
    assert float(rows[("100", "none")]["acc"]) == 81 and float(rows[("400", "none")]["acc"]) == 91
    with open(tmp_path / "out" / "paired_differences.csv") as f:
        paired = {r["iterations"]: r for r in csv.DictReader(f)}
    assert float(paired["400"]["acc"]) == -4 and float(paired["400"]["worst_group_acc"]) == 5
    # at 100 iterations: acc 81 - 80 and 79 - 82, worst 75 - 70 and 77 - 72
    assert float(paired["100"]["acc"]) == -1 and float(paired["100"]["worst_group_acc"]) == 5
    assert paired["100"]["seeds"] == "2"
    assert Image.open(tmp_path / "out" / "trend.png").size[0] > 0
    single = tmp_path / "single"
    write_run(single / "plain", 0, None, 90, 80, iterations=400)
    write_run(single / "cvar", 0, 0.8, 88, 85, iterations=400)
    main([str(single), "--out", str(tmp_path / "out_single")])
    assert not (tmp_path / "out_single" / "trend.png").exists()  # one budget: no trend


def test_a_run_in_progress_counts_with_the_intermediate_evaluations_it_has_written(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / f"plain{seed}", seed, None, 90, 80, iterations=400, during=[(100, 70 + seed, 60)])
        running = tmp_path / f"cvar{seed}"  # started with iterations=400, scored at 100 (twice: the last counts)
        write_run(running, seed, 0.8, 0, 0, iterations=400)
        record = json.loads((running / "metrics.json").read_text())
        (running / "metrics.json").unlink()
        identity = {k: v for k, v in record.items() if k not in ("scored", "during")}
        (running / "run.json").write_text(json.dumps(identity))
        lines = [{"iteration": 100, "metrics": {**record["scored"]["distilled"], "acc": a, "worst_group_acc": 63}}
                 for a in (10, 72 + seed)]
        (running / "eval_during.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "plain0" / "run.json").write_text("{}")  # beside a metrics.json: the finished run counts
    rows = main([str(tmp_path), "--out", str(tmp_path / "out")])
    assert sorted((r["iterations"], r["objective"], r["seeds"]) for r in rows) == [
        (100, "cvar-matching", 2), (100, "none", 2), (400, "none", 2)]
    with open(tmp_path / "out" / "paired_differences.csv") as f:
        paired = list(csv.DictReader(f))
    assert [(r["iterations"], float(r["acc"]), float(r["worst_group_acc"])) for r in paired] == [("100", 2.0, 3.0)]
    (tmp_path / "cvar0" / "eval_during.jsonl").unlink()  # a run in progress not scored yet: nothing to report
    with pytest.raises(SystemExit):
        main([str(tmp_path / "cvar0" / "run.json"), "--out", str(tmp_path / "empty")])


def test_the_report_says_where_a_paired_difference_goes_cell_by_cell(tmp_path):
    """Six cells (2 classes x 3 subgroups): the setting gains on the cells plain gets least right."""
    plain_cells = {0: [50, 10, 30, 70, 20, 60], 1: [52, 14, 30, 70, 22, 64]}
    gains = {0: [-2, 6, 1, -3, 4, 0], 1: [0, 4, 3, -1, 2, -2]}
    for seed in (0, 1):
        for name, cells in (("plain", plain_cells[seed]),
                            ("cvar", [c + g for c, g in zip(plain_cells[seed], gains[seed])])):
            folder = tmp_path / f"{name}{seed}"
            write_run(folder, seed, None if name == "plain" else 0.8, 80, 70, shift={"keep": [1, 0.25, 0.05]})
            record = json.loads((folder / "metrics.json").read_text())
            record["scored"]["distilled"].update({f"cell{i // 3}_{i % 3}_acc": c for i, c in enumerate(cells)})
            (folder / "metrics.json").write_text(json.dumps(record))
    main([str(tmp_path), "--out", str(tmp_path / "out")])
    with open(tmp_path / "out" / "cell_shift.csv") as f:
        (row,) = list(csv.DictReader(f))
    per_seed = []
    for seed in (0, 1):  # brute force: sort the cells by plain accuracy, thirds of two, Pearson correlation
        order = sorted(range(6), key=lambda i: plain_cells[seed][i])
        thirds = [statistics.fmean(gains[seed][i] for i in order[k:k + 2]) for k in (0, 2, 4)]
        per_seed.append([*thirds, statistics.correlation(plain_cells[seed], gains[seed])])
    assert per_seed[0][:3] == [5, -0.5, -1.5] and per_seed[0][3] < 0
    for column, values in zip(("cells_hard", "cells_middle", "cells_easy", "cells_corr"), zip(*per_seed)):
        assert float(row[column]) == pytest.approx(statistics.fmean(values))
        assert float(row[column + "_std"]) == pytest.approx(statistics.stdev(values))
    assert row["seeds"] == "2" and "cell by cell" in (tmp_path / "out" / "report.md").read_text()


def test_no_cell_shift_off_a_shift_benchmark_and_a_constant_column_has_correlation_zero(tmp_path):
    write_run(tmp_path / "plain", 0, None, 90, 80)
    write_run(tmp_path / "cvar", 0, 0.8, 88, 85)
    main([str(tmp_path), "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "paired_differences.csv").exists()
    assert not (tmp_path / "out" / "cell_shift.csv").exists()
    flat = {f"cell0_{s}_acc": 50.0 for s in range(3)}
    assert cell_shift({k: v + 1 for k, v in flat.items()}, flat) == {
        "cells_hard": 1.0, "cells_middle": 1.0, "cells_easy": 1.0, "cells_corr": 0.0}
    assert cell_shift({"cell0_0_acc": 1.0}, {"cell0_0_acc": 0.0}) == {}  # too few cells to split


def write_setting_run(folder, seed, acc, cvar=None, during=(), **changes):
    """A run as ``metrics.json`` records it now: its whole setting (the resolved config minus seed and paths);
    ``during``: (iteration, acc) of its intermediate evaluations."""
    setting = {"method": {"name": "dm", "lr_img": 1.0, "factor": 1, "init": "real", "init_epochs": 0},
               "dataset": {"name": "mnist_mini", "shift": None}, "ipc": 10, "iterations": 100,
               "model": {"name": "convnet", "width": 128}, "eval": {"nets": 3, "epochs": 300},
               "cvar": cvar or {"name": "none"}}
    for key, value in changes.items():
        section, name = key.split("__")
        setting[section][name] = value
    folder.mkdir(parents=True)
    scored = {m: acc for m in METRICS}
    (folder / "metrics.json").write_text(json.dumps({
        "method": "dm", "dataset": "mnist_mini", "ipc": 10, "seed": seed, "cvar": setting["cvar"], "iterations": 100,
        "setting": setting, "scored": {"distilled": scored},
        "during": [{"iteration": n, "metrics": {**scored, "acc": a}} for n, a in during]}))


@pytest.mark.parametrize("change, options", [({"model__width": 32}, {"model.width=128", "model.width=32"}),
                                             ({"method__lr_img": 10.0}, {"method.lr_img=1", "method.lr_img=10"}),
                                             ({"method__factor": 2}, {"method.factor=1", "method.factor=2"}),
                                             ({"eval__epochs": 1000}, {"eval.epochs=300", "eval.epochs=1000"})])
def test_runs_that_differ_in_any_setting_are_not_averaged_or_counted_as_seeds(tmp_path, change, options):
    write_setting_run(tmp_path / "a0", 0, 80)
    write_setting_run(tmp_path / "a1", 1, 82)
    write_setting_run(tmp_path / "b0", 0, 90, **change)
    rows = main([str(tmp_path), "--out", str(tmp_path / "out")])
    assert sorted((r["seeds"], r["acc"]) for r in rows) == [(1, 90), (2, 81)]
    assert {r["options"] for r in rows} == options


def test_pairs_need_the_same_setting_but_the_levers(tmp_path):
    robust = {"name": "cvar", "alpha": 0.8, "target": "matching", "mix": 0.5}
    write_setting_run(tmp_path / "plain", 0, 80)
    write_setting_run(tmp_path / "robust", 0, 83, cvar=robust)
    write_setting_run(tmp_path / "herding", 0, 84, method__init="herding")
    write_setting_run(tmp_path / "robust_narrow", 0, 70, cvar=robust, model__width=32)  # no narrow plain run
    main([str(tmp_path), "--out", str(tmp_path / "out")])
    with open(tmp_path / "out" / "paired_differences.csv") as f:
        paired = {(r["objective"], r["options"]): float(r["acc"]) for r in csv.DictReader(f)}
    assert paired == {("cvar-matching", "init=real model.width=128"): 3.0,
                      ("none", "init=herding model.width=128"): 4.0}


def test_a_record_written_before_an_option_existed_joins_the_runs_that_leave_it_null(tmp_path):
    robust = {"name": "cvar", "alpha": 0.8, "target": "matching", "mix": 0.5, "release": {"log_every": 3}}
    write_setting_run(tmp_path / "old", 0, 80, cvar=robust)
    write_setting_run(tmp_path / "new", 1, 82, cvar={**robust, "release": {"log_every": 3, "epochs": None}})
    write_setting_run(tmp_path / "other", 2, 90, cvar={**robust, "release": {"log_every": 3, "epochs": 1}})
    rows = main([str(tmp_path), "--out", str(tmp_path / "out")])
    assert sorted((r["seeds"], r["acc"], r["options"]) for r in rows) == [(1, 90, "release.epochs=1"), (2, 81, "")]


def test_the_kmeans_real_batch_is_a_lever_paired_with_random_batches_and_never_a_plain_partner(tmp_path):
    """A k-means-batch run pairs with the random-batch run of its seed at each budget; a robust run pairs with the
    random-batch plain run, not with the k-means one; the alpha plot takes each setting's largest budget."""
    robust = {"name": "cvar", "alpha": 0.8, "target": "matching", "mix": 0.5}
    for seed, (plain, kmeans) in enumerate([(80, 83), (82, 84)]):
        write_setting_run(tmp_path / f"plain{seed}", seed, plain, during=[(50, plain - 10)],
                          method__real_batch="random")
        write_setting_run(tmp_path / f"kmeans{seed}", seed, kmeans, during=[(50, kmeans - 5)],
                          method__real_batch="kmeans")
    write_setting_run(tmp_path / "robust0", 0, 90, cvar=robust, method__real_batch="random")
    main([str(tmp_path), "--out", str(tmp_path / "out")])
    with open(tmp_path / "out" / "paired_differences.csv") as f:
        paired = {(r["objective"], r["iterations"], r["options"]): (float(r["acc"]), r["seeds"])
                  for r in csv.DictReader(f)}
    assert paired == {("none", "50", "method.real_batch=kmeans"): (7.5, "2"),
                      ("none", "100", "method.real_batch=kmeans"): (2.5, "2"),
                      ("cvar-matching", "100", "method.real_batch=random"): (10.0, "1")}
    assert (tmp_path / "out" / "report.png").stat().st_size > 10_000


def test_a_setting_pairs_with_the_plain_run_of_its_own_start_and_numbers_compare_by_value(tmp_path):
    """Plain runs from two of the method's own starts are two rows, and a robust run pairs with the plain run of
    its start; alpha 0 and alpha 0.0 are one setting."""
    robust = {"name": "cvar", "alpha": 0.8, "target": "matching", "mix": 0.5}
    write_setting_run(tmp_path / "real", 0, 40)
    write_setting_run(tmp_path / "first", 0, 30, method__init="first")
    write_setting_run(tmp_path / "robust", 0, 41, cvar=robust)
    write_setting_run(tmp_path / "a0", 0, 50, cvar={**robust, "alpha": 0})
    write_setting_run(tmp_path / "a0.0", 1, 52, cvar={**robust, "alpha": 0.0})
    rows = main([str(tmp_path), "--out", str(tmp_path / "out")])
    assert {r["options"] for r in rows if r["objective"] == "none"} == {"init=real", "init=first"}
    assert [r["seeds"] for r in rows if r["alpha"] == 0] == [2]
    with open(tmp_path / "out" / "paired_differences.csv") as f:
        paired = {(r["alpha"], r["options"]): float(r["acc"]) for r in csv.DictReader(f)}
    assert paired == {("0.8", "init=real"): 1.0, ("0.0", "init=real"): 10.0}


def test_metrics_json_records_the_setting_without_seed_and_paths(distilled_file):
    import yaml

    from gdrdd.config.setting import run_setting

    metrics = json.loads((distilled_file.parent / "metrics.json").read_text())
    identity = json.loads((distilled_file.parent / "run.json").read_text())  # written at the start
    assert {"method", "seed", "setting", "iterations"} <= set(identity)
    assert identity == {k: metrics[k] for k in identity}
    setting = metrics["setting"]
    assert setting == run_setting(yaml.safe_load((distilled_file.parent / "config.yaml").read_text()))
    assert setting["model"]["width"] == 16 and setting["method"]["lr_img"] > 0 and "factor" in setting["method"]
    assert setting["eval"]["epochs"] == 2 and setting["ipc"] == 2 and setting["cvar"]["alpha"] == 0.8
    assert not {"seed", "paths", "logger", "checkpoint"} & set(setting) and "at" not in setting["eval"]
