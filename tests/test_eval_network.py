"""bench/eval_network.py: one protocol network of gdrdd against the original's ``evaluate_synset``. The original
is stood in for by a small ``utils.py`` that records how it is called, so the test needs no copy of it."""

import json
import subprocess
import sys
from pathlib import Path

from gdrdd.config import CONFIG_DIR as CONF

SCRIPT = CONF.parent / "bench" / "eval_network.py"

FAKE_UTILS = '''
import json
from pathlib import Path

import torch


class ParamDiffAug:
    pass


def get_network(model, channel, num_classes, im_size):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(channel * im_size[0] * im_size[1], num_classes))


def evaluate_synset(it_eval, net, images, labels, testloader, args):
    test = sum(len(y) for _, y in testloader)
    record = {"model": type(net).__name__, "images": len(images), "classes": int(labels.max()) + 1, "test": test,
              "lr": args.lr_net, "epochs": args.epoch_eval_train, "batch": args.batch_train, "dsa": args.dsa,
              "strategy": args.dsa_strategy}
    with open(Path(__file__).with_name("calls.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\\n")
    return net, 0.0, 0.1
'''


def run_bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--reference-dir", str(tmp_path / "ref"), *args],
                          capture_output=True, text=True, cwd=tmp_path)


def test_both_programs_train_the_same_protocol_network_and_the_ratio_is_of_their_medians(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "utils.py").write_text(FAKE_UTILS)
    out = tmp_path / "report.json"
    proc = run_bench(tmp_path, "--images", "20", "--epochs", "2", "--test", "30", "--rounds", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    calls = [json.loads(line) for line in (tmp_path / "ref" / "calls.jsonl").read_text().splitlines()]
    assert len(calls) == 2  # one original network per round
    assert calls[0] == {"model": "Sequential", "images": 20, "classes": 10, "test": 30, "lr": 0.01, "epochs": 2,
                        "batch": 256, "dsa": True, "strategy": "color_crop_cutout_flip_scale_rotate"}
    report = json.loads(out.read_text())
    assert [len(report["seconds"][name]) for name in ("original", "gdrdd")] == [2, 2]
    median = report["median_seconds"]
    assert report["ratio"] == median["gdrdd"] / median["original"]
    assert 0 <= report["accuracy"]["gdrdd"] <= 100 and report["accuracy"]["original"] == 10.0
    assert "gdrdd / original: x" in proc.stdout


def test_a_set_that_is_not_the_same_size_per_class_is_refused_before_any_network(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "utils.py").write_text(FAKE_UTILS)
    proc = run_bench(tmp_path, "--images", "15")
    assert proc.returncode == 2 and "--images 15" in proc.stderr
    assert not (tmp_path / "ref" / "calls.jsonl").exists()


def test_a_reference_dir_without_the_original_code_is_named(tmp_path):
    proc = run_bench(tmp_path)
    assert proc.returncode == 2 and "has no utils.py" in proc.stderr
