"""DATM: the start-epoch window, the label initialisation, the soft-label unroll written out as the original
program computes it, the threshold skip, the correctly-classified start, and the run end to end."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from gdrdd.cli import train as run
from gdrdd.errors import ConfigError
from gdrdd.experts import ExpertCache
from gdrdd.experts.trajectory import ExpertSettings, train_expert
from gdrdd.matchers.datm import DifficultyAlignedMatcher, first_correct, initial_label_logits, window_upper
from gdrdd.models import ConvNet
from gdrdd.robust import ByClass

C, IPC, STEPS = 3, 2, 3


def tiny_net():
    return ConvNet(3, C, 16, width=8, depth=2)


@pytest.fixture
def experts(tmp_path):
    """Two experts of 3 epochs, trained on a small random problem the nets can fit."""
    torch.manual_seed(0)
    images, labels = torch.randn(24, 3, 16, 16), torch.arange(C).repeat(8)
    images += 2 * F.one_hot(labels, 3).float()[:, :, None, None]  # the class shifts one channel: learnable
    cache = ExpertCache(tmp_path, "toy", {"test": True})
    for i in range(2):
        cache.save(i, train_expert(tiny_net, images, labels, ExpertSettings(epochs=3, lr=0.05, batch_size=8), seed=i))
    return cache, images, labels


def make_matcher(cache, **options) -> DifficultyAlignedMatcher:
    defaults = dict(syn_steps=STEPS, expert_epochs=1, max_start_epoch=2, lr_student=0.05, lr_lr=1e-3, lr_y=2.0,
                    momentum_y=0.9, threshold=None, min_start_epoch=0, current_max_start_epoch=1,
                    expansion_end_epoch=None)
    return DifficultyAlignedMatcher(tiny_net, cache, **{**defaults, **options})


def test_the_window_grows_linearly_from_current_max_to_max_by_the_expansion_end():
    assert window_upper(0, 10, 20, 1000) == 10          # start of expansion
    assert window_upper(500, 10, 20, 1000) == 15        # middle
    assert window_upper(999, 10, 20, 1000) == 19        # int() floors
    assert window_upper(1000, 10, 20, 1000) == 20       # end
    assert window_upper(5000, 10, 20, 1000) == 20       # and after it
    assert window_upper(0, 10, 20, None) == 20          # no sequential generation: fixed


def test_start_epochs_follow_the_window_at_the_iteration(experts):
    matcher = make_matcher(experts[0], min_start_epoch=1, current_max_start_epoch=2, max_start_epoch=3,
                           expansion_end_epoch=10)
    seen = {}
    for iteration in (0, 5, 10):
        matcher.set_iteration(iteration)
        seen[iteration] = matcher.start_epochs()
    assert seen == {0: (1, 2), 5: (1, 2), 10: (1, 3)}  # 2 + floor(1 * 5 / 10) = 2
    drawn = set()
    snapshots = [(e, t, params) for e in range(2) for t, params in enumerate(experts[0].load(e))]
    for seed in range(40):
        torch.manual_seed(seed)
        matcher.start_iteration("cpu")
        drawn |= {t for _, t, params in snapshots
                  if all(torch.equal(matcher.start[f"net.{k}"], v) for k, v in params.items())}
    assert drawn == {1, 2}  # at iteration 10 both start epochs of [1, 3) occur, never 0


def test_labels_start_as_the_mean_logits_of_the_experts_that_classify_each_image_correctly(experts):
    cache, images, labels = experts
    synthetic, classes = images[:6], labels[:6]
    matcher = make_matcher(cache)
    matcher.initialise_labels(synthetic, classes)
    by_hand = []
    for i in range(len(synthetic)):  # the original's rule, image by image
        logits = []
        for e in range(cache.count()):
            net = tiny_net()
            net.load_state_dict({**net.state_dict(), **cache.load(e)[-1]})
            logits.append(net(synthetic[i:i + 1])[0].detach())
        correct = [z for z in logits if int(z.argmax()) == int(classes[i])]
        by_hand.append(torch.stack(correct).mean(0) if correct else torch.stack(logits).mean(0))
    assert torch.allclose(matcher.learned_labels, torch.stack(by_hand), atol=1e-5)


def test_label_mean_skips_wrong_experts_and_falls_back_to_all():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]],     # expert 0: image 0 -> class 0, image 1 -> class 1
                           [[0.0, 3.0], [5.0, 0.0]]])    # expert 1: image 0 -> class 1, image 1 -> class 0
    labels = torch.tensor([0, 1])
    assert torch.equal(initial_label_logits(logits, labels), torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    swapped = torch.tensor([1, 0])  # now expert 1 alone is right on both
    assert torch.equal(initial_label_logits(logits, swapped), torch.tensor([[0.0, 3.0], [5.0, 0.0]]))
    none_right = initial_label_logits(logits[:1], torch.tensor([1, 0]))
    assert torch.equal(none_right, logits[0])  # no expert right: the mean of all (here the one)


def test_first_correct_walks_the_order_then_the_next_expert_then_fills():
    order = torch.tensor([4, 2, 0, 3, 1])
    first = torch.tensor([1, 0, 1, 0, 1])   # images 0, 2, 4 predicted class 1
    second = torch.tensor([0, 1, 0, 1, 0])  # images 1, 3
    assert first_correct(order, [first, second], 1, 2).tolist() == [4, 2]
    assert first_correct(order, [first, second], 1, 4).tolist() == [4, 2, 0, 3]  # the next expert's, in order
    assert first_correct(order, [first], 0, 3).tolist() == [3, 1, 4]  # 3 and 1 correct, then the order's rest


def test_correct_start_images_are_classified_correctly_by_expert_zero(experts):
    cache, images, labels = experts
    matcher = make_matcher(cache)
    torch.manual_seed(3)
    chosen = matcher.correctly_classified([images[labels == c] for c in range(C)], 2)
    assert chosen.shape == (C, 2, 3, 16, 16)
    predicted = matcher.last_epoch_logits(0, chosen.flatten(0, 1)).argmax(1)
    assert torch.equal(predicted, torch.arange(C).repeat_interleave(2))


def datm_iteration_by_hand(trajectory, start_epoch, images, label_logits, lr, steps):
    """DATM's update written out as its program does it: the flattened parameters, ``steps`` SGD steps on the soft
    cross-entropy sum(-log_softmax(out) * softmax(y)) / batch over all images, the MSE-sum distance divided by the
    number of parameters, over the start's; returns the loss."""
    net = tiny_net()
    names = [n for n, _ in net.named_parameters()]
    shapes = [trajectory[0][n].shape for n in names]
    flat = lambda params: torch.cat([params[n].reshape(-1) for n in names])  # noqa: E731
    num_params = sum(s.numel() for s in shapes)

    def unflatten(vector):
        out, at = {}, 0
        for n, s in zip(names, shapes):
            out[n] = vector[at:at + s.numel()].view(s)
            at += s.numel()
        return out

    start, target = flat(trajectory[start_epoch]), flat(trajectory[start_epoch + 1])
    student = [start.clone().requires_grad_(True)]
    for _ in range(steps):
        out = functional_call(net, unflatten(student[-1]), (images,))
        ce = torch.sum(-F.log_softmax(out, dim=1) * F.softmax(label_logits, dim=1)) / len(images)
        grad = torch.autograd.grad(ce, student[-1], create_graph=True)[0]
        student.append(student[-1] - lr * grad)
    loss = F.mse_loss(student[-1], target, reduction="sum") / num_params
    return loss / (F.mse_loss(start, target, reduction="sum") / num_params)


