"""Lossless import of a reference checkpoint, and the file format it writes.

A reference checkpoint is what the official `train.py` saves (line 103, `torch.save(model.state_dict())`,
keys optionally `module.`-prefixed): the whole fine-tuned CLIP plus prompts and cross-attention
layers. It is read only with `torch.load(weights_only=True)` (`weights.read_state_dict`): a file that
needs any pickled object besides tensors is refused before anything in it runs.

Every tensor of the checkpoint ends in exactly one of four groups (`ImportReport`):

- carried:       stored in the output, because no base tensor holds its value: the fine-tuned
                 visual tower, the prompt embeddings, the cross-attention that test.py runs
                 (`visual.transformer.ca.text_projection`, `...ca.encoder.layer2.0.*`), and any
                 text-tower tensor that differs from the base;
- equal to base: bitwise equal (as float32) to the base tensor of the same name, so the base
                 supplies it (the text tower, which the reference freezes, and the `attn.qkv` /
                 `attn.proj` of blocks 7-12, which train.py's optimizer never sees);
- alias:         `visual.attn.*`, the second name the reference's surgery gives block 7's attention
                 (same storage in the model; checked equal);
- unused:        never read by the reference's inference, with the reason (`UNUSED_REASONS`):
                 the cross-attention's `layers.0` and `layer1.0`, the text transformer's `transformer.ca.*`,
                 and `logit_scale` when it differs from the base.

Checkpoint names map to sketchkit's (`encoder.clip.*` open_clip names, `encoder.prompts`,
`cross_attention.*`): blocks' `attn.qkv.{weight,bias}` -> `attn.in_proj_{weight,bias}` and
`attn.proj.*` -> `attn.out_proj.*` (the reference's surgery copies those, our_model.py 412-420);
`visual.prompt_embeddings` (1, P, W) -> `encoder.prompts` (P, W).

The output is a safetensors file holding only the carried tensors, each in float16 when float16
holds its float32 value exactly, else float32 (nothing is rounded), with the adapter metadata key
(`adapter.ADAPTER_KEY`): origin "reference", the base weights' fingerprint, sizes and the import
counts; a sidecar `.json` repeats that config for people. `load_reference_model` rebuilds the model
from it and the same base weights, and refuses other base weights.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import __version__
from ..errors import WeightsError
from . import openclip_seam as seam
from .adapter import ADAPTER_KEY, read_adapter, read_adapter_config
from . import DEFAULT_BACKBONE
from .reference import CA_HEADS, DUAL_BLOCKS, ReferenceModel, ReferenceSizes, reference_sizes
from .weights import fingerprint, read_state_dict, state_bytes, weights_cap

ORIGIN = "reference"
REFERENCE_FORMAT = 1
REFERENCE_COMMIT = "af751b14363211ebde2a920505ed1642e9b846ad"

_CA = "visual.transformer.ca."
_CA_USED = _CA + "encoder.layer2.0."
UNUSED_REASONS = {
    _CA + "encoder.layers.0.": "cross-attention layer `layers.0`: ca.py Encoder.forward (67-75) iterates only layer1 and "
                               "layer2, so `layers` is never called",
    _CA + "encoder.layer1.0.": "cross-attention layer `layer1.0`: ca.py Encoder.forward calls only layer2 (the layer1 call "
                               "is commented out, line 71)",
    "transformer.ca.": "the text transformer's cross-attention: encode_text returns at block 12 before it "
                       "(our_model.py 315-317)",
    "logit_scale": "logit_scale: test.py's scoring uses no logit scale",
}
_ATTN_RENAMES = {"attn.qkv.weight": "attn.in_proj_weight", "attn.qkv.bias": "attn.in_proj_bias",
                 "attn.proj.weight": "attn.out_proj.weight", "attn.proj.bias": "attn.out_proj.bias"}
_BLOCK_ATTN = re.compile(r"^(visual\.transformer\.resblocks\.\d+\.)(attn\.(?:qkv|proj)\.(?:weight|bias))$")


@dataclass
class ImportReport:
    """What `import_checkpoint` did with each checkpoint tensor (keys without `module.`).

    carried:       checkpoint key -> sketchkit parameter name, stored in `out`.
    equal_to_base: checkpoint key -> base key whose value it equals (not stored).
    aliases:       checkpoint key -> the checkpoint key it repeats (same values; stored once).
    unused:        checkpoint key -> why the reference's inference never reads it (not stored).
    fp16 / fp32:   carried tensors stored as float16 (exact) / float32.
    """

    source: str
    out: Path
    carried: dict[str, str] = field(default_factory=dict)
    equal_to_base: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    unused: dict[str, str] = field(default_factory=dict)
    fp16: int = 0
    fp32: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    sizes: ReferenceSizes | None = None

    @property
    def total(self) -> int:
        return len(self.carried) + len(self.equal_to_base) + len(self.aliases) + len(self.unused)

    def counts(self) -> dict[str, int]:
        return {"tensors": self.total, "carried": len(self.carried), "equal_to_base": len(self.equal_to_base),
                "aliases": len(self.aliases), "unused": len(self.unused), "fp16": self.fp16, "fp32": self.fp32}

    def summary(self) -> str:
        lines = [
            f"imported {self.total} tensors from {self.source} into {self.out} ({self.bytes_written / 2**20:.1f} MiB, "
            f"{self.seconds:.1f} s):",
            f"  carried        {len(self.carried):4d}  stored ({self.fp16} exactly as float16, {self.fp32} as float32)",
            f"  equal to base  {len(self.equal_to_base):4d}  bitwise equal to the base weights, which supply them",
        ]
        if self.aliases:
            lines.append(f"  aliases        {len(self.aliases):4d}  a second name of block 7's attention (same values)")
        reasons: dict[str, int] = {}
        for reason in self.unused.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        lines.append(f"  unused         {len(self.unused):4d}  never read by the reference's inference")
        lines.extend(f"      {count:4d}  {reason}" for reason, count in reasons.items())
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ plan


def _unused_reason(key: str) -> str | None:
    return next((reason for prefix, reason in UNUSED_REASONS.items() if key == prefix or key.startswith(prefix)), None)


def _base_key(key: str) -> str:
    """A checkpoint key -> the base (OpenAI / open_clip) name of the same tensor."""
    match = _BLOCK_ATTN.match(key)
    return match.group(1) + _ATTN_RENAMES[match.group(2)] if match else key


def _storage(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor as the model uses it (float32), stored as float16 when that holds it exactly."""
    value = tensor.detach().to(torch.float32).contiguous()
    half = value.to(torch.float16)
    return half if torch.equal(half.to(torch.float32), value) else value


