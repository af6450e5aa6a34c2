"""The fit loop: one config trained to its best checkpoint, within
``train.epochs``, ``train.patience`` and ``train.max_minutes``, resumable,
on one process or several under torchrun.

The batch in the config is global: each of W processes takes ``batch / W``
windows, and the loss is normalised by a constant (positions x horizons), so
W processes follow the same trajectory as one (to float rounding).
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

import ma_features

from .checkpoint import load_checkpoint, save_checkpoint
from .config import Config, ModelConfig, TrainConfig, config_from_dict
from .data import (
    MirroredWindows,
    RecencySampler,
    Splits,
    WindowDataset,
    balanced_class_weights,
    load_splits,
)
from .distributed import global_batch_losses, setup
from .model import MATransformer
from .optim import adamw, lr_factor
from .step import TrainStep, label_weights, loss_terms, to_device

BEST, LAST = "best.pt", "last.pt"


def model_config(cfg: Config) -> ModelConfig:
    """The model's config with its inputs sized by the data's features and its
    heads by the data's horizons."""
    names = cfg.data.features.names
    if cfg.model.input_dim not in (None, len(names)):
        raise ValueError(f"model.input_dim (input_dim) is {cfg.model.input_dim} but data.features "
                         f"has {len(names)} columns {names}")
    k = len(cfg.data.horizons)
    return replace(cfg.model, input_dim=len(names), num_horizons=k, num_regression=k)


