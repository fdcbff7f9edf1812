// The AFB-URR page: the clips of the workspace, the frames of the open one, the label mask of the frame shown,
// and its propagation. Masks travel as raw uint8 labels, one per pixel (see webapp/server.py); this page talks
// only to its own server. Every edit is saved as it is made, naming the clip's revision it was made on.
'use strict';

const $ = (id) => document.getElementById(id);
const canvas = $('canvas');
const context = canvas.getContext('2d');
const maskCanvas = document.createElement('canvas');
const CONTROLS = ['clips', 'upload', 'remove-clip', 'prev', 'next', 'slider', 'add-object', 'import', 'clear',
  'undo', 'redo', 'propagate', 'cancel', 'continue'];

const view = {
  ready: false,       // the server answers this page (it holds the token)
  stale: false,       // the clip changed elsewhere: edits wait for a reload
  palette: [], maxObjects: 0, clips: [],
  clip: null,         // the open clip as the server last answered this page
  selected: 0,        // the object the tools mark (this page's choice, kept on the server for the next visit)
  running: null,      // the clip whose propagation runs, if any
  t: 0, image: null, mask: null, source: 'none', box: null, lastPoint: null, loadToken: 0,
  uploading: false, polling: false, viewTimer: null, viewPending: null,
};

class RequestError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function say(text, info = false) {
  $('message-text').textContent = text;
  $('message').className = info ? 'info' : '';
}

function sayError(error) {
  if (error.status === 409 && /reload the page/.test(error.message)) view.stale = true;
  if (error.status === 403) view.ready = false;
  say(error.message);  // as the server wrote it: it may start with the name of the user's file
  render();
}

function guarded(handler) {
  return (event) => Promise.resolve().then(() => handler(event)).catch(sayError);
}

async function call(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { cache: 'no-store', ...options });
  } catch {
    throw new RequestError(0, 'the app does not answer: is it running? Start it again and open the address it prints');
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
    throw new RequestError(response.status, body.error);
  }
  return response;
}

const json = async (url, options) => (await call(url, options)).json();

async function labels(url) {
  const response = await call(url);
  return response.status === 204 ? null : new Uint8Array(await response.arrayBuffer());
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error('cannot show the frame; reload the page'));
    image.src = url;
  });
}

// Edits reach the server one at a time, in order, each on the revision the one before left.
let pending = Promise.resolve();
function serially(work) {
  const next = pending.then(work);
  pending = next.catch(() => {});
  return next;
}

// ---------------------------------------------------------------- addresses: each names the clip and its state

const clipUrl = (path = '') => `/api/clips/${view.clip.id}${path}`;
const frameUrl = (t) => clipUrl(`/frame/${t}`);  // a clip's frames never change
const annotationUrl = (t) => clipUrl(`/annotation/${t}?rev=${view.clip.revision}`);
const resultUrl = (t) => clipUrl(`/result/${t}?run=${view.clip.job ? view.clip.job.number : 0}`);

// ---------------------------------------------------------------- drawing

function draw() {
  if (!view.image) return;
  context.drawImage(view.image, 0, 0);
  const { width, height } = canvas;
  const pixels = new ImageData(width, height);
  const mask = view.mask;
  for (let i = 0; i < mask.length; i++) {
    const label = mask[i];
    if (label === 0) continue;
    const x = i % width;
    // A black 1-pixel outline on the object's own border pixels, as utils/overlay.py draws it.
    const border = (x > 0 && mask[i - 1] !== label) || (x < width - 1 && mask[i + 1] !== label) ||
      (i >= width && mask[i - width] !== label) || (i + width < mask.length && mask[i + width] !== label);
    pixels.data.set(border ? [0, 0, 0, 255] : [...view.palette[label], 120], 4 * i);
  }
  maskCanvas.getContext('2d').putImageData(pixels, 0, 0);
  context.drawImage(maskCanvas, 0, 0);
  if (view.box) {
    const [x0, y0, x1, y1] = view.box;
    context.strokeStyle = '#fff';
    context.lineWidth = Math.max(1, width / 400);
    context.strokeRect(x0, y0, x1 - x0, y1 - y0);
  }
  canvas.dataset.frame = `${view.clip.id}/${view.t}`;  // what the canvas shows, for tests
}

const objectName = (entry) => entry.name || `Object ${entry.label}`;
const isRunning = (job) => Boolean(job) && (job.state === 'running' || job.state === 'waiting');

