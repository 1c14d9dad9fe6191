"""Differentiable unrolls of a student's SGD steps on the synthetic images (MTT's inner loop).

A ``StudentSteps`` fixes everything random about the ``N`` steps up front (each step's image indices and
augmentation parameters), so a step can be replayed exactly. ``plain_unroll`` keeps every step's graph (memory
grows with N); ``bounded_unroll`` keeps only the N + 1 parameter vectors and replays one step at a time in the
backward pass (reverse-mode adjoint), so memory stays at one step's graph plus N parameter copies, whatever N.
Both give the same gradients for the images, the step size, the start parameters and soft labels:

    theta_{t+1} = theta_t - lr * g_t,  g_t = grad of CE(f(theta_t, aug_t(x[idx_t])), y[idx_t]) w.r.t. theta_t
    a_N = dL/dtheta_N;  a_t = a_{t+1} - lr * H_t a_{t+1};  dL/dx += -lr * (dg_t/dx)^T a_{t+1};  dL/dlr += -g_t . a_{t+1}

(``H_t a`` and ``(dg_t/dx)^T a`` are one double-backward of ``g_t . a``; soft labels ``y``, the ``(n, C)`` class
probabilities DATM learns, get ``dL/dy += -lr * (dg_t/dy)^T a_{t+1}`` the same way). Hard labels ``(n,)`` are
class indices and get no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from gdrdd.augment.dsa import DSA, DSAParams
from gdrdd.utils.runtime import scaled_grad


@dataclass
class StudentSteps:
    """The ``N`` steps of one unroll: ``net`` (a module returning ``(features, logits)``, evaluated with
    ``functional_call`` on parameters named ``names``), labels of the images (``(n,)`` class indices or ``(n, C)``
    class probabilities, the targets of the cross-entropy), per-step index batches, and per-step augmentation
    parameters (``None`` without augmentation)."""

    net: nn.Module
    names: list[str]
    labels: torch.Tensor
    batches: list[torch.Tensor]
    augmentations: list[DSAParams | None]
    augment: DSA | None

    @classmethod
    def draw(cls, net: nn.Module, names: list[str], labels: torch.Tensor, batches: list[torch.Tensor],
             augment: DSA | None, size: int) -> "StudentSteps":
        """Draw each step's augmentation parameters now (per sample, in step order)."""
        augmentations = [None if augment is None else augment.sample(len(idx), size, idx.device) for idx in batches]
        return cls(net, names, labels, batches, augmentations, augment)

    def gradient(self, t: int, params: tuple[torch.Tensor, ...], images: torch.Tensor, create_graph: bool,
                 labels: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """``g_t``: the gradient of step ``t``'s cross-entropy w.r.t. ``params`` (against ``labels``, default
        ``self.labels``)."""
        idx = self.batches[t]
        x = images[idx]
        if self.augment is not None:
            x = self.augment.apply(x, self.augmentations[t])
        logits = functional_call(self.net, dict(zip(self.names, params)), (x,))[1]
        targets = (self.labels if labels is None else labels)[idx]
        return scaled_grad(F.cross_entropy(logits, targets), params, create_graph=create_graph)


def plain_unroll(steps: StudentSteps, images: torch.Tensor, lr: torch.Tensor,
                 start: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The N steps with every graph kept (``start`` must require grad)."""
    params = start
    for t in range(len(steps.batches)):
        grads = steps.gradient(t, params, images, create_graph=True)
        params = tuple(p - lr * g for p, g in zip(params, grads))
    return params


def bounded_unroll(steps: StudentSteps, images: torch.Tensor, lr: torch.Tensor,
                   start: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The N steps with memory bounded by one step (see the module docstring); same values and gradients."""
    return _BoundedUnroll.apply(steps, images, steps.labels, lr, *start)


class _BoundedUnroll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, steps: StudentSteps, images: torch.Tensor, labels: torch.Tensor, lr: torch.Tensor,
                *start: torch.Tensor):
        states = [tuple(p.detach() for p in start)]
        for t in range(len(steps.batches)):
            with torch.enable_grad():
                leaves = tuple(p.requires_grad_(True) for p in (q.clone() for q in states[-1]))
                grads = steps.gradient(t, leaves, images.detach(), create_graph=False, labels=labels.detach())
            states.append(tuple(p - lr.detach() * g for p, g in zip(states[-1], grads)))
        ctx.steps, ctx.states = steps, states
        ctx.save_for_backward(images, labels, lr)
        return states[-1]

    @staticmethod
    def backward(ctx, *grad_final: torch.Tensor):
        images, labels, lr = ctx.saved_tensors
        steps, states = ctx.steps, ctx.states
        soft = labels.is_floating_point()
        adjoint = [torch.zeros_like(p) if g is None else g for g, p in zip(grad_final, states[-1])]
        grad_images, grad_lr = torch.zeros_like(images), torch.zeros_like(lr)
        grad_labels = torch.zeros_like(labels) if soft else None
        for t in reversed(range(len(steps.batches))):
            with torch.enable_grad():
                theta = tuple(p.detach().requires_grad_(True) for p in states[t])
                x = images.detach().requires_grad_(True)
                y = labels.detach().requires_grad_(soft)
                grads = steps.gradient(t, theta, x, create_graph=True, labels=y)
                dot = sum((g * a).sum() for g, a in zip(grads, adjoint))
                inputs = (*theta, x, y) if soft else (*theta, x)
                d = torch.autograd.grad(dot, inputs, allow_unused=True, materialize_grads=True)
            d_theta, d_images = d[:len(theta)], d[len(theta)]
            grad_lr = grad_lr - dot.detach()
            grad_images = grad_images - lr.detach() * d_images
            if soft:
                grad_labels = grad_labels - lr.detach() * d[-1]
            adjoint = [a - lr.detach() * h for a, h in zip(adjoint, d_theta)]
        return None, grad_images, grad_labels, grad_lr, *adjoint