class Progress:
    """A one-line progress display on a terminal; silent elsewhere (logs get
    the per-epoch lines instead)."""

    def __init__(self, total: int, prefix: str, enabled: bool) -> None:
        self.total, self.prefix = total, prefix
        self.enabled = enabled and sys.stderr.isatty()
        self.start = self.last = time.perf_counter()

    def update(self, done: int, loss: torch.Tensor) -> None:
        """``loss`` is read (a wait for the device) only when the line is drawn."""
        now = time.perf_counter()
        if not self.enabled or (now - self.last < 0.2 and done < self.total):
            return
        self.last = now
        width = 24
        fill = width * done // self.total
        rate = done / max(now - self.start, 1e-9)
        sys.stderr.write(f"\r{self.prefix} [{'#' * fill}{'.' * (width - fill)}] {done}/"
                         f"{self.total} loss {float(loss):.4f} {rate:.1f} it/s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def class_weights(cfg: TrainConfig, data: Splits) -> torch.Tensor | None:
    """``[H, 3]`` weights of ``train.class_weight`` from the training labels (None: unweighted)."""
    return balanced_class_weights(data.train.labels) if cfg.class_weight == "balanced" else None


@torch.no_grad()
def validate(model, dataset: WindowDataset, cfg: Config, device, rank: int,
             world: int, weights: torch.Tensor | None = None) -> dict[str, float]:
    """Mean cross-entropy (+ weighted MSE) and accuracy over every defined
    label of ``dataset``; each process takes every W-th window and the sums
    are reduced, so the result is the same for any number of processes.
    ``weights [H, 3]``: the training loss's class weights; the mean is then
    over the weights, so a weighted loss reads on the unweighted one's scale."""
    model.eval()
    sums = torch.zeros(6, dtype=torch.float64, device=device)
    weights = None if weights is None else weights.to(device)
    indices = list(range(rank, len(dataset), world))
    for start in range(0, len(indices), cfg.train.batch_size):
        items = [dataset[i] for i in indices[start:start + cfg.train.batch_size]]
        columns = zip(*items, strict=True)
        x, dt, labels, target, valid = to_device([torch.stack(t) for t in columns], device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits, reg = model(x, dt)
        ce, se = loss_terms(logits, reg, labels, target, valid, weights)
        defined = labels != ma_features.IGNORE_INDEX
        correct = ((logits.argmax(-1) == labels) & defined).sum()
        sums += torch.stack([ce.double(), label_weights(labels, weights).sum().double(),
                             defined.sum().double(), correct.double(), se.double(),
                             valid.sum().double()])
    if world > 1:
        dist.all_reduce(sums)
    ce, weight, n, correct, se, n_reg = sums.tolist()
    model.train()
    ce_mean, mse = ce / max(weight, 1e-12), se / max(n_reg, 1)
    return {"loss": ce_mean + cfg.train.regression_weight * mse, "cross_entropy": ce_mean,
            "mse": mse, "accuracy": correct / max(n, 1)}


def train_epoch(step: TrainStep, loader, progress: Progress | None = None,
                deadline: float | None = None) -> torch.Tensor:
    """One pass over ``loader``, a ``step`` per batch; returns each step's loss
    of the global batch, float64 on the step's device. Nothing here waits for
    the device, so the host issues the next step while the GPU runs this one.
    ``deadline`` (a ``time.monotonic()``): one process stops after the step
    that reaches it, and returns only the steps it ran (several processes
    check it at the end of the epoch, where they agree)."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    losses = torch.empty(len(loader), dtype=torch.float64, device=step.device)
    done = 0
    for i, batch in enumerate(loader):
        losses[i] = step(batch)
        done = i + 1
        if progress is not None:
            progress.update(done, losses[i])
        if deadline is not None and world == 1 and time.monotonic() >= deadline:
            break
    return global_batch_losses(losses[:done], world)


def _budget_spent(deadline: float | None, device: torch.device) -> bool:
    """Whether every process is past ``deadline`` (rank 0's clock decides)."""
    if deadline is None:
        return False
    spent = torch.tensor([time.monotonic() >= deadline], dtype=torch.float32, device=device)
    if dist.is_initialized():
        dist.broadcast(spent, 0)
    return bool(spent.item())


def _with_defaults(saved: dict) -> dict | None:
    """A checkpoint's config with the keys added since it was written at
    their defaults (None if it is no longer a valid config)."""
    try:
        return config_from_dict(saved).to_dict()
    except ValueError:
        return None


def make_train_step(model, optimizer, scheduler, train: TrainConfig, device: torch.device,
                    autocast: bool = True,
                    class_weights: torch.Tensor | None = None) -> TrainStep:
    """The step ``train`` describes: fit's and benchmark_steps' are the same one;
    ``class_weights``: those of :func:`class_weights` for the data."""
    return TrainStep(model, optimizer, scheduler, device=device, class_weights=class_weights,
                     regression_weight=train.regression_weight, grad_clip=train.grad_clip,
                     compile=train.compile, cuda_graph=train.cuda_graph, autocast=autocast)


def fit(cfg: Config, *, data: Splits | None = None, resume: bool = False,
        stop_after_epochs: int | None = None, log=print) -> dict:
    """Trains one config; returns ``{"history", "best_val_loss", "best",
    "epochs_done", "stopped_early"}``.

    ``data``: splits already prepared (else loaded from ``cfg.data``).
    ``resume``: continue from ``<out_dir>/last.pt`` exactly where it ended.
    ``stop_after_epochs``: end this call after that many epochs of the run
    (the schedule still spans ``cfg.train.epochs``), as an interruption would.
    """
    deadline = None if cfg.train.max_minutes is None else \
        time.monotonic() + 60 * cfg.train.max_minutes
    rank, world, device = setup(cfg.train.device)
    if cfg.train.batch_size % world:
        raise ValueError(f"train.batch_size {cfg.train.batch_size} must be divisible by the "
                         f"{world} processes")
    out_dir = Path(cfg.train.out_dir)
    say = log if rank == 0 else (lambda *_: None)
    previous = None
    if resume:
        previous = load_checkpoint(out_dir / LAST)
        if _with_defaults(previous["config"]) != cfg.to_dict():
            raise ValueError(f"{out_dir / LAST} was written by a different config; resume "
                             "needs the same one (or start afresh without --resume)")
    if data is None:
        data = load_splits(cfg.data, previous["normalization"] if previous else None)
    torch.manual_seed(cfg.train.seed)
    model = MATransformer(model_config(cfg)).to(device)
    train_set = WindowDataset(data.train, cfg.data.sequence_length, cfg.train.stride)
    # No validation split: no early stopping, and the last epoch is the best.
    val_set = WindowDataset(data.val, cfg.data.sequence_length, cfg.data.sequence_length) \
        if len(data.val.x) else None
    if cfg.train.mirror > 0:
        train_set = MirroredWindows(train_set, cfg.train.mirror, *data.inputs.mirror())
    per_rank = cfg.train.batch_size // world
    if cfg.train.recency > 1:
        sampler = RecencySampler(train_set, cfg.train.recency, num_replicas=world, rank=rank,
                                 seed=cfg.train.seed)
    else:
        sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True,
                                     seed=cfg.train.seed, drop_last=True)
    loader = DataLoader(train_set, batch_size=per_rank, sampler=sampler, drop_last=True,
                        pin_memory=device.type == "cuda")  # host-to-device copies that don't wait
    if len(loader) == 0:
        raise ValueError(f"{len(train_set)} training windows make no batch of "
                         f"{cfg.train.batch_size}: lower train.batch_size or add data")
    optimizer = adamw(model, cfg.train, device)
    total = cfg.train.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(
        s, cfg.train.warmup_steps, total, cfg.train.min_lr_ratio))
    state = {"epoch": 0, "step": 0, "best_val_loss": float("inf"), "bad_epochs": 0,
             "history": {"train_loss": [], "val_loss": [], "val_accuracy": [], "lr": [],
                         "step_loss": []}}
    if previous is not None:
        model.load_state_dict(previous["model"])
        optimizer.load_state_dict(previous["optimizer"])
        for group in optimizer.param_groups:  # tensor lrs come back on the CPU
            if isinstance(group["lr"], torch.Tensor):
                group["lr"] = group["lr"].to(device)
        scheduler.load_state_dict(previous["scheduler"])
        torch.set_rng_state(previous["rng"]["torch"])
        state = {k: previous[k] for k in state}
        say(f"resumed {out_dir / LAST} after epoch {state['epoch']}, step {state['step']}")
    weights = class_weights(cfg.train, data)
    step = make_train_step(model, optimizer, scheduler, cfg.train, device, class_weights=weights)
    epochs_this_call, budget_spent = 0, False
    while state["epoch"] < cfg.train.epochs and state["bad_epochs"] < cfg.train.patience:
        if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
            break
        if budget_spent:
            say(f"time budget spent: train.max_minutes {cfg.train.max_minutes} after "
                f"{state['epoch']} epochs")
            break
        epoch = state["epoch"]
        sampler.set_epoch(epoch)
        model.train()
        progress = Progress(len(loader), f"epoch {epoch + 1}/{cfg.train.epochs}", rank == 0)
        step_losses = train_epoch(step, loader, progress, deadline)
        progress.close()
        budget_spent = _budget_spent(deadline, device)
        history = state["history"]
        history["step_loss"].extend(step_losses.tolist())
        state["step"] += len(step_losses)
        train_loss = float(step_losses.mean())
        history["train_loss"].append(train_loss)
        history["lr"].append(float(scheduler.get_last_lr()[0]))
        if val_set is None:
            metrics, improved = {}, True
            say(f"epoch {epoch + 1}: train loss {train_loss:.4f}  (no validation split)")
        else:
            metrics = validate(model, val_set, cfg, device, rank, world, weights)
            history["val_loss"].append(metrics["loss"])
            history["val_accuracy"].append(metrics["accuracy"])
            improved = metrics["loss"] < state["best_val_loss"]
            state["best_val_loss"] = min(state["best_val_loss"], metrics["loss"])
            state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
            say(f"epoch {epoch + 1}: train loss {train_loss:.4f}  val loss {metrics['loss']:.4f}"
                f"  val accuracy {metrics['accuracy']:.4f}{'  (best)' if improved else ''}")
        state["epoch"] = epoch + 1
        epochs_this_call += 1
        if rank == 0:
            common = {"model": model.state_dict(), "config": cfg.to_dict(),
                      "normalization": data.normalization_state(),
                      "metrics": metrics, **state}
            if improved:
                save_checkpoint(out_dir / BEST, **common)
            save_checkpoint(out_dir / LAST, **common, optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(),
                            rng={"torch": torch.get_rng_state()})
    finished = (state["epoch"] >= cfg.train.epochs or state["bad_epochs"] >= cfg.train.patience
                or budget_spent)
    if finished and state["bad_epochs"] >= cfg.train.patience:
        say(f"early stop: no lower validation loss for {cfg.train.patience} epochs")
    return {"history": state["history"], "best_val_loss": state["best_val_loss"],
            "best": str(out_dir / BEST), "epochs_done": state["epoch"],
            "stopped_early": state["bad_epochs"] >= cfg.train.patience, "finished": finished,
            "budget_spent": budget_spent}
