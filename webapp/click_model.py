"""Proposed object masks from clicks and a box, answered by SAM 2.1 hiera tiny (Meta, Apache-2.0) through
transformers, or by GrabCut when the model cannot be had.

    proposer, note = open_proposer()     # the model when it loads, else GrabCut; `note` says why (else None)
    mask = proposer.propose(frame_rgb, Prompt(clicks=(Click(120, 80, True),)), frame_key=(clip, t, revision))
    proposer.name                        # which of the two answers, for the page

The model's files come through huggingface_hub, as the released checkpoints do (its cache, HF_HUB_OFFLINE,
HF_ENDPOINT for a mirror), or from a local folder holding them. The image embedding of a frame is computed
once and kept for the last EMBEDDINGS_KEPT frame keys (the caller's: clip, frame and its revision); each
prompt on that frame then runs only the prompt encoder and the mask decoder.
"""
import os
import threading
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np
import torch
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from utils.download import hub_file
from utils.errors import UserError
from webapp.grabcut import GrabCutProposer
from webapp.prompts import Click, checked_prompt

CLICK_MODEL_REPO = 'facebook/sam2.1-hiera-tiny'
# The files Sam2Model and Sam2Processor read (the repository's processor_config.json only restates defaults).
CLICK_MODEL_FILES = ('config.json', 'model.safetensors', 'preprocessor_config.json')
EMBEDDINGS_KEPT = 4  # frames; hiera tiny's embedding of one frame takes 16 MB


class Sam2Proposer:
    """SAM 2's answers to prompts (webapp.prompts); the same methods as webapp.grabcut.GrabCutProposer."""

    def __init__(self, model, processor, name):
        self.name = name
        self._model = model.eval()
        self._processor = processor
        self._embeddings = OrderedDict()
        self._lock = threading.Lock()  # the app's requests come on several threads; one model call at a time

    def embedding(self, image_rgb, frame_key=None):
        """The model's image embedding of `image_rgb`, kept under `frame_key` (None: not kept)."""
        key = None if frame_key is None else (frame_key, image_rgb.shape)
        with self._lock:
            if key in self._embeddings:
                self._embeddings.move_to_end(key)
                return self._embeddings[key]
            pixels = self._processor(images=image_rgb, return_tensors='pt')['pixel_values']
            with torch.inference_mode():
                embedding = self._model.get_image_embeddings(pixels)
            if key is not None:
                self._embeddings[key] = embedding
                while len(self._embeddings) > EMBEDDINGS_KEPT:
                    self._embeddings.popitem(last=False)
        return embedding

    def propose(self, image_rgb, prompt, frame_key=None):
        """bool (H, W) of `image_rgb` (H, W, 3): the object `prompt` marks. Strokes are kept exactly: the answer
        is object on the object strokes and background on the background strokes."""
        image = np.ascontiguousarray(image_rgb, dtype=np.uint8)
        height, width = image.shape[:2]
        prompt = checked_prompt(prompt, (height, width))
        embedding = self.embedding(image, frame_key)
        inputs = self._processor(original_sizes=[[height, width]], return_tensors='pt', **_model_prompt(prompt))
        # One click alone is ambiguous (a shirt or the person wearing it): SAM then gives three masks, and the
        # one it scores best is taken, as SAM 2's own predictor does.
        ambiguous = len(prompt.clicks) == 1 and prompt.box is None
        with self._lock, torch.inference_mode():
            output = self._model(image_embeddings=embedding, input_points=inputs.get('input_points'),
                                 input_labels=inputs.get('input_labels'), input_boxes=inputs.get('input_boxes'),
                                 multimask_output=ambiguous)
        best = int(output.iou_scores[0, 0].argmax())
        low_resolution = output.pred_masks[:, 0, best:best + 1]  # (1, 1, 256, 256) logits
        mask = self._processor.post_process_masks([low_resolution], [[height, width]])[0][0, 0].numpy()
        if prompt.object_strokes is not None:
            mask |= prompt.object_strokes
        if prompt.background_strokes is not None:
            mask &= ~prompt.background_strokes
        return mask