@pytest.mark.parametrize("checkpoint", [False, True])
def test_the_soft_label_unroll_equals_the_original_update_written_out(experts, checkpoint):
    cache, images, labels = experts
    matcher = make_matcher(cache, checkpoint=checkpoint)
    synthetic = images[:C * IPC].clone().view(C, IPC, 3, 16, 16).requires_grad_(True)
    matcher.initialise_labels(synthetic.detach().flatten(0, 1), torch.arange(C).repeat_interleave(IPC))
    trajectory = cache.load(1)
    matcher.set_segment(trajectory[1], trajectory[2])
    loss = matcher.group_losses(None, synthetic, ByClass()).base
    loss.backward()

    x = synthetic.detach().flatten(0, 1).clone().requires_grad_(True)
    y = matcher.learned_labels.clone().requires_grad_(True)
    lr = torch.tensor(0.05, requires_grad=True)
    reference = datm_iteration_by_hand(trajectory, 1, x, y, lr, STEPS)
    reference.backward()
    assert float(loss) == pytest.approx(float(reference), rel=1e-5)
    assert torch.allclose(synthetic.grad.flatten(0, 1), x.grad, rtol=1e-4, atol=1e-7)
    assert torch.allclose(matcher.label_logits.grad, y.grad, rtol=1e-4, atol=1e-8)
    assert float(matcher.syn_lr.grad) == pytest.approx(float(lr.grad), rel=1e-4)
    assert matcher.label_logits.grad.abs().sum() > 0


