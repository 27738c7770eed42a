"""The ported torch script in examples/torch_port runs and learns (its torch twin needs torch);
the README and docs link only to files in the repository."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "torch_port"


@pytest.fixture
def example_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    yield
    for name in ("train_ferroptim", "data"):
        sys.modules.pop(name, None)


def test_the_ferroptim_port_trains_saves_and_reloads(example_path, tmp_path, capsys) -> None:
    port = importlib.import_module("train_ferroptim")
    accuracy = port.main(epochs=50, path=str(tmp_path / "best.npz"))
    assert accuracy > 0.9  # chance is 0.25
    assert (tmp_path / "best.npz").exists()
    assert "val accuracy" in capsys.readouterr().out


def test_both_versions_are_line_for_line() -> None:
    """Every step of the torch script has its line in the port (same order)."""
    torch_src = (EXAMPLE / "train_torch.py").read_text()
    port_src = (EXAMPLE / "train_ferroptim.py").read_text()
    pairs = [
        ("torch.manual_seed(0)", "fo.manual_seed(0)"),
        ("nn.BatchNorm1d(64)", "fo.nn.BatchNorm1d(64)"),
        ("torch.optim.AdamW(", "fo.optim.AdamW("),
        ("lr_scheduler.StepLR(", "lr_scheduler.StepLR("),
        ("opt.zero_grad()", "opt.zero_grad()"),
        ("loss.backward()", "model.backward(loss_fn.backward())"),
        ("clip_grad_norm_(model.parameters(), 1.0)", "fo.clip.clip_grad_norm_(model, 1.0)"),
        ("opt.step()", "opt.step(model)"),
        ("with torch.no_grad():", "with fo.no_grad():"),
        (".item()", ".item()"),
        ("torch.save(", "fo.save("),
        ("model.load_state_dict(checkpoint", "fo.load(path, model=model"),
    ]
    torch_at = [torch_src.index(t) for t, _ in pairs]
    port_at = [port_src.index(f) for _, f in pairs]
    assert torch_at == sorted(torch_at) and port_at == sorted(port_at)


def test_readme_links_only_to_files_in_the_repository() -> None:
    root = EXAMPLE.parent.parent
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target:
                continue
            assert (doc.parent / target).resolve().exists(), f"{doc.name} links to {target}"
            assert (doc.parent / target).resolve().is_relative_to(root), f"{doc.name}: {target}"