def _stroke_click(strokes, on_object):
    """A click on the stroke pixel nearest the strokes' centre, for a prompt of strokes alone."""
    rows, columns = np.nonzero(strokes)
    nearest = np.argmin((rows - rows.mean()) ** 2 + (columns - columns.mean()) ** 2)
    return Click(float(columns[nearest]), float(rows[nearest]), on_object)


def _model_prompt(prompt):
    """The processor's input_points, input_labels and input_boxes for one object on one image."""
    clicks = list(prompt.clicks)
    if not clicks and prompt.box is None:  # strokes alone: SAM takes points and boxes, so a point on them
        clicks = [_stroke_click(strokes, on_object)
                  for strokes, on_object in ((prompt.object_strokes, True), (prompt.background_strokes, False))
                  if strokes is not None and strokes.any()]
    inputs = {}
    if clicks:
        inputs['input_points'] = [[[[click.x, click.y] for click in clicks]]]
        inputs['input_labels'] = [[[int(click.on_object) for click in clicks]]]
    if prompt.box is not None:
        x0, y0, x1, y1 = prompt.box
        inputs['input_boxes'] = [[[x0, y0, x1 - 1, y1 - 1]]]  # SAM's box corners are its first and last pixels
    return inputs


@contextmanager
def _quiet_transformers(transformers):
    """transformers' loading warnings and progress bars off (the app prints one line of its own)."""
    logging = transformers.utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def model_name(source):
    return 'SAM 2.1 hiera tiny' if source == CLICK_MODEL_REPO else f'SAM 2 ({source})'


def model_folder(source):
    """The folder of the model's files: `source` itself when it is a folder, else the Hub repository's files in the
    Hugging Face cache (downloaded once)."""
    if os.path.isdir(source):
        return source
    try:
        validate_repo_id(source)
    except HFValidationError:
        raise UserError(f'click model {source}: no such folder, and not a Hugging Face repository name '
                        f'(owner/name); give the folder of SAM 2\'s transformers files or a repository') from None
    advice = (f'run once online to fetch it (HF_ENDPOINT for a mirror), or download {", ".join(CLICK_MODEL_FILES)} '
              f'from https://huggingface.co/{source} into a folder and give that folder as the click model')
    paths = [hub_file(source, name, f'click model {source}, {name}', advice) for name in CLICK_MODEL_FILES]
    return os.path.dirname(paths[0])


def load_click_model(source=CLICK_MODEL_REPO):
    """A Sam2Proposer of the SAM 2 model in `source` (a Hub repository or a local folder); UserError when
    transformers is not installed or the model cannot be had."""
    try:
        import transformers
        from transformers import Sam2Model, Sam2Processor
    except ImportError:
        raise UserError('the click model needs transformers 5 (pip install -r requirements-app.txt)') from None
    folder = model_folder(source)
    try:
        with _quiet_transformers(transformers):
            model = Sam2Model.from_pretrained(folder, local_files_only=True)
            processor = Sam2Processor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        advice = (f'give a folder with SAM 2\'s transformers files ({", ".join(CLICK_MODEL_FILES)})'
                  if folder == source else 'delete that folder from the Hugging Face cache to fetch the model again')
        raise UserError(f'{folder}: cannot load SAM 2 from it ({first_line}); {advice}') from None
    return Sam2Proposer(model, processor, model_name(source))


def open_proposer(use_click_model=True, source=CLICK_MODEL_REPO):
    """(proposer, note): SAM 2 from `source` when `use_click_model` and it loads, else GrabCut with a one-line
    `note` saying why (None when the model answers)."""
    fallback = 'GrabCut answers boxes, clicks and strokes instead'
    if not use_click_model:
        return GrabCutProposer(), f'the click model is off; {fallback}'
    try:
        return load_click_model(source), None
    except UserError as error:
        return GrabCutProposer(), f'{error}; {fallback}'