def plan_import(state: dict[str, torch.Tensor], base: dict[str, torch.Tensor], source: str = "checkpoint",
                out: Path | None = None) -> tuple[ImportReport, dict[str, torch.Tensor]]:
    """Classify every checkpoint tensor (keys without `module.`) against the base state dict.

    Returns (report, tensors to store under sketchkit names, float16 where exact). Raises WeightsError
    when the checkpoint is not a reference checkpoint for these base weights (missing or unknown
    keys, shapes that do not fit, an alias that disagrees with its block).
    """
    try:
        base_sizes = seam.openai_state_sizes(base)
    except (KeyError, IndexError) as exc:
        raise WeightsError(f"the base weights are not an OpenAI-format CLIP state dict (no {exc})") from None
    return ReferenceImport(source, out, state, base, base_sizes).run()


class ReferenceImport:
    """One import: walks the checkpoint once, filling an ImportReport and the tensors to store."""

    def __init__(self, source, out, state, base, base_sizes):
        self.report = ImportReport(str(source), Path(out) if out is not None else Path())
        self.state, self.base, self.sizes = state, base, base_sizes
        self.stored: dict[str, torch.Tensor] = {}

    def fail(self, message: str):
        raise WeightsError(f"{self.report.source}: {message}")

    def carry(self, key: str, name: str, value: torch.Tensor) -> None:
        self.report.carried[key] = name
        self.stored[name] = _storage(value)

    def against_base(self, key: str, name: str) -> None:
        """A tensor with a base counterpart: equal to base, or carried."""
        base_key = _base_key(key)
        base_value = self.base.get(base_key)
        if base_value is None:
            self.fail(f"{key} has no counterpart {base_key!r} in the base weights (not a checkpoint of this CLIP?)")
        value = self.state[key]
        if tuple(value.shape) != tuple(base_value.shape):
            self.fail(f"{key} has shape {tuple(value.shape)}, the base weights' {base_key} {tuple(base_value.shape)}: "
                      "the checkpoint was fine-tuned from another CLIP")
        if torch.equal(value.to(torch.float32), base_value.to(torch.float32)):
            self.report.equal_to_base[key] = base_key
        elif key == "logit_scale":
            self.report.unused[key] = UNUSED_REASONS["logit_scale"]
        else:
            self.carry(key, name, value)

    def run(self) -> tuple[ImportReport, dict[str, torch.Tensor]]:
        state, sizes = self.state, self.sizes
        width, embed = sizes["vision_width"], sizes["embed_dim"]
        alias_block = f"visual.transformer.resblocks.{sizes['vision_layers'] - DUAL_BLOCKS}."
        for key in state:
            if not isinstance(state[key], torch.Tensor) or not state[key].is_floating_point():
                self.fail(f"{key} is not a floating-point tensor")
            if _unused_reason(key) and key != "logit_scale":
                self.report.unused[key] = _unused_reason(key)
            elif key == "visual.prompt_embeddings":
                prompts = state[key]
                if prompts.ndim != 3 or prompts.shape[0] != 1 or prompts.shape[2] != width:
                    self.fail(f"{key} has shape {tuple(prompts.shape)}, expected (1, P, {width})")
                self.carry(key, "encoder.prompts", prompts[0])
            elif key.startswith("visual.attn."):
                target = alias_block + key[len("visual."):]
                if target not in state:
                    self.fail(f"{key} names block 7's attention, but the checkpoint has no {target}")
                if not torch.equal(state[key], state[target]):
                    self.fail(f"{key} differs from {target}: in the reference they are one tensor")
                self.report.aliases[key] = target
            elif key.startswith(_CA_USED) or key.startswith(_CA + "text_projection."):
                suffix = key[len(_CA_USED):] if key.startswith(_CA_USED) else key[len(_CA):]
                self.carry(key, f"cross_attention.{suffix}", state[key])
            elif key.startswith(_CA):
                self.fail(f"unknown cross-attention key {key}")
            else:
                self.against_base(key, f"encoder.clip.{_base_key(key)}")
        self.check_complete(width, embed)
        self.report.fp16 = sum(1 for t in self.stored.values() if t.dtype == torch.float16)
        self.report.fp32 = len(self.stored) - self.report.fp16
        return self.report, self.stored

    def check_complete(self, width: int, embed: int) -> None:
        """Every base tensor and every part test.py runs must be in the checkpoint."""
        seen = {_base_key(k) for k in list(self.report.equal_to_base) + list(self.report.carried)}
        seen |= {k for k in self.report.unused if k == "logit_scale"}
        missing = sorted(k for k in self.base if k not in seen and k not in ("input_resolution", "context_length", "vocab_size"))
        if missing:
            self.fail(f"{len(missing)} tensors of the base CLIP are missing (e.g. {missing[:2]}); test.py's strict "
                      "load_state_dict needs all of them")
        if "encoder.prompts" not in self.stored:
            self.fail("no visual.prompt_embeddings: not a reference checkpoint")
        names = set(self.stored)
        needed = {"cross_attention.text_projection.weight", "cross_attention.text_projection.bias",
                  *(f"cross_attention.self_attn.linears.{i}.{p}" for i in range(4) for p in ("weight", "bias")),
                  *(f"cross_attention.feed_forward.w_{i}.{p}" for i in (1, 2) for p in ("weight", "bias")),
                  *(f"cross_attention.sublayer.{i}.norm.{p}" for i in (0, 1) for p in ("a", "b"))}
        if needed - names:
            self.fail(f"the cross-attention test.py runs is incomplete: missing {sorted(needed - names)[:3]}")
        ca_width, ca_in = self.stored["cross_attention.text_projection.weight"].shape
        if ca_width != width or ca_in != embed:
            self.fail(f"cross-attention text_projection is {ca_in} -> {ca_width}; the base CLIP needs {embed} -> {width}")
        d_ff = int(self.stored["cross_attention.feed_forward.w_1.weight"].shape[0])
        self.report.sizes = reference_sizes(self.sizes, num_prompts=int(self.stored["encoder.prompts"].shape[0]),
                                            ca_width=int(ca_width), ca_d_ff=d_ff, ca_heads=CA_HEADS)


