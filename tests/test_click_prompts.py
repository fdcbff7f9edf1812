"""Proposed masks from clicks, boxes and strokes: the prompt's checks, GrabCut's seeds on pictures with a known
answer, and SAM 2 (a tiny random one saved as the Hub repository lays it out, served by a local hub-like server
for the download path): coordinates at any working size, the points and labels the processor and the model get,
the embedding kept per frame, and the same answer every time."""
import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.conftest import REPO
from tests.support.http_server import hub_files
from tests.support.tiny_sam2 import IMAGE_SIZE, write_tiny_sam2
from utils.errors import UserError
from webapp import grabcut
from webapp.click_model import (CLICK_MODEL_FILES, CLICK_MODEL_REPO, EMBEDDINGS_KEPT, Sam2Proposer, load_click_model,
                                model_name, open_proposer)
from webapp.grabcut import GrabCutProposer, box_mask, prompt_mask
from webapp.prompts import Click, Prompt

H, W = 120, 160


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def noisy(mean, shape, rng):
    return np.clip(rng.normal(mean, 12, shape + (3,)), 0, 255)


@pytest.fixture(scope='module')
def squares():
    """A red and a green square side by side on blue: (image, red, green)."""
    rng = np.random.RandomState(1)
    image = noisy((40, 60, 170), (H, W), rng)
    red, green = np.zeros((H, W), bool), np.zeros((H, W), bool)
    red[40:80, 40:80] = True
    green[40:80, 80:110] = True
    image[red] = noisy((200, 50, 40), (red.sum(),), rng)
    image[green] = noisy((60, 190, 60), (green.sum(),), rng)
    return image.astype(np.uint8), red, green


# ---------------------------------------------------------------- the prompt's checks
@pytest.mark.parametrize('box', [(math.nan, 10, 50, 50), (10, 10, math.inf, 50), (10, -math.inf, 50, 50)])
def test_a_box_of_nan_or_inf_is_one_clear_refusal(squares, box):
    with pytest.raises(UserError, match=r'every coordinate must be a finite number of pixels'):
        box_mask(squares[0], box)


@pytest.mark.parametrize('click', [Click(math.nan, 5, True), Click(5, math.inf, False)])
def test_a_click_of_nan_or_inf_is_one_clear_refusal(squares, click):
    with pytest.raises(UserError, match=r'every coordinate must be a finite number of pixels'):
        prompt_mask(squares[0], Prompt(box=(30, 30, 120, 90), clicks=(click,)))


def test_prompts_that_cannot_mark_an_object_are_refused(squares):
    image = squares[0]
    with pytest.raises(UserError, match=r'click \(160, 5\) is outside the 160x120 frame'):
        prompt_mask(image, Prompt(clicks=(Click(160, 5, True),)))
    with pytest.raises(UserError, match=r'nothing marks the object: draw a box around it or click on it'):
        prompt_mask(image, Prompt(clicks=(Click(60, 60, False),)))
    with pytest.raises(UserError, match=r'the box is 3x50 pixels inside the frame'):
        prompt_mask(image, Prompt(box=(157, 0, 300, 50)))
    with pytest.raises(UserError, match=r'the object strokes are 10x10 pixels, the frame 160x120'):
        prompt_mask(image, Prompt(box=(30, 30, 120, 90), object_strokes=np.ones((10, 10), bool)))


# ---------------------------------------------------------------- GrabCut
def test_grabcut_takes_the_box_then_a_negative_click_removes_what_is_not_the_object(squares):
    image, red, green = squares
    assert iou(box_mask(image, (30, 30, 120, 90)), red | green) >= 0.95  # the box holds both squares
    refined = prompt_mask(image, Prompt(box=(30, 30, 120, 90), clicks=(Click(95, 60, False),)))
    assert iou(refined, red) >= 0.95
    far_off = prompt_mask(image, Prompt(box=(30, 30, 120, 90), clicks=(Click(95, 60, False), Click(2, 2, False))))
    np.testing.assert_array_equal(far_off, refined)  # a negative click outside the crop changes nothing


