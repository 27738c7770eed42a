"""One seed for everything ferroptim draws: ``ferroptim.manual_seed(seed)``.

Two streams follow the seed (as ``torch.manual_seed`` seeds torch's global generator):

* the *initialization* generator, which layers draw their initial weights from when they get
  no ``rng=`` (``numpy.random.default_rng(seed)``, so weights match earlier releases);
* a *spawning* seed sequence (``numpy.random.SeedSequence(seed)``) that gives every
  unseeded generator its own independent stream: a ``Dropout`` layer's masks, a
  ``BatchLoader``'s or an ``Augment`` pipeline's generator, ``fit``'s shuffling, and the
  one-shot augmentation functions called without ``rng=``.

Objects that own such a generator register themselves: ``manual_seed`` reseeds the live ones,
in creation order, so seeding after the model and loaders are built works too. They draw from a
sequence of their own (``SeedSequence([seed, _LIVE])``), so the objects built after the call get
the same streams whatever older objects are still alive: re-running "seed, build, train" in one
process (a notebook cell, a loop over folds) repeats the fresh process's run, as with
``torch.manual_seed``. Objects built with an explicit seed or Generator are never touched.
"""

from __future__ import annotations

import gc
import itertools
import threading
import weakref
from typing import Any

import numpy as np

from ferroptim._checks import check_int

__all__ = ["initial_generator", "manual_seed", "new_generator"]

_lock = threading.Lock()
_initial = np.random.default_rng()
_spawner = np.random.SeedSequence()
_order = itertools.count()
#: creation number -> object whose ``rng`` attribute follows the seed
_followers: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
#: second entropy word of the sequence the objects alive at a ``manual_seed`` call are reseeded from
_LIVE = 0x11FE


def manual_seed(seed: int) -> None:
    """Seed everything ferroptim draws: initial weights, dropout masks, ``BatchLoader`` and
    ``fit`` shuffling, augmentation. Live unseeded generators (dropout layers, loaders,
    augmentation pipelines built before this call) are reseeded in creation order from a
    sequence of their own, so a program repeats its run whether it seeds before or after
    building its objects, and the objects built after the call do not depend on which older
    ones are still alive."""
    global _initial, _spawner
    seed = check_int("seed", seed, low=0)
    gc.collect()  # unreachable followers must not shift the live ones' streams
    with _lock:
        _initial = np.random.default_rng(seed)
        _spawner = np.random.SeedSequence(seed)
        live = np.random.SeedSequence([seed, _LIVE])
        owners = [_followers[k] for k in sorted(_followers.keys())]
        for owner in owners:
            fresh = np.random.default_rng(live.spawn(1)[0])
            owner.rng.bit_generator.state = fresh.bit_generator.state


def initial_generator() -> np.random.Generator:
    """The generator layers draw initial weights from when they get no ``rng=``."""
    return _initial


def new_generator(owner: Any = None) -> np.random.Generator:
    """A generator with its own stream from the spawning sequence. With ``owner`` (an object
    that will keep it as ``owner.rng``), later ``manual_seed`` calls reseed it."""
    with _lock:
        generator = np.random.default_rng(_spawner.spawn(1)[0])
        if owner is not None:
            _followers[next(_order)] = owner
    return generator