function renderObjects() {
  const list = $('objects');
  list.replaceChildren();
  if (!view.clip) return;
  for (const entry of view.clip.objects) {
    const item = document.createElement('li');
    item.className = entry.label === view.selected ? 'selected' : '';
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.background = `rgb(${view.palette[entry.label].join(',')})`;
    const remove = document.createElement('button');
    remove.className = 'remove';
    remove.textContent = '×';
    remove.title = `Delete ${objectName(entry)} from every annotated frame (Undo brings it back)`;
    remove.disabled = !editable();
    remove.onclick = guarded((event) => { event.stopPropagation(); return deleteObject(entry.label); });
    item.append(swatch, objectName(entry), remove);
    item.onclick = () => { view.selected = entry.label; renderObjects(); rememberView(); };
    list.append(item);
  }
}

function editable() {
  return view.ready && !view.stale && Boolean(view.clip);
}

function jobText(job) {
  const end = job.start + job.total - 1;
  let text = `${job.state}: ${job.done} / ${job.total} frames from frame ${job.start}`;
  if (isRunning(job)) {
    if (job.fps) text += `, ${job.fps.toFixed(2)} frames/s`;
    if (job.seconds_left !== null) text += `, ${Math.ceil(job.seconds_left)} s left`;
  } else if (job.state === 'finished') {
    text += ` in ${Math.round(job.seconds)} s`;
  } else if (job.done < job.total) {
    const first = job.start + job.done;
    text += first === end ? `; frame ${end} keeps` : `; frames ${first} to ${end} keep`;
    text += ' what an earlier propagation made of them, if any';
  }
  return text;
}

function render() {
  const clip = view.clip;
  const job = clip && clip.job;
  const running = isRunning(job);
  const otherRunning = view.running && (!clip || view.running.id !== clip.id);
  const canEdit = editable();
  for (const id of CONTROLS) $(id).disabled = !canEdit;
  $('clips').disabled = !view.ready || view.clips.length === 0;
  $('upload').disabled = !view.ready || view.uploading;
  $('upload-label').classList.toggle('disabled', $('upload').disabled);
  $('import-label').classList.toggle('disabled', !canEdit);
  $('remove-clip').disabled = !canEdit || running;
  $('undo').disabled = !canEdit || !clip.undo;
  $('redo').disabled = !canEdit || !clip.redo;
  $('undo').title = clip && clip.undo ? `Undo ${clip.undo} (Ctrl+Z)` : 'Nothing to undo';
  $('redo').title = clip && clip.redo ? `Redo ${clip.redo} (Ctrl+Shift+Z)` : 'Nothing to redo';
  $('add-object').disabled = !canEdit || clip.objects.length >= view.maxObjects;
  $('add-object').title = clip && clip.objects.length >= view.maxObjects
    ? `A clip holds at most ${view.maxObjects} objects` : 'A new object to mark';
  $('propagate').disabled = !canEdit || running || otherRunning;
  $('propagate').title = otherRunning ? `A propagation of ${view.running.name} is running` : '';
  $('cancel').disabled = !view.ready || !(running || otherRunning);
  const resumable = canEdit && job && !running && !otherRunning && job.state !== 'finished' && job.done > 0 &&
    job.done < job.total;
  $('continue').hidden = !resumable;
  if (resumable) $('continue').textContent = `Continue from frame ${job.start + job.done - 1}`;
  for (const id of ['download-zip', 'download-mp4']) $(id).classList.toggle('disabled', !view.ready || !clip || running);
  if (clip) {
    const rev = `rev=${clip.revision}&run=${job ? job.number : 0}`;
    $('download-zip').href = clipUrl(`/download/masks.zip?${rev}`);
    $('download-mp4').href = clipUrl(`/download/overlay.mp4?${rev}`);
  }
  $('reload').hidden = !view.stale;
  $('clip-info').textContent = clip
    ? `${clip.frames} frames, ${clip.fps.toFixed(2)} fps, ${clip.width}x${clip.height}` + (clip.note ? ` (${clip.note})` : '')
    : view.ready ? 'No clip loaded.' : '';
  $('frame-info').textContent = clip && view.image ? `frame ${view.t} / ${clip.frames - 1} (${view.source})` : '';
  $('annotated').textContent = clip && clip.annotated.length ? `Annotated frames: ${clip.annotated.join(', ')}` : '';
  $('progress').max = job ? job.total : 1;
  $('progress').value = job ? job.done : 0;
  $('progress-text').textContent = job ? jobText(job) : otherRunning ? `A propagation of ${view.running.name} is running.` : '';
  renderObjects();
}