def test_grabcut_grows_the_object_from_positive_clicks_without_a_box(squares):
    image, red, green = squares
    assert iou(prompt_mask(image, Prompt(clicks=(Click(60, 60, True),))), red) >= 0.95
    both = prompt_mask(image, Prompt(clicks=(Click(60, 60, True), Click(95, 60, True))))
    assert iou(both, red | green) >= 0.95


def test_strokes_are_kept_exactly_and_nothing_leaves_the_box(squares):
    image, red, green = squares
    object_strokes, background_strokes = np.zeros((H, W), bool), np.zeros((H, W), bool)
    object_strokes[10, 45:55] = True         # blue background above the red square, painted as object
    background_strokes[50:70, 60] = True     # a line through the red square, painted as background
    mask = prompt_mask(image, Prompt(box=(30, 5, 90, 90), object_strokes=object_strokes,
                                     background_strokes=background_strokes))
    assert mask[object_strokes].all() and not mask[background_strokes].any()
    assert iou(mask, (red | object_strokes) & ~background_strokes) >= 0.9
    assert not mask[:, :30].any() and not mask[:, 90:].any() and not mask[90:].any()


def test_a_large_frame_is_cut_to_a_crop_around_the_box_and_scaled_down(monkeypatch):
    rng = np.random.RandomState(2)
    height, width = 1200, 1600
    yy, xx = np.mgrid[0:height, 0:width]
    drawn = ((xx - 800) / 300.0) ** 2 + ((yy - 600) / 250.0) ** 2 <= 1
    image = noisy((40, 60, 170), (height, width), rng)
    image[drawn] = noisy((200, 50, 40), (drawn.sum(),), rng)
    worked_on = []
    real_grabcut = cv2.grabCut

    def recording_grabcut(image, *args):
        worked_on.append(image.shape[:2])
        return real_grabcut(image, *args)

    monkeypatch.setattr(grabcut.cv2, 'grabCut', recording_grabcut)
    mask = box_mask(image.astype(np.uint8), (460, 320, 1140, 880))
    (work_h, work_w), = worked_on
    assert work_h * work_w <= grabcut.WORK_PIXELS * 1.01
    assert abs(work_w / work_h - (680 + 2 * 136) / (560 + 2 * 136)) < 0.02  # the box and its margin, scaled
    assert mask.shape == (height, width) and iou(mask, drawn) >= 0.95


# ---------------------------------------------------------------- SAM 2
@pytest.fixture(scope='module')
def tiny_sam2(tmp_path_factory):
    """(folder, {file name: bytes}) of a tiny random SAM 2 in the Hub repository's layout."""
    pytest.importorskip('transformers')
    folder = tmp_path_factory.mktemp('tiny-sam2')
    return str(folder), write_tiny_sam2(folder)