# --------------------------------------------------------------------------------------- files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _strip_clip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state and all(k.startswith("clip.") for k in state):
        return {k[len("clip."):]: v for k, v in state.items()}
    return state


def _resolve_base(backbone: str | None, weights) -> tuple[Path, str]:
    """(base weights path, description): `weights`, else $SKETCHKIT_WEIGHTS or the backbone's tag."""
    from .factory import get_backbone_config
    from .weights import resolve_weights

    if weights:
        return Path(weights), f"weights file {weights}"
    if backbone is None:
        raise WeightsError("the base weights are unknown: pass weights=PATH (the CLIP the checkpoint was fine-tuned "
                           "from) or a backbone name")
    config = get_backbone_config(backbone)
    path, source = resolve_weights(config.clip_model, config.pretrained, None, config.name)
    if path is None:
        raise WeightsError(f"backbone {backbone!r} has no pretrained weights to import onto: pass weights=PATH")
    return path, source


def _check_backbone(backbone: str | None, sizes: dict, path) -> None:
    """WeightsError when the base weights are not the named backbone's architecture."""
    if backbone is None:
        return
    from .factory import get_backbone_config

    config = seam.model_config(get_backbone_config(backbone).clip_model) or {}
    vision = config.get("vision_cfg", {})
    expected = {"vision_width": vision.get("width"), "vision_layers": vision.get("layers"),
                "patch": vision.get("patch_size"), "embed_dim": config.get("embed_dim")}
    wrong = {k: (v, sizes[k]) for k, v in expected.items() if v is not None and v != sizes[k]}
    if wrong:
        detail = ", ".join(f"{k} {have} (backbone {want})" for k, (want, have) in wrong.items())
        raise WeightsError(f"{path} is not a {backbone} CLIP: {detail}; pass backbone=None to take the sizes from the weights")


