"""The four tasks of the LM, each defined once.

For every task this module says which labels a cut must carry, how its sequence
`<task> input <sep> output <eos>` is built, which ids decoding may emit and how it is scored.
Training batches (`lm/data.py`), dev evaluation (`lm/evaluate.py`), `decode`, `transcribe`,
`synthesize`, `bench decode` and `score` all go through these functions, so a change of a task's
layout happens here and nowhere else.

It imports nothing from the LM's other modules (configs and vocabularies are used by duck typing),
so every layer above can use it without an import circle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from polyspeech_cli.errors import PolyspeechError

# The order is part of the model files: the vocabulary's task ids `<asr> <tts> <lid> <gid>` and the
# per-task buffer `model.rates` are laid out in it. Append new tasks; never reorder.
TASKS = ("asr", "tts", "lid", "gid")
SPEECH_INPUT_TASKS = ("asr", "lid", "gid")  # read speech, write text or a class
CLASS_TASKS = ("lid", "gid")  # the output is one class token
ALIGNED_TASKS = ("asr", "tts")  # input and output are sequences that align monotonically
# What the cut's supervision must carry, for error messages.
LABEL_NAMES = {"asr": "`text` (and speech input)", "tts": "`text` and discrete speech tokens", "lid": "`language`",
               "gid": "`gender` (M/F)"}
# How each task is scored (by `polyspeech score` and on the training curves).
METRICS = {"asr": "cer", "tts": "cer of an ASR judge, secs", "lid": "accuracy", "gid": "accuracy"}
GENDERS = ("M", "F")


def check_task(task: str, where: str = "--task") -> str:
    """`task`, or a one-line error naming the valid tasks."""
    if task not in TASKS:
        raise PolyspeechError(f"unknown task '{task}' in {where} (choose from {', '.join(TASKS)})")
    return task


def supervision(cut: Any) -> Any:
    """The cut's (first) supervision, or None."""
    return cut.supervisions[0] if cut.supervisions else None


def reference(cut: Any, task: str) -> str | None:
    """The task's label on the cut: its text (asr, tts), language (lid) or gender (gid); None if absent."""
    s = supervision(cut)
    if s is None:
        return None
    if task in ("asr", "tts"):
        return s.text if s.text and s.text.strip() else None
    if task == "lid":
        return s.language or None
    if task == "gid":
        return s.gender if s.gender in GENDERS else None
    raise PolyspeechError(f"unknown task '{task}' (choose from {', '.join(TASKS)})")


def has_speech_input(cut: Any, cfg: Any) -> bool:
    """Does the cut carry the speech representation the LM reads (`cfg`: the LM's DataConfig)?"""
    return cut.has_features if cfg.speech_input == "features" else cut.has_custom(cfg.speech_tokens or "")


def has_labels(cut: Any, task: str, cfg: Any) -> bool:
    """Can the cut train `task`: its label, and the speech it reads (speech-input tasks) or writes (tts)?"""
    if reference(cut, task) is None:
        return False
    if task == "tts":
        return cfg.speech_tokens is not None and cut.has_custom(cfg.speech_tokens)
    return has_speech_input(cut, cfg)


def output_range(vocab: Any, task: str) -> tuple[int, int]:
    """[lo, hi) of the ids `task` may emit (besides <eos>)."""
    v = vocab
    return {"asr": (v.text_offset, v.speech_offset), "tts": (v.speech_offset, v.lang_offset),
            "lid": (v.lang_offset, v.gender_offset), "gid": (v.gender_offset, v.size)}[task]


def class_labels(vocab: Any, task: str) -> list[str]:
    """The class names of a class task, in id order."""
    lo, hi = output_range(vocab, task)
    return [vocab.class_name(i) for i in range(lo, hi)]


def tts_input_ids(vocab: Any, text: str, language: str | None, cfg: Any) -> list[int]:
    """The TTS input after `<tts>`: the language token (when configured and known), then the text units."""
    lang = vocab.lang_id(language) if cfg.tts_language_token and language else None
    return ([lang] if lang is not None else []) + vocab.encode_text(text)


def target_ids(vocab: Any, task: str, cut: Any, cfg: Any) -> list[int]:
    """The output ids of a cut (between `<sep>` and `<eos>`)."""
    s = supervision(cut)
    if task == "asr":
        return vocab.encode_text(s.text)
    if task == "tts":
        return vocab.speech_ids(cut.load_custom(cfg.speech_tokens))
    if task == "lid":
        lang = vocab.lang_id(s.language)
        return [lang if lang is not None else vocab.unk]
    return [vocab.gender_id(s.gender)]


def load_stored_features(cut: Any) -> np.ndarray:
    """The (T, D) features stored with the cut, as float32."""
    return np.asarray(cut.load_features(), dtype=np.float32)


def cut_input(vocab: Any, task: str, cfg: Any, cut: Any,
              load_features: Callable[[Any], np.ndarray] = load_stored_features) -> dict:
    """The input item of a cut: `text_ids` (tts), `tokens` (an LM on discrete speech) or `feats` (T, D)."""
    if task == "tts":
        s = supervision(cut)
        return {"text_ids": tts_input_ids(vocab, s.text, s.language, cfg)}
    if cfg.speech_input == "tokens":
        return {"tokens": cut.load_custom(cfg.speech_tokens)}
    return {"feats": load_features(cut)}


def make_batch(vocab: Any, task: str, inputs: list[dict], targets: list[list[int]] | None = None,
               normalise: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
               out_len: Callable[[int], int] = lambda n: n) -> dict:
    """The LM's batch of `<task> input <sep> [output <eos>]` rows.

    `inputs` are `cut_input` items; with `targets` (training) each row gets `output <eos>` and ASR
    rows their CTC targets, without (decoding) the rows end at `<sep>`. `normalise` is applied to
    continuous features (CMVN), `out_len` maps feature frames to speech positions (the adapter's
    subsampling). Returns `task`, `prefix`, `suffix` (lists of 1-D id tensors), `feats`/`feat_lens`
    (padded continuous speech, or None), `ctc_targets` and `n_in` (input items per row).
    """
    v = vocab
    prefix, suffix, feats, ctc, n_in = [], [], [], [], []
    for i, item in enumerate(inputs):
        pre = [v.task_id(task)]
        if "text_ids" in item:
            pre += item["text_ids"]
            n_in.append(len(item["text_ids"]))
        elif "tokens" in item:
            speech = v.speech_ids(item["tokens"])
            pre += speech
            n_in.append(len(speech))
        else:
            f = normalise(torch.from_numpy(np.asarray(item["feats"], dtype=np.float32)))
            feats.append(f)
            n_in.append(out_len(f.shape[0]))
        prefix.append(torch.tensor(pre))
        if targets is None:
            suffix.append(torch.tensor([v.sep]))
        else:
            suffix.append(torch.tensor([v.sep] + targets[i] + [v.eos]))
            if task == "asr":
                ctc.append(torch.tensor(targets[i]))
    batch = {"task": task, "prefix": prefix, "suffix": suffix, "feats": None, "ctc_targets": ctc or None, "n_in": n_in}
    if feats:
        batch["feat_lens"] = torch.tensor([f.shape[0] for f in feats])
        batch["feats"] = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    return batch
