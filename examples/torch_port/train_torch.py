"""The PyTorch script that train_ferroptim.py ports line by line (needs torch; not run in tests)."""

import torch
from data import make_data
from torch import nn


def main(epochs: int = 50, path: str = "best.pt") -> float:
    torch.manual_seed(0)
    X_train, y_train, X_val, y_val = map(torch.as_tensor, make_data())
    model = nn.Sequential(nn.Linear(20, 64), nn.BatchNorm1d(64), nn.ReLU(),
                          nn.Dropout(0.2), nn.Linear(64, 4))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X_train, y_train), batch_size=64, shuffle=True)
    best, bad, patience = float("inf"), 0, 5
    for _epoch in range(epochs):
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            val_loss = loss_fn(model(X_val), y_val).item()
        if val_loss < best - 1e-4:
            best, bad = val_loss, 0
            torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, path)
        else:
            bad += 1
            if bad >= patience:
                break
    checkpoint = torch.load(path)
    model.load_state_dict(checkpoint["model"])
    model.eval()
    with torch.no_grad():
        accuracy = (model(X_val).argmax(1) == y_val).float().mean().item()
    print(f"best val_loss {best:.4f}, val accuracy {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    main()