function renderClips() {
  const select = $('clips');
  select.replaceChildren();
  if (!view.clips.length) select.append(new Option('No clips yet', ''));
  const names = view.clips.map((clip) => clip.name);
  for (const clip of view.clips) {
    // Clips of one name (the same file loaded twice) are told apart by when they were loaded.
    const when = names.indexOf(clip.name) !== names.lastIndexOf(clip.name)
      ? `, loaded ${new Date(clip.created * 1000).toLocaleString()}` : '';
    select.append(new Option(`${clip.name} (${clip.frames} frames${when})`, clip.id));
  }
  select.value = view.clip ? view.clip.id : '';
}

// ---------------------------------------------------------------- the workspace and the clip

function takeClip(state) {
  view.clip = state;
  if (!state.objects.some((entry) => entry.label === view.selected)) {
    view.selected = state.objects.length ? state.objects[0].label : 0;
  }
  if (state.running !== undefined) view.running = state.running;
  if (state.job && state.job.error && state.job.state === 'failed') say(`Propagation failed: ${state.job.error}`);
  render();
}

async function refreshClips() {
  const state = await json('/api/state');
  Object.assign(view, { ready: true, palette: state.palette, maxObjects: state.max_objects, clips: state.clips,
    running: state.running });
  renderClips();
  return state;
}

// The canvas as large as the viewer's width and the window's height allow, keeping the frame's aspect.
function fitCanvas() {
  const below = 90;  // the slider row and the line of annotated frames
  const tall = Math.max(160, window.innerHeight - canvas.getBoundingClientRect().top - below);
  const scale = Math.min($('viewer').clientWidth / canvas.width, tall / canvas.height);
  canvas.style.width = `${Math.floor(canvas.width * scale)}px`;
}
window.addEventListener('resize', fitCanvas);

async function openClip(id) {
  await pending;
  const state = await json(`/api/clips/${id}`);
  view.image = null;
  view.stale = false;
  view.selected = state.selected;
  takeClip(state);
  history.replaceState(null, '', `#clip=${id}`);
  canvas.width = maskCanvas.width = state.width;
  canvas.height = maskCanvas.height = state.height;
  fitCanvas();
  $('slider').max = state.frames - 1;
  renderClips();
  await showFrame(state.frame);
  rememberView(0);
  if (isRunning(state.job)) poll();
}

async function showFrame(t) {
  const clip = view.clip;
  const token = ++view.loadToken;
  const [image, annotation, result] = await Promise.all([loadImage(frameUrl(t)), labels(annotationUrl(t)),
    labels(resultUrl(t))]);
  if (token !== view.loadToken || !view.clip || view.clip.id !== clip.id) return;  // a later ask won
  Object.assign(view, { t, image, box: null });
  view.mask = annotation || result || new Uint8Array(clip.width * clip.height);
  view.source = annotation ? 'annotation' : result ? 'result' : 'no mask';
  $('slider').value = t;
  render();
  draw();
  rememberView();
}

// Where the user is (frame, selected object) is kept for the next visit, a moment after it stops changing, and
// at once when the page goes away (a reload, a closed tab).
function rememberView(delay = 300) {
  clearTimeout(view.viewTimer);
  const clip = view.clip;
  view.viewPending = () => {
    view.viewPending = null;
    if (!view.ready || !view.clip || view.clip.id !== clip.id) return;
    const body = JSON.stringify({ frame: view.t, selected: view.selected });
    call(clipUrl('/view'), { method: 'PUT', body, keepalive: true }).catch(sayError);
  };
  view.viewTimer = setTimeout(view.viewPending, delay);
}
window.addEventListener('pagehide', () => {
  clearTimeout(view.viewTimer);
  if (view.viewPending) view.viewPending();
});

// ---------------------------------------------------------------- edits, each saved as it is made

function save(kind) {
  const t = view.t;
  const mask = view.mask.slice();
  view.source = 'saving';
  render();
  return serially(async () => {
    const state = await json(clipUrl(`/annotation/${t}?rev=${view.clip.revision}&edit=${kind}`),
      { method: 'PUT', body: mask });
    takeClip(state);
    if (view.t === t) view.source = state.annotated.includes(t) ? 'annotation' : 'no mask';
    render();
  });
}

function edited() {
  view.source = 'edited';
  render();
  draw();
}

function imagePoint(event) {
  const rect = canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * canvas.width / rect.width, (event.clientY - rect.top) * canvas.height / rect.height];
}

function tool() {
  return document.querySelector('input[name=tool]:checked').value;
}