def import_checkpoint(reference_path: str | Path, out: str | Path, *, backbone: str | None = DEFAULT_BACKBONE,
                      weights: str | Path | None = None, overwrite: bool = False) -> ImportReport:
    """Import a reference checkpoint losslessly into `out` (.safetensors; a `.json` sidecar beside it).

    reference_path: the reference train.py's checkpoint (plain or `module.`-prefixed state dict),
    read with torch.load(weights_only=True) only. backbone / weights: the base CLIP the checkpoint
    was fine-tuned from: `weights` (an OpenAI-format state dict file), else $SKETCHKIT_WEIGHTS or the
    backbone's pretrained tag (ViT-B-16: OpenAI's). backbone=None takes every size from `weights`
    (the reference fixtures' tiny CLIP). Raises WeightsError (refused file, wrong base, not a
    reference checkpoint) and UsageError (`out` exists without overwrite, or is an input).
    """
    from ..files import atomic_path, atomic_write_text, check_output_path
    from .factory import clip_from_openai_state

    started = time.perf_counter()
    reference_path = Path(reference_path)
    base_path, base_source = _resolve_base(backbone, weights)
    out = check_output_path(out, [reference_path, base_path], overwrite)
    sidecar = check_output_path(out.with_suffix(".json"), [reference_path, base_path], overwrite)
    base = _strip_clip(read_state_dict(base_path))
    # a checkpoint is its base CLIP plus prompts and cross-attention: it may unpack to no more than that allows
    state = read_state_dict(reference_path, weights_cap(state_bytes(base)))
    report, stored = plan_import(state, base, str(reference_path), out)
    _check_backbone(backbone, seam.openai_state_sizes(base), base_path)
    # the output must load: build the model from the base and the stored tensors before writing
    model = ReferenceModel(clip_from_openai_state(base, base_path), report.sizes, backbone=backbone or "reference")
    _load_stored(model, stored, reference_path)
    config = {
        "origin": ORIGIN,
        "reference_format": REFERENCE_FORMAT,
        "reference_commit": REFERENCE_COMMIT,
        "scoring": "reference",
        "sketchkit_version": __version__,
        "backbone": backbone,
        "weights_fingerprint": fingerprint(base),
        "weights_source": base_source,
        "sizes": report.sizes.to_dict(),
        "imported_from": reference_path.name,
        "imported_sha256": _sha256(reference_path),
        "import": report.counts(),
    }
    text = json.dumps(config, indent=2, sort_keys=True)
    from safetensors.torch import save_file

    with atomic_path(out, overwrite=overwrite) as tmp:
        save_file(stored, str(tmp), metadata={ADAPTER_KEY: text})
    atomic_write_text(sidecar, text + "\n", overwrite=overwrite)
    report.bytes_written = out.stat().st_size
    report.seconds = time.perf_counter() - started
    return report


