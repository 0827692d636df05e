"""The training loop every recipe shares: LoRA model, AdamW, checkpoints, resume, logging, card.

Reproducibility: the batch order is a pure function of (seed, epoch) and the
random state (masking, dropout) is reseeded from (seed, step) before every
step, so a run resumed from a checkpoint replays exactly what the
uninterrupted run would have done: same batches, same masks, same dropout,
and (on the same hardware and thread count) the same final weights.

Checkpoints (``<output>/checkpoints/step-NNNNNN/``): the LoRA weights and the
AdamW moments as safetensors, the step and the history as JSON. No pickle.
A checkpoint is written to a temporary folder and renamed into place, so a
kill mid-write never leaves a half checkpoint that ``--resume`` would trust.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import LLM2VecError
from ..runtime import quiet_transformers
from .config import RESUME_FREE, TrainConfig

CHECKPOINTS = "checkpoints"
RUN_CONFIG = "run_config.json"
CARD_JSON = "training_card.json"
LOG_FILE = "train_log.jsonl"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
OPTIMIZER_WEIGHTS = "optimizer.safetensors"
STATE_FILE = "state.json"


class TrainingError(LLM2VecError):
    """A training run that cannot start or continue (existing output, incompatible resume, ...)."""


# --------------------------------------------------------------------------- model
@dataclass
class TrainingModel:
    """What a recipe trains: a peft-wrapped bidirectional base transformer (saved adapters match
    ``AutoModel``, as the encoder loads it), its tokenizer, and for MNTP the frozen LM head."""

    model: torch.nn.Module  # peft model around the base transformer
    tokenizer: Any
    device: torch.device
    lm_head: torch.nn.Module | None = None
    base_description: dict[str, Any] = field(default_factory=dict)


def set_attention_dropout(model: torch.nn.Module, p: float) -> int:
    """Set attention dropout on the config and on every attention module (they copy it at init).

    Returns how many modules were changed; raises if none reads it.
    """
    changed = 0
    for cfg in (model.config, getattr(model.config, "text_config", None)):
        if cfg is not None and hasattr(cfg, "attention_dropout"):
            cfg.attention_dropout = p
    for module in model.modules():
        if isinstance(getattr(module, "attention_dropout", None), float) and hasattr(module, "is_causal"):
            module.attention_dropout = p
            changed += 1
    if changed == 0:
        raise TrainingError(f"{model.config.model_type}: no attention module with an attention_dropout setting")
    return changed


def load_training_model(config: TrainConfig, with_lm_head: bool = False,
                        attention_dropout: float | None = None) -> TrainingModel:
    """Load the base model (fp32), merge ``config.adapters``, make it bidirectional, add a fresh LoRA."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    from .. import bidirectional as bidi
    from ..adapters import apply_adapters
    from ..resolve import resolve_model
    from ..runtime import resolve_device

    resolved = resolve_model(config.model)
    device = resolve_device(config.device)
    # frozen base weights in bf16 when autocast is on (faster, half the memory); LoRA stays fp32
    dtype = torch.bfloat16 if use_bf16(config, device) else torch.float32
    adapters = [*resolved.adapters, *[Path(a) for a in config.adapters]]
    lm_head = None
    with quiet_transformers():
        if with_lm_head:
            from transformers import AutoModelForCausalLM

            try:
                causal, info = AutoModelForCausalLM.from_pretrained(
                    resolved.source, dtype=dtype, output_loading_info=True)
            except (OSError, ValueError) as exc:
                raise TrainingError(f"cannot load {config.model} as a causal LM (MNTP needs its LM head): {exc}") from None
            if any(k.endswith("lm_head.weight") for k in info.get("missing_keys", [])):
                raise TrainingError(f"{config.model} has no LM head weights: MNTP needs a causal-LM checkpoint")
            tokenizer = AutoTokenizer.from_pretrained(resolved.source)
            base = causal.get_decoder() if hasattr(causal, "get_decoder") else causal.model
            lm_head = causal.get_output_embeddings()
            lm_head.requires_grad_(False)
        else:
            from ..loading import load_base

            base, tokenizer = load_base(resolved, dtype)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if adapters:
        base = apply_adapters(base, adapters, merge_last=True)
    if not bidi.is_native_bidirectional(base):
        bidi.set_bidirectional(base, True)
    if attention_dropout is not None:
        set_attention_dropout(base, attention_dropout)
    names = {name.rsplit(".", 1)[-1] for name, _ in base.named_modules()}
    targets = [t for t in config.targets() if t in names]
    if not targets:
        raise TrainingError(f"none of the LoRA targets {config.targets()} is a module of {config.model}")
    base.requires_grad_(False)
    torch.manual_seed(config.seed)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, bias="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' is_gradient_checkpointing rename
        model = get_peft_model(base, lora)
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.to(device)
    if lm_head is not None:
        lm_head.to(device)
    return TrainingModel(
        model=model, tokenizer=tokenizer, device=device, lm_head=lm_head,
        base_description={
            "model": config.model, "source_kind": resolved.kind, "model_type": base.config.model_type,
            "merged_adapters": [str(a) for a in adapters], "lora_targets": targets,
        },
    )


