"""train_torch.py ported to ferroptim: the same script, line for line (run by the tests)."""

import ferroptim as fo
from data import make_data


def main(epochs: int = 50, path: str = "best.npz") -> float:
    fo.manual_seed(0)
    X_train, y_train, X_val, y_val = make_data()
    model = fo.nn.Sequential(fo.nn.Linear(20, 64), fo.nn.BatchNorm1d(64), fo.nn.ReLU(),
                             fo.nn.Dropout(0.2), fo.nn.Linear(64, 4))
    loss_fn = fo.nn.CrossEntropyLoss()
    opt = fo.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    sched = fo.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    loader = fo.data.BatchLoader(X_train, y_train, batch_size=64, shuffle=True)

    best, bad, patience = float("inf"), 0, 5
    for _epoch in range(epochs):
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(model(xb), yb)
            model.backward(loss_fn.backward())
            fo.clip.clip_grad_norm_(model, 1.0)
            opt.step(model)
        sched.step()
        model.eval()
        with fo.no_grad():
            val_loss = loss_fn(model(X_val), y_val).item()
        if val_loss < best - 1e-4:
            best, bad = val_loss, 0
            fo.save(path, model=model, optimizer=opt)
        else:
            bad += 1
            if bad >= patience:
                break
    fo.load(path, model=model, optimizer=opt)

    model.eval()
    with fo.no_grad():
        accuracy = float((model(X_val).argmax(1) == y_val).mean())
    print(f"best val_loss {best:.4f}, val accuracy {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    main()