class Recorder:
    """A real processor or method that records what it is called with."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def __call__(self, *args, **kwargs):
        self.calls.append(kwargs)
        return self.real(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.fixture
def recorded(tiny_sam2, one_thread):
    """(proposer, processor calls, model calls' keyword arguments, image embedding calls) of the tiny model."""
    from transformers import Sam2Model, Sam2Processor
    folder, _ = tiny_sam2
    model = Sam2Model.from_pretrained(folder, local_files_only=True)
    processor = Recorder(Sam2Processor.from_pretrained(folder, local_files_only=True))
    model_calls = []
    model.register_forward_pre_hook(lambda module, args, kwargs: model_calls.append(kwargs), with_kwargs=True)
    embeddings = Recorder(model.get_image_embeddings)
    model.get_image_embeddings = embeddings
    return Sam2Proposer(model, processor, 'tiny'), processor.calls, model_calls, embeddings.calls


def frame(height, width):
    """The same picture at any size: a bright disc on a gradient."""
    yy, xx = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    image = np.stack([xx * 200, yy * 200, np.full_like(xx, 90)], axis=2)
    image[(xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.04] = (250, 240, 30)
    return image.astype(np.uint8)


def test_clicks_reach_the_model_in_its_input_frame_at_any_working_size(recorded):
    proposer, processor_calls, model_calls, _ = recorded
    target = IMAGE_SIZE  # the tiny model's input side, to which the processor scales coordinates
    for scale in (1, 2):
        height, width = 120 * scale, 160 * scale
        clicks = (Click(40 * scale, 30 * scale, True), Click(100 * scale, 75 * scale, False))
        mask = proposer.propose(frame(height, width), Prompt(clicks=clicks), frame_key=('clip', 0, scale))
        assert mask.shape == (height, width) and mask.dtype == bool
        call = processor_calls[-1]
        assert call['original_sizes'] == [[height, width]]
        assert call['input_points'] == [[[[40 * scale, 30 * scale], [100 * scale, 75 * scale]]]]
        assert call['input_labels'] == [[[1, 0]]]
        points = model_calls[-1]['input_points'].numpy()
        np.testing.assert_allclose(points, [[[[40 / 160 * target, 30 / 120 * target],
                                              [100 / 160 * target, 75 / 120 * target]]]], rtol=1e-6)
        assert model_calls[-1]['input_labels'].tolist() == [[[1, 0]]]
        assert model_calls[-1]['multimask_output'] is False


def test_a_box_with_clicks_and_a_single_click(recorded):
    proposer, processor_calls, model_calls, _ = recorded
    image = frame(120, 160)
    proposer.propose(image, Prompt(box=(40, 30, 120, 90), clicks=(Click(60, 50, True), Click(70, 60, False))))
    assert processor_calls[-1]['input_boxes'] == [[[40, 30, 119, 89]]]  # SAM's corners: first and last pixels
    assert processor_calls[-1]['input_labels'] == [[[1, 0]]]
    assert model_calls[-1]['multimask_output'] is False
    proposer.propose(image, Prompt(clicks=(Click(60, 50, True),)))
    assert 'input_boxes' not in processor_calls[-1]
    assert model_calls[-1]['multimask_output'] is True  # one click is ambiguous: the best of three masks


def test_the_embedding_is_computed_once_per_frame_and_the_oldest_forgotten(recorded):
    proposer, _, _, embedding_calls = recorded
    image = frame(120, 160)
    for clicks in [(Click(60, 50, True),), (Click(60, 50, True), Click(20, 20, False)), (Click(90, 70, True),)]:
        proposer.propose(image, Prompt(clicks=clicks), frame_key=('clip', 3, 0))
    assert len(embedding_calls) == 1
    proposer.propose(frame(60, 80), Prompt(clicks=(Click(30, 25, True),)), frame_key=('clip', 3, 0))
    assert len(embedding_calls) == 2  # the same key at another size is another image
    for t in range(EMBEDDINGS_KEPT):
        proposer.embedding(image, ('clip', 10 + t, 0))
    proposer.embedding(image, ('clip', 3, 0))
    assert len(embedding_calls) == 2 + EMBEDDINGS_KEPT + 1  # frame 3 was the oldest: computed again


def test_the_same_prompt_gives_the_same_mask_from_every_load_and_strokes_are_kept(tiny_sam2, recorded):
    proposer = recorded[0]
    image = frame(120, 160)
    prompt = Prompt(box=(40, 30, 120, 90), clicks=(Click(60, 50, True),))
    first = proposer.propose(image, prompt, frame_key='a')
    again = load_click_model(tiny_sam2[0])  # every weight comes from the files: none is drawn at random
    np.testing.assert_array_equal(again.propose(image, prompt), first)
    np.testing.assert_array_equal(proposer.propose(image, prompt, frame_key='a'), first)
    object_strokes, background_strokes = ~first, first.copy()
    object_strokes[:, 80:] = background_strokes[:, :80] = False
    mask = proposer.propose(image, Prompt(box=prompt.box, clicks=prompt.clicks, object_strokes=object_strokes,
                                          background_strokes=background_strokes))
    np.testing.assert_array_equal(mask, (first | object_strokes) & ~background_strokes)


def test_without_transformers_or_with_the_model_off_grabcut_answers_and_says_why(monkeypatch):
    assert model_name(CLICK_MODEL_REPO) == 'SAM 2.1 hiera tiny'
    proposer, note = open_proposer(use_click_model=False)
    assert isinstance(proposer, GrabCutProposer) and proposer.name == 'GrabCut'
    assert note == 'the click model is off; GrabCut answers boxes, clicks and strokes instead'
    monkeypatch.setitem(sys.modules, 'transformers', None)  # `import transformers` fails, as when not installed
    proposer, note = open_proposer()
    assert proposer.name == 'GrabCut'
    assert note == ('the click model needs transformers 5 (pip install -r requirements-app.txt); '
                    'GrabCut answers boxes, clicks and strokes instead')


def test_a_folder_that_holds_no_model_and_a_path_that_is_no_folder_fall_back_saying_why(tiny_sam2, tmp_path):
    (tmp_path / 'config.json').write_text('{"model_type": "sam2_video", ')  # cut short
    proposer, note = open_proposer(source=str(tmp_path))
    assert proposer.name == 'GrabCut'
    assert note.startswith(f'{tmp_path}: cannot load SAM 2 from it (')
    assert note.endswith("give a folder with SAM 2's transformers files (config.json, model.safetensors, "
                         "preprocessor_config.json); GrabCut answers boxes, clicks and strokes instead")
    proposer, note = open_proposer(source=str(tmp_path / 'nowhere'))
    assert note.startswith(f'click model {tmp_path / "nowhere"}: no such folder, and not a Hugging Face repository')


FETCH = ('import sys\nfrom utils.errors import UserError\nfrom webapp.click_model import model_folder\n'
         'for source in sys.argv[1:]:\n    try:\n        print(model_folder(source))\n'
         '    except UserError as error:\n        print(error)')


def fetch_in_new_process(home, *sources, **settings):
    """model_folder(source) (or its UserError) for each source, in a new interpreter: huggingface_hub reads its
    settings when it is imported."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(('HF_', 'HUGGINGFACE_'))}
    env.update(HF_HOME=str(home), PYTHONPATH=REPO, **settings)
    result = subprocess.run([sys.executable, '-c', FETCH, *sources], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_the_model_comes_once_through_the_hugging_face_client_then_offline_from_its_cache(tiny_sam2, serve,
                                                                                          tmp_path, one_thread):
    base, server = serve(hub_files(CLICK_MODEL_REPO, tiny_sam2[1]), hub=True)
    online = fetch_in_new_process(tmp_path, CLICK_MODEL_REPO, 'someone/missing', HF_ENDPOINT=base)
    assert online[0].startswith(str(tmp_path))
    assert online[1].startswith(f'click model someone/missing, config.json: download from {base} failed (HTTP 404')
    assert online[1].endswith('from https://huggingface.co/someone/missing into a folder and give that folder as '
                              'the click model')
    fetched = sorted(path.rsplit('/', 1)[-1] for path, _ in server.requests if '/resolve/' in path)
    assert fetched == sorted(CLICK_MODEL_FILES)  # each once (the missing repository's config.json: a HEAD only)
    image, prompt = frame(120, 160), Prompt(clicks=(Click(60, 50, True),))
    np.testing.assert_array_equal(load_click_model(online[0]).propose(image, prompt),
                                  load_click_model(tiny_sam2[0]).propose(image, prompt))
    requests = len(server.requests) + len(server.heads)

    offline = fetch_in_new_process(tmp_path, CLICK_MODEL_REPO, 'someone/other', HF_ENDPOINT=base,
                                   HF_HUB_OFFLINE='1')
    assert offline[0] == online[0]
    assert offline[1].startswith('click model someone/other, config.json: not in the Hugging Face cache (')
    assert '(HF_HUB_OFFLINE is set)' in offline[1]
    assert len(server.requests) + len(server.heads) == requests
