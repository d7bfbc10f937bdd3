"""`sketchkit import-checkpoint`: the reference code's checkpoint -> a sketchkit adapter.

Moved verbatim out of the training module (it converts weights; it does not train).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import WeightsError


@dataclass
class ImportReport:
    """What `import_checkpoint` took from a reference checkpoint and what it left out."""

    source: str
    out: Path
    taken: list[str]  # SketchCLIP parameter names filled from the checkpoint
    ignored: list[str]  # checkpoint keys not representable in an adapter (frozen weights, text tower, ...)
    changed_ignored: list[str]  # ignored keys whose values differ from the backbone's (the reference fine-tuned them)
    kept: list[str]  # trainable names the checkpoint lacks (kept at their initial values)

    def summary(self) -> str:
        lines = [f"took {len(self.taken)} tensors (visual LayerNorms) from {self.source}"]
        if self.ignored:
            lines.append(
                f"ignored {len(self.ignored)} tensors: an adapter holds only LayerNorms, prompts, cross-attention and theta; "
                f"the reference fine-tunes the whole visual encoder, and {len(self.changed_ignored)} of the ignored tensors "
                "differ from this backbone's weights, so the adapter approximates the reference model, it does not reproduce it"
            )
        if self.kept:
            lines.append(f"kept {len(self.kept)} trainable tensors at their initial values (not in the checkpoint): {', '.join(self.kept[:4])}{' ...' if len(self.kept) > 4 else ''}")
        return "\n".join(lines)


def _reference_keys(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """Checkpoint key -> SketchCLIP parameter name ('clip.visual.*'), for the visual keys only.

    Accepts keys of a full CLIP state dict ('visual.…'), of the visual encoder alone (no prefix,
    recognised by 'conv1.weight' / 'class_embedding'), optionally under 'module.' or 'clip.'.
    """
    def strip(key: str) -> str:
        for prefix in ("module.", "clip."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        return key

    stripped = {k: strip(k) for k in state}
    if any(v.startswith("visual.") for v in stripped.values()):
        return {k: f"clip.{v}" for k, v in stripped.items() if v.startswith("visual.")}
    if any(v in ("conv1.weight", "class_embedding") for v in stripped.values()):
        return {k: f"clip.visual.{v}" for k, v in stripped.items()}
    return {}


def import_checkpoint(reference: str | Path, out: str | Path, *, backbone: str = "ViT-B-16", weights: str | None = None,
                      overwrite: bool = False) -> ImportReport:
    """Turn the reference code's full visual-encoder checkpoint (torch.save) into a sketchkit adapter.

    The file is read only with torch.load(weights_only=True) (or as safetensors). Its visual
    LayerNorm weights map onto SketchCLIP's trainable names; everything else is reported as
    ignored. Raises WeightsError when no visual LayerNorm of this backbone is found or shapes differ.
    """
    from ..files import check_output_path
    from .adapter import save_adapter
    from .factory import create_encoder
    from .weights import read_state_dict

    out = check_output_path(out, [reference], overwrite)
    state = read_state_dict(reference)
    model = create_encoder(backbone, weights=weights, device="cpu")
    mapping = _reference_keys(state)
    if not mapping:
        raise WeightsError(f"{reference}: no visual-encoder keys found (expected 'visual.…' keys or a visual state dict with 'conv1.weight')")
    trainable = set(model.trainable_names())
    own = dict(model.named_parameters())
    backbone_state = model.state_dict()
    taken, changed = [], []
    with torch.no_grad():
        for key, name in mapping.items():
            if name in trainable:
                if tuple(state[key].shape) != tuple(own[name].shape):
                    raise WeightsError(f"{reference}: {key} has shape {tuple(state[key].shape)}, {backbone} expects {tuple(own[name].shape)}: pass the matching --backbone")
                own[name].copy_(state[key].to(own[name].dtype))
                taken.append(name)
            elif name in backbone_state and tuple(backbone_state[name].shape) == tuple(state[key].shape):
                if not torch.equal(backbone_state[name].float(), state[key].float()):
                    changed.append(key)
    if not any(".ln" in name or "ln_" in name for name in taken):
        raise WeightsError(f"{reference}: none of its keys are visual LayerNorms of {backbone} (is it a {backbone} checkpoint?)")
    taken_keys = {k for k, n in mapping.items() if n in taken}
    ignored = sorted(k for k in state if k not in taken_keys)
    report = ImportReport(str(reference), out, sorted(taken), ignored, sorted(changed), sorted(trainable - set(taken)))
    save_adapter(model, out, extra={"imported_from": str(reference), "import": {"taken": len(taken), "ignored": len(ignored), "changed_ignored": len(changed)}})
    return report