def _load_stored(model: ReferenceModel, stored: dict[str, torch.Tensor], path) -> None:
    params = dict(model.named_parameters())
    for name, tensor in stored.items():
        if name not in params:
            raise WeightsError(f"{path}: {name} is not a parameter of the reference model")
        if tuple(tensor.shape) != tuple(params[name].shape):
            raise WeightsError(f"{path}: {name} has shape {tuple(tensor.shape)}, the model expects {tuple(params[name].shape)}")
    with torch.no_grad():
        for name, tensor in stored.items():
            params[name].copy_(tensor.to(params[name].dtype))


def is_reference_file(path: str | Path) -> bool:
    """Whether `path` is an imported reference model (a safetensors file with origin "reference")."""
    try:
        return read_adapter_config(path).get("origin") == ORIGIN
    except WeightsError:
        return False


def load_reference_model(path: str | Path, *, backbone: str | None = None, weights: str | Path | None = None,
                         device: str | torch.device = "cpu", vv_impl: str | None = None) -> ReferenceModel:
    """Rebuild the reference model from an imported file and the base weights it was imported onto.

    Base weights: `weights`, else $SKETCHKIT_WEIGHTS or the pretrained tag of `backbone` (default: the
    backbone recorded in the file). Raises WeightsError when the base weights' fingerprint or sizes
    differ from the recorded ones, or the file is not an imported reference model.
    """
    from .factory import clip_from_openai_state

    tensors, config = read_adapter(path)
    if config.get("origin") != ORIGIN:
        raise WeightsError(f"{path} is a sketchkit adapter, not an imported reference model (load it with load_adapter)")
    if config.get("reference_format") != REFERENCE_FORMAT:
        raise WeightsError(f"{path} is reference format {config.get('reference_format')}; this sketchkit reads {REFERENCE_FORMAT}")
    backbone = backbone or config.get("backbone")
    if weights is None and backbone is None:
        raise WeightsError(f"{path} was imported onto the base weights {config.get('weights_source')!r}, which have no "
                           "backbone name: pass weights=PATH")
    base_path, base_source = _resolve_base(backbone, weights)
    base = _strip_clip(read_state_dict(base_path))
    if fingerprint(base) != config.get("weights_fingerprint"):
        raise WeightsError(f"{path} was imported onto other base weights (fingerprint {config.get('weights_fingerprint')}, "
                           f"{base_path} has {fingerprint(base)}): pass the weights it was imported onto")
    try:
        sizes = ReferenceSizes(**config["sizes"])
    except (KeyError, TypeError):
        raise WeightsError(f"{path}: its config lacks valid sizes") from None
    base_sizes = seam.openai_state_sizes(base)
    if any(base_sizes[k] != getattr(sizes, k) for k in base_sizes):
        raise WeightsError(f"{path}: the base weights' sizes differ from the recorded ones")
    model = ReferenceModel(clip_from_openai_state(base, base_path), sizes, backbone=config.get("backbone") or "reference",
                           vv_impl=vv_impl)
    for name in ("encoder.prompts", "cross_attention.text_projection.weight"):
        if name not in tensors:
            raise WeightsError(f"{path} lacks {name}: not a complete imported reference model")
    _load_stored(model, tensors, path)
    model.weights_source = f"reference checkpoint {config.get('imported_from')} on {base_source}"
    model.fingerprint = config["weights_fingerprint"]
    return model.eval().to(device)


__all__ = ["ImportReport", "UNUSED_REASONS", "import_checkpoint", "is_reference_file", "load_reference_model",
           "plan_import"]
