"""Dev metrics of the speech decoder.

- mel L1 / MSE: predicted vs target log-mel (natural-log units), content of A with a prompt from
  another utterance of A's speaker, whole utterances one at a time (no padding effects);
  mel_l1_mean_baseline: the L1 of always predicting the training set's mean log-mel.
- speaker similarity: cosine of speaker embeddings, mean over same-speaker and different-speaker
  pairs of dev utterances (dev speakers are unseen in training on the synth corpus).
- swap: A's content with a prompt of another speaker B; if the prompt controls timbre, the output's
  re-encoded embedding is closer to B's centroid than to A's (swap_cos_*), and its long-term
  average log-mel spectrum is closer to B's than to A's (swap_ltas_l1_*, lower = closer).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from polyspeech_cli.vocoder.data import UtteranceSet, prompt_index
from polyspeech_cli.vocoder.model import SpeechDecoder


@torch.no_grad()
def predict_mel(model: SpeechDecoder, feats: np.ndarray, prompt_mel: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """(T, D) features already at the mel rate + (T', n_mels) prompt log-mel → (T, n_mels) log-mel."""
    model.eval()
    spk = model.speaker(torch.from_numpy(prompt_mel)[None].to(device))
    y = model(torch.from_numpy(feats)[None].to(device), spk)
    return model.denormalize(y)[0].float().cpu().numpy()


@torch.no_grad()
def embed(model: SpeechDecoder, mel: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    return model.speaker(torch.from_numpy(mel)[None].to(device))[0].float().cpu().numpy()


def _pair_means(emb: np.ndarray, speakers: list[str]) -> tuple[float, float]:
    cos = emb @ emb.T
    spk = np.array(speakers)
    same = spk[:, None] == spk[None, :]
    off = ~np.eye(len(spk), dtype=bool)
    s, d = cos[same & off], cos[~same]
    return (float(s.mean()) if s.size else float("nan")), (float(d.mean()) if d.size else float("nan"))


def evaluate_decoder(model: SpeechDecoder, dev: UtteranceSet, device: torch.device | str = "cpu") -> dict[str, float]:
    was_training = model.training
    model.eval()
    groups = dev.by_speaker()
    l1 = sq = base = n = 0.0
    mean = model.mel_mean.cpu().numpy()
    for i, u in enumerate(dev.utts):
        p = dev.utts[prompt_index(groups, i, u.speaker, None)]
        pred = predict_mel(model, u.feats, p.mel, device)
        l1 += float(np.abs(pred - u.mel).sum())
        sq += float(((pred - u.mel) ** 2).sum())
        base += float(np.abs(mean - u.mel).sum())
        n += u.mel.size
    emb = np.stack([embed(model, u.mel, device) for u in dev.utts])
    speakers = [u.speaker for u in dev.utts]
    same, diff = _pair_means(emb, speakers)
    out = {"mel_l1": l1 / n, "mel_mse": sq / n, "mel_l1_mean_baseline": base / n, "spk_cos_same": same, "spk_cos_diff": diff}
    if len(groups) > 1:
        centroids = {s: F.normalize(torch.from_numpy(emb[idx].mean(0)), dim=0).numpy() for s, idx in groups.items()}
        # long-term average spectrum per speaker: an encoder-independent view of timbre
        ltas = {s: np.concatenate([dev.utts[j].mel for j in idx]).mean(0) for s, idx in groups.items()}
        names = sorted(groups)
        to_prompt = to_content = lt_prompt = lt_content = 0.0
        for u in dev.utts:
            other = names[(names.index(u.speaker) + 1) % len(names)]
            p = dev.utts[groups[other][0]]
            mel = predict_mel(model, u.feats, p.mel, device)
            e = embed(model, mel, device)
            to_prompt += float(e @ centroids[other])
            to_content += float(e @ centroids[u.speaker])
            lt_prompt += float(np.abs(mel.mean(0) - ltas[other]).mean())
            lt_content += float(np.abs(mel.mean(0) - ltas[u.speaker]).mean())
        k = len(dev.utts)
        out |= {"swap_cos_prompt_spk": to_prompt / k, "swap_cos_content_spk": to_content / k,
                "swap_ltas_l1_prompt_spk": lt_prompt / k, "swap_ltas_l1_content_spk": lt_content / k}
    model.train(was_training)
    return out


def plot_mels(target: np.ndarray, pred: np.ndarray, title: str, png_path) -> None:
    """Target above, prediction below (log-mel, same colour scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polyspeech_cli.fileio import atomic_path

    vmin, vmax = float(target.min()), float(target.max())
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for ax, m, name in zip(axes, (target, pred), ("target", "predicted")):
        ax.imshow(m.T, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="magma")
        ax.set(ylabel="mel bin", title=f"{name} {title}")
    axes[-1].set_xlabel("frame")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def evaluate_exp(exp_dir, cuts_path, wav_dir=None, max_cuts: int = 100, resynth_cuts: int = 10) -> dict[str, float]:
    """Metrics of a trained exp dir on a cuts manifest (audio + features), as `train` logs them, plus
    end-to-end resynthesis: features_to_wave (decoder + Griffin-Lim/HiFi-GAN) of the first
    `resynth_cuts` utterances, re-analysed to log-mel and compared with the target (`e2e_mel_l1`),
    next to the same for vocoding the target mel itself (`copy_mel_l1`: the vocoder's own error).
    With `wav_dir`, writes <cut>_resynth.wav and <cut>_copy.wav there."""
    from pathlib import Path

    import soundfile as sf

    from polyspeech_cli.codec.data import load_cut_features
    from polyspeech_cli.data.manifest import read_cuts
    from polyspeech_cli.vocoder.data import load_utterances
    from polyspeech_cli.vocoder.mel import wave_to_mel
    from polyspeech_cli.vocoder.synthesize import features_to_wave, load_vocoder

    voc = load_vocoder(exp_dir)
    data = load_utterances(Path(cuts_path), voc.cfg.mel, voc.cfg.normalize, max_cuts=max_cuts, progress=False)
    if data.feat_dim != voc.feat_dim:
        from polyspeech_cli.errors import PolyspeechError

        raise PolyspeechError(f"{cuts_path}: {data.feat_dim}-dim features, {voc.path} expects {voc.feat_dim}-dim ones")
    out = evaluate_decoder(voc.decoder, data)
    groups = data.by_speaker()
    pairs = [(u.cut_id, data.utts[prompt_index(groups, i, u.speaker, None)].cut_id) for i, u in enumerate(data.utts[:resynth_cuts])]
    wanted = {k for pair in pairs for k in pair}
    cuts = {c.id: c for c in read_cuts(cuts_path) if c.id in wanted}  # streamed: only these cuts are kept
    e2e = copy = n = 0.0
    for i, u in enumerate(data.utts[:resynth_cuts]):
        cut, prompt = cuts[pairs[i][0]], cuts[pairs[i][1]]
        wave = features_to_wave(load_cut_features(cut), prompt.load_audio()[0], prompt.sampling_rate, exp_dir)
        copy_wave = voc.mel_to_wave(torch.from_numpy(u.mel))
        for w, key in ((wave, "e2e"), (copy_wave, "copy")):
            m = wave_to_mel(w, voc.cfg.mel)
            t = min(len(m), len(u.mel))
            err = float(np.abs(m[:t] - u.mel[:t]).mean())
            e2e, copy = (e2e + err, copy) if key == "e2e" else (e2e, copy + err)
            if wav_dir:
                Path(wav_dir).mkdir(parents=True, exist_ok=True)
                sf.write(Path(wav_dir) / f"{u.cut_id}_{'resynth' if key == 'e2e' else 'copy'}.wav", w, voc.cfg.mel.sample_rate)
        n += 1
    out["e2e_mel_l1"], out["copy_mel_l1"] = e2e / max(n, 1), copy / max(n, 1)
    return out