def use_bf16(config: TrainConfig, device: torch.device) -> bool:
    if config.bf16 == "on":
        return True
    if config.bf16 == "off":
        return False
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    from ..runtime import cpu_has_fast_bf16

    return device.type == "cpu" and cpu_has_fast_bf16()


# --------------------------------------------------------------------------- optimizer state as safetensors
def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    flat = {}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            flat[f"{index}.{key}"] = tensor.detach().cpu().contiguous()
    return flat


def _load_optimizer_tensors(optimizer: torch.optim.Optimizer, flat: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in flat.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


# --------------------------------------------------------------------------- the loop
StepLoss = Callable[[int], torch.Tensor]  # global micro-batch index -> loss (gradients flow, or done: see Trainer)
Evaluate = Callable[[], dict[str, float]]


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then linear decay to 0 at ``total``."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    remaining = max(1, total - warmup)
    return peak * max(0.0, (total - step) / remaining)


class Trainer:
    """Run ``step_loss`` for ``total_steps`` optimizer steps with checkpoints, resume, logs and a card."""

    def __init__(
        self,
        config: TrainConfig,
        tm: TrainingModel,
        step_loss: StepLoss,
        total_steps: int,
        examples_per_step: int,
        data_summary: dict[str, Any],
        evaluate: Evaluate | None = None,
        log: Callable[[str], None] | None = None,
        backward_in_step: bool = False,
    ) -> None:
        """``backward_in_step``: ``step_loss`` backpropagates itself (gradient caching), weighting its
        gradients by ``1 / grad_accum``, and returns the loss detached."""
        self.backward_in_step = backward_in_step
        self.config = config
        self.tm = tm
        self.step_loss = step_loss
        self.total = total_steps
        self.examples_per_step = examples_per_step
        self.data_summary = data_summary
        self.evaluate = evaluate
        self.out = Path(config.output_dir).expanduser()
        self.log = log or (lambda m: None)
        self.params = [p for p in tm.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.history: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.start_step = 0

    # ---------------------------------------------------------------- checkpoints
    def _checkpoint_dirs(self) -> list[tuple[int, Path]]:
        root = self.out / CHECKPOINTS
        found = []
        if root.is_dir():
            for path in root.iterdir():
                if path.name.startswith("step-") and not path.name.endswith(".tmp") and (path / STATE_FILE).is_file():
                    try:
                        found.append((int(path.name[5:]), path))
                    except ValueError:
                        continue
        return sorted(found)

    def save_checkpoint(self, step: int) -> Path:
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        root = self.out / CHECKPOINTS
        final = root / f"step-{step:06d}"
        tmp = root / f"step-{step:06d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        lora = {k: v.detach().float().cpu().contiguous() for k, v in get_peft_model_state_dict(self.tm.model).items()}
        save_file(lora, str(tmp / ADAPTER_WEIGHTS))
        save_file(_optimizer_tensors(self.optimizer), str(tmp / OPTIMIZER_WEIGHTS))
        state = {"step": step, "total_steps": self.total, "train_seconds": self.train_seconds,
                 "history": self.history, "evals": self.evals}
        (tmp / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for _, old in self._checkpoint_dirs()[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def _restore(self) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        found = self._checkpoint_dirs()
        if not found:
            self.log(f"no checkpoint in {self.out / CHECKPOINTS}: starting from step 0")
            return
        step, path = found[-1]
        try:
            state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
            lora = load_file(str(path / ADAPTER_WEIGHTS))
            optim = load_file(str(path / OPTIMIZER_WEIGHTS))
        except Exception as exc:  # a damaged checkpoint: say which
            raise TrainingError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
        device = self.tm.device
        result = set_peft_model_state_dict(self.tm.model, {k: v.to(device) for k, v in lora.items()})
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise TrainingError(f"checkpoint {path} does not match the model (unexpected keys, e.g. {unexpected[0]})")
        _load_optimizer_tensors(self.optimizer, {k: v.to(device) for k, v in optim.items()})
        self.start_step = int(state["step"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.history = list(state.get("history", []))
        self.evals = list(state.get("evals", []))
        self.log(f"resuming from {path} (step {self.start_step} of {self.total})")

    def _check_run_config(self) -> None:
        path = self.out / RUN_CONFIG
        mine = {**self.config.to_dict(), "merged_adapters": self.tm.base_description.get("merged_adapters", [])}
        if self.config.resume and path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            # a setting added to the recipe after the run started counts as its default there
            defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
                        for f in dataclasses.fields(self.config)}
            saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
            diff = [k for k in sorted(set(saved) | set(mine)) if k not in RESUME_FREE and saved.get(k) != mine.get(k)]
            if diff:
                shown = ", ".join(f"{k}: {saved.get(k)!r} -> {mine.get(k)!r}" for k in diff[:4])
                raise TrainingError(f"--resume with settings that change what is trained ({shown}); "
                                    f"use the original settings or a new --output-dir")
        elif not self.config.resume and (self._checkpoint_dirs() or (self.out / ADAPTER_WEIGHTS).is_file()):
            raise TrainingError(f"{self.out} already holds a training run; pass --resume to continue it "
                                f"or choose another --output-dir")
        self.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(mine, indent=1), encoding="utf-8")

    # ---------------------------------------------------------------- running
    def _run_eval(self, step: int) -> dict[str, Any] | None:
        if self.evaluate is None:
            return None
        model = self.tm.model
        was_training = model.training
        start = time.perf_counter()
        try:
            figures = self.evaluate()
        finally:
            model.train(was_training)
        entry = {"step": step, **figures, "eval_seconds": round(time.perf_counter() - start, 1)}
        self.evals = [e for e in self.evals if e["step"] != step] + [entry]
        self.log(f"eval at step {step}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
        return entry

    def train(self) -> dict[str, Any]:
        config = self.config
        self._check_run_config()
        if (self.out / ADAPTER_WEIGHTS).is_file() and (self.out / CARD_JSON).is_file() and config.resume:
            card = json.loads((self.out / CARD_JSON).read_text(encoding="utf-8"))
            if card.get("steps") == self.total:
                self.log(f"{self.out} is already trained ({self.total} steps); nothing to do")
                return card
        if config.resume:
            self._restore()
        if self.start_step > self.total:
            raise TrainingError(f"checkpoint is at step {self.start_step}, beyond the {self.total} steps asked for")
        model = self.tm.model
        model.train()
        bf16 = use_bf16(config, self.tm.device)
        progress = None
        if not config.quiet:
            from tqdm.auto import tqdm

            progress = tqdm(total=self.total, initial=self.start_step, desc=config.recipe, unit="step",
                            file=sys.stderr, dynamic_ncols=True)
        self._trim_log(self.start_step)
        if config.eval_at_start and self.start_step == 0 and not any(e["step"] == 0 for e in self.evals):
            self._run_eval(0)
        session_start, session_seconds = self.start_step, 0.0
        recent: list[float] = []
        window_start, window_steps = time.perf_counter(), 0
        completed = self.start_step
        try:
            for step in range(self.start_step, self.total):
                started = time.perf_counter()
                torch.manual_seed(config.seed * 1_000_003 + step)  # dropout noise: a function of the step
                lr = lr_at(step, self.total, config.learning_rate, config.warmup_steps)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                self.optimizer.zero_grad(set_to_none=True)
                total_loss = 0.0
                for micro in range(config.grad_accum):
                    with torch.autocast(self.tm.device.type, dtype=torch.bfloat16, enabled=bf16):
                        loss = self.step_loss(step * config.grad_accum + micro)
                    if not torch.isfinite(loss):
                        raise TrainingError(f"loss is {loss.item()} at step {step + 1}; lower --lr or check the data")
                    if not self.backward_in_step:
                        (loss / config.grad_accum).backward()
                    total_loss += float(loss.detach()) / config.grad_accum
                if config.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.params, config.max_grad_norm)
                self.optimizer.step()
                completed = step + 1
                self.train_seconds += time.perf_counter() - started
                session_seconds += time.perf_counter() - started
                done = step + 1
                recent.append(total_loss)
                window_steps += 1
                elapsed = time.perf_counter() - window_start
                rate = window_steps * self.examples_per_step / max(elapsed, 1e-9)
                if progress is not None:
                    progress.set_postfix(loss=f"{total_loss:.4f}", lr=f"{lr:.2e}", ex_s=f"{rate:.2f}", refresh=False)
                    progress.update(1)
                if done % max(1, config.log_every) == 0 or done == self.total:
                    per_step = session_seconds / max(1, done - session_start)
                    entry = {"step": done, "loss": round(sum(recent) / len(recent), 5), "lr": lr,
                             "examples_per_s": round(rate, 2), "train_seconds": round(self.train_seconds, 1),
                             "eta_s": round(per_step * (self.total - done))}
                    self.history.append(entry)
                    with open(self.out / LOG_FILE, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(entry) + "\n")
                    recent = []
                    window_start, window_steps = time.perf_counter(), 0
                if config.eval_every and done % config.eval_every == 0 and done < self.total:
                    self._run_eval(done)
                    window_start, window_steps = time.perf_counter(), 0
                if config.save_every and done % config.save_every == 0 and done < self.total:
                    self.save_checkpoint(done)
        except KeyboardInterrupt:
            if progress is not None:
                progress.close()
            if completed > self.start_step:
                path = self.save_checkpoint(completed)
                # said even under --quiet: the user needs to know the run can be continued
                print(f"stopped at step {completed}; checkpoint {path}; continue with --resume", file=sys.stderr)
            raise
        if progress is not None:
            progress.close()
        if config.eval_data or config.eval_every:
            self._run_eval(self.total)
        self.save_checkpoint(self.total)
        return self._write_adapter()

    def _trim_log(self, step: int) -> None:
        """Keep log lines up to ``step`` (a resumed run rewrites what the killed one logged after it)."""
        path = self.out / LOG_FILE
        if not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except ValueError:
                continue
        path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")

    # ---------------------------------------------------------------- output
    def _write_adapter(self) -> dict[str, Any]:
        model = self.tm.model
        with quiet_transformers():
            model.save_pretrained(str(self.out), safe_serialization=True)
        # peft records the base's path; name what the user gave instead
        cfg_path = self.out / "adapter_config.json"
        adapter_cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        adapter_cfg["base_model_name_or_path"] = self.config.model
        cfg_path.write_text(json.dumps(adapter_cfg, indent=2), encoding="utf-8")
        tail = [h["loss"] for h in self.history[-max(1, len(self.history) // 10):]]
        card = {
            "format": "llm2vec-rag adapter card v1",
            "recipe": self.config.recipe,
            "base_model": self.config.model,
            "base": self.tm.base_description,
            "load_with": {"model": self.config.model,
                          "adapters": [*self.config.adapters, str(self.out)]},
            "steps": self.total,
            "examples_per_step": self.examples_per_step,
            "examples_seen": self.total * self.examples_per_step,
            "train_seconds": round(self.train_seconds, 1),
            "final_loss": round(sum(tail) / len(tail), 5) if tail else None,
            "first_loss": self.history[0]["loss"] if self.history else None,
            "data": self.data_summary,
            "evals": self.evals,
            "config": self.config.to_dict(),
            "torch": torch.__version__,
        }
        (self.out / CARD_JSON).write_text(json.dumps(card, indent=1), encoding="utf-8")
        (self.out / "README.md").write_text(render_card(card), encoding="utf-8")
        return card


def render_card(card: dict[str, Any]) -> str:
    cfg = card["config"]
    stack = card["base"].get("merged_adapters") or []
    adapters = ", ".join(repr(a) for a in [*cfg.get("adapters", []), "<this directory>"])
    lines = [
        f"# LLM2Vec {card['recipe']} LoRA adapter",
        "",
        f"- Base model: `{card['base_model']}` ({card['base'].get('model_type')})"
        + (f", with adapters merged first: {', '.join(f'`{a}`' for a in stack)}" if stack else ""),
        f"- Recipe: {card['recipe']}; LoRA r={cfg['lora_r']}, alpha={cfg['lora_alpha']}, dropout={cfg['lora_dropout']} "
        f"on {', '.join(card['base'].get('lora_targets', []))}",
        f"- Data: `{card['data'].get('path')}` ({', '.join(f'{k}={v}' for k, v in card['data'].items() if k != 'path')})",
        f"- Steps: {card['steps']} x {card['examples_per_step']} examples "
        f"(batch {cfg['batch_size']} x accumulation {cfg['grad_accum']}), max length {cfg['max_length']}, "
        f"lr {cfg['learning_rate']}, warm-up {cfg['warmup_steps']}, seed {cfg['seed']}",
        f"- Training time: {card['train_seconds']} s",
        f"- Loss: {card['first_loss']} (first logged) -> {card['final_loss']} (last 10% of logged steps)",
    ]
    for e in card.get("evals", []):
        figures = ", ".join(f"{k} {v}" for k, v in e.items() if k not in ("step", "eval_seconds"))
        lines.append(f"- Evaluation at step {e['step']}: {figures}")
    lines += [
        "",
        "Load it (adapters stack in order; all but the last are merged):",
        "",
        "```python",
        "from llm2vec_rag import LLM2Vec",
        f"encoder = LLM2Vec.from_pretrained({card['base_model']!r}, adapters=[{adapters}])",
        "```",
        "",
        f"Full settings and the loss history: `{CARD_JSON}`, `{LOG_FILE}`.",
        "",
    ]
    return "\n".join(lines)


def total_steps(config: TrainConfig, examples: int, per_example_batch: int) -> int:
    """``--steps``, else ``--epochs`` over ``examples`` in batches of ``per_example_batch * grad_accum``."""
    if config.steps:
        return config.steps
    per_step = per_example_batch * config.grad_accum
    steps = math.floor(config.epochs * (examples // per_example_batch) / config.grad_accum)
    if steps < 1:
        raise TrainingError(f"{examples} examples make no full step of {per_step}; lower --batch-size")
    return steps