function stamp([cx, cy]) {
  const radius = Number($('brush-size').value) / 2;
  const { width, height } = canvas;
  const paint = tool() === 'brush';
  const selected = view.selected;
  for (let y = Math.max(0, Math.floor(cy - radius)); y <= Math.min(height - 1, cy + radius); y++) {
    for (let x = Math.max(0, Math.floor(cx - radius)); x <= Math.min(width - 1, cx + radius); x++) {
      if ((x - cx) ** 2 + (y - cy) ** 2 > radius ** 2) continue;
      const i = y * width + x;
      if (paint) view.mask[i] = selected;
      else if (view.mask[i] === selected) view.mask[i] = 0;
    }
  }
}

function strokeTo(point) {
  const [x0, y0] = view.lastPoint || point;
  const steps = Math.max(1, Math.ceil(Math.hypot(point[0] - x0, point[1] - y0) / 2));
  for (let s = 1; s <= steps; s++) stamp([x0 + (point[0] - x0) * s / steps, y0 + (point[1] - y0) * s / steps]);
  view.lastPoint = point;
  edited();
}

canvas.addEventListener('pointerdown', (event) => {
  if (!view.image || !editable()) return;
  if (!view.selected) { say('Add an object first (Add object), then mark it.'); return; }
  canvas.setPointerCapture(event.pointerId);
  const point = imagePoint(event);
  if (tool() === 'box') view.box = [...point, ...point];
  else { view.lastPoint = null; strokeTo(point); }
});

canvas.addEventListener('pointermove', (event) => {
  if (!canvas.hasPointerCapture(event.pointerId)) return;
  const point = imagePoint(event);
  if (view.box) { view.box = [view.box[0], view.box[1], ...point]; draw(); }
  else if (tool() !== 'box') strokeTo(point);
});

canvas.addEventListener('pointerup', guarded(async (event) => {
  if (!canvas.hasPointerCapture(event.pointerId)) return;
  canvas.releasePointerCapture(event.pointerId);
  view.lastPoint = null;
  if (view.box) await proposeFromBox(view.box);
  else await save(tool());
}));

async function proposeFromBox([x0, y0, x1, y1]) {
  const box = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)].map(Math.round);
  const t = view.t;
  const label = view.selected;
  say('GrabCut is proposing a mask…', true);
  let inside;
  try {
    inside = new Uint8Array(await (await call(clipUrl(`/grabcut?frame=${t}&box=${box.join(',')}`), { method: 'POST' })).arrayBuffer());
  } finally {
    view.box = null;
    draw();
  }
  if (t !== view.t) return;
  if (!inside.includes(1)) {
    say('GrabCut found no object in this box; draw the box closer around the object, or paint it with the brush.');
    return;
  }
  for (let i = 0; i < inside.length; i++) {
    if (view.mask[i] === label) view.mask[i] = 0;
    if (inside[i]) view.mask[i] = label;
  }
  say('');
  edited();
  await save('box');
}

function deleteObject(label) {
  return serially(async () => {
    takeClip(await json(clipUrl(`/objects/${label}/delete?rev=${view.clip.revision}`), { method: 'POST' }));
    await showFrame(view.t);
  });
}

function step(kind) {
  return serially(async () => {
    const state = await json(clipUrl(`/${kind}?rev=${view.clip.revision}`), { method: 'POST' });
    takeClip(state);
    await showFrame(state.changed.includes(view.t) || !state.changed.length ? view.t : state.changed[0]);
    say(`${kind === 'undo' ? 'Undone' : 'Redone'}.`, true);
  });
}

// ---------------------------------------------------------------- propagation

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Follows the open clip's propagation; takes only the job from the answers (a newer revision made by another
// tab shows at this page's next edit, which is refused with a message to reload).
async function poll() {
  if (view.polling) return;
  view.polling = true;
  try {
    for (;;) {
      const clip = view.clip;
      const state = await json(`/api/clips/${clip.id}`);
      if (!view.clip || view.clip.id !== clip.id) return;
      view.clip.job = state.job;
      view.running = state.running;
      render();
      const job = state.job;
      if (!isRunning(job)) {
        if (job && job.state === 'failed') say(`Propagation failed: ${job.error}`);
        await showFrame(view.t);
        return;
      }
      const latest = job.start + job.done - 1;
      if ($('follow').checked && latest >= job.start && latest !== view.t && view.source !== 'edited') {
        await showFrame(latest);
      }
      await sleep(500);
    }
  } finally {
    view.polling = false;
  }
}

function propagate(start, fromResult) {
  return serially(async () => {
    const query = `start=${start}&rev=${view.clip.revision}${fromResult ? '&from_result=1' : ''}`;
    takeClip(await json(clipUrl(`/propagate?${query}`), { method: 'POST' }));
    say('');
    poll().catch(sayError);
  });
}