def test_labels_have_their_own_learning_rate_and_momentum(experts):
    matcher = make_matcher(experts[0], lr_y=7.0, momentum_y=0.8)
    matcher.initialise_labels(experts[1][:6], experts[2][:6])
    groups = matcher.param_groups()
    assert groups[-1]["params"][0] is matcher.label_logits and groups[-1]["lr"] == 7.0
    assert groups[-1]["momentum"] == 0.8
    assert bool(make_matcher(experts[0], threshold=1.0).accepts(torch.tensor(1.0)))
    assert not bool(make_matcher(experts[0], threshold=1.0).accepts(torch.tensor(1.01)))


EXPERTS = ["task=experts", "experts.num=2", "experts.epochs=3", "experts.augment=none", "model.width=8"]
DATM = ["method.syn_steps=2", "method.expert_epochs=1", "method.max_start_epoch=3",
        "method.current_max_start_epoch=1", "method.expansion_end_epoch=2", "experts.epochs=3",
        "experts.augment=none", "model.width=8", "method.batch_syn=null", "eval.baseline=false",
        "eval.coverage=false", "cvar=none"]


def test_datm_end_to_end_saves_logits_and_a_threshold_skip_changes_nothing(tmp_path, tiny):
    cache = f"paths.cache_dir={tmp_path / 'cache'}"
    run(tiny(*EXPERTS, cache, method="mtt", out=tmp_path / "experts"))
    run(tiny(*DATM, cache, "iterations=0", method="datm", out=tmp_path / "start"))
    run(tiny(*DATM, cache, "iterations=2", "method.threshold=1e-9", method="datm", out=tmp_path / "skipped"))
    run(tiny(*DATM, cache, "iterations=2", method="datm", out=tmp_path / "taken"))
    start, skipped, taken = (torch.load(tmp_path / n / "distilled.pt", weights_only=True)
                             for n in ("start", "skipped", "taken"))
    assert start["label_kind"] == "logits" and start["labels"].shape == (20, 10)
    for key in ("images", "labels", "learned_lr"):
        assert torch.equal(torch.as_tensor(skipped[key]), torch.as_tensor(start[key]))  # nothing moved
        assert not torch.equal(torch.as_tensor(taken[key]), torch.as_tensor(start[key]))
    log = (tmp_path / "skipped" / "csv" / "metrics.csv").read_text()
    assert "distill/skipped_threshold" in log.splitlines()[0]


def test_datm_only_options_are_refused_elsewhere_and_multi_formation_is_refused(tmp_path, tiny):
    with pytest.raises(ConfigError, match="method.init"):
        run(tiny("method.init=correct", out=tmp_path / "dm"))
    with pytest.raises(ConfigError, match="method.factor"):
        run(tiny(*DATM, "method.factor=2", method="datm", out=tmp_path / "f"))
    with pytest.raises(ConfigError, match="min_start_epoch"):
        run(tiny(*DATM, "method.min_start_epoch=1", method="datm", out=tmp_path / "w"))
