"""Sequential: modules applied in order; backward runs them in reverse."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from ferroptim.nn.module import Module


class Sequential(Module):
    """``Sequential(m0, m1, ...)`` or ``Sequential(OrderedDict(name=module))``.

    ``forward`` feeds each module's output to the next; ``backward(dy)`` walks them in reverse
    and returns d loss / d input. Children are named ``"0"``, ``"1"``, ... as in torch, so
    parameter names read ``"0.weight"``.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            items = list(modules[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(modules)]
        for name, module in items:
            if not isinstance(module, Module):
                raise TypeError(
                    f"Sequential: item {name!r} must be a Module, got {type(module).__name__}"
                )
            setattr(self, name, module)
        dtypes = {m.dtype for m in self._modules.values() if m._parameters}
        self.dtype = dtypes.pop() if len(dtypes) == 1 else self.dtype

    def append(self, module: Module) -> Sequential:
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append: expected a Module, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int | slice) -> Module:
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        return modules[index]

    def forward(self, x: np.ndarray) -> np.ndarray:
        for module in self._modules.values():
            x = module(x)
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        for module in reversed(self._modules.values()):
            dy = module.backward(dy)
        return dy