// ---------------------------------------------------------------- controls

$('upload').addEventListener('change', guarded(async (event) => {
  const file = event.target.files[0];
  event.target.value = '';
  if (!file) return;
  say(`Loading ${file.name}…`, true);
  view.uploading = true;
  render();
  try {
    const state = await json(`/api/clips?name=${encodeURIComponent(file.name)}`, { method: 'POST', body: file });
    await refreshClips();
    await openClip(state.id);
  } finally {
    view.uploading = false;
    render();
  }
  say(`Loaded ${file.name}. Add an object and draw a box around it.`, true);
}));

$('clips').addEventListener('change', guarded(() => openClip($('clips').value)));

$('remove-clip').addEventListener('click', guarded(async () => {
  const clip = view.clip;
  if (!confirm(`Remove the clip "${clip.name}" with its annotations and masks from the workspace? ` +
    'Undo cannot bring it back.')) return;
  await serially(() => call(clipUrl(), { method: 'DELETE' }));
  view.clip = null;
  view.image = null;
  history.replaceState(null, '', '#');
  const state = await refreshClips();
  say(`Removed ${clip.name}.`, true);
  if (state.clips.length) await openClip(state.clips[state.clips.length - 1].id);
  else { context.clearRect(0, 0, canvas.width, canvas.height); render(); }
}));

$('import').addEventListener('change', guarded(async (event) => {
  const file = event.target.files[0];
  event.target.value = '';
  if (!file) return;
  const t = view.t;
  await serially(async () => {
    const query = `rev=${view.clip.revision}&name=${encodeURIComponent(file.name)}`;
    takeClip(await json(clipUrl(`/annotation/${t}/import?${query}`), { method: 'POST', body: file }));
    await showFrame(t);
  });
  say(`Imported ${file.name} on frame ${t}.`, true);
}));

$('add-object').addEventListener('click', guarded(() => serially(async () => {
  if (view.clip.objects.length >= view.maxObjects) {
    say(`A clip holds at most ${view.maxObjects} objects.`);
    return;
  }
  const state = await json(clipUrl('/objects'), { method: 'POST' });
  view.selected = state.selected;
  takeClip(state);
})));

$('clear').addEventListener('click', guarded(async () => {
  view.mask.fill(0);
  edited();
  await save('clear');
}));

$('undo').addEventListener('click', guarded(() => step('undo')));
$('redo').addEventListener('click', guarded(() => step('redo')));
document.addEventListener('keydown', (event) => {
  if (!(event.ctrlKey || event.metaKey) || event.altKey || event.target.matches('input[type=text], textarea')) return;
  const key = event.key.toLowerCase();
  const kind = key === 'z' ? (event.shiftKey ? 'redo' : 'undo') : key === 'y' ? 'redo' : null;
  if (!kind) return;
  event.preventDefault();
  if (!$(kind).disabled) guarded(() => step(kind))();
});

$('slider').addEventListener('input', guarded(() => showFrame(Number($('slider').value))));
$('prev').addEventListener('click', guarded(() => showFrame(Math.max(0, view.t - 1))));
$('next').addEventListener('click', guarded(() => showFrame(Math.min(view.clip.frames - 1, view.t + 1))));

$('propagate').addEventListener('click', guarded(async () => {
  await pending;
  if (!view.clip.annotated.includes(view.t)) { say('Mark at least one object on this frame first.'); return; }
  await propagate(view.t, false);
}));
$('continue').addEventListener('click', guarded(async () => {
  const job = view.clip.job;
  await propagate(job.start + job.done - 1, true);
}));
$('cancel').addEventListener('click', guarded(async () => {
  await call('/api/cancel', { method: 'POST' });
  if (view.running && (!view.clip || view.running.id !== view.clip.id)) await refreshClips();
  render();
}));
$('reload').addEventListener('click', () => location.reload());
$('download-mp4').addEventListener('click', () => {
  say(`Making the overlay video of ${view.clip.frames} frames; the download starts when it is ready.`, true);
});
$('download-zip').addEventListener('click', () => say('Making the zip; the download starts when it is ready.', true));

window.addEventListener('load', guarded(async () => {
  render();
  const state = await refreshClips();
  const wanted = new URLSearchParams(location.hash.slice(1)).get('clip');
  const known = (id) => id && state.clips.some((clip) => clip.id === id);
  const id = known(wanted) ? wanted : known(state.current) ? state.current : null;
  if (id) await openClip(id);
  else { render(); say('Load a video (MP4, MOV, AVI, WebM) or a zip of frames to start.', true); }
}));
