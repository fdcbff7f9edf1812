// The AFB-URR page: one clip, its frames, the label mask of the frame shown, and the propagation job.
// Masks travel as raw uint8 labels, one per pixel (see webapp/server.py); this page talks only to its own server.
'use strict';

const $ = (id) => document.getElementById(id);
const canvas = $('canvas');
const context = canvas.getContext('2d');
const maskCanvas = document.createElement('canvas');

const view = {
  clip: null, palette: [], annotated: [], job: null,
  t: 0, image: null, mask: null, source: 'none', dirty: false,
  objects: [], selected: 0, box: null, lastPoint: null, loadToken: 0,
};

function say(text, info = false) {
  $('message').textContent = text;
  $('message').className = info ? 'info' : '';
}

async function call(url, options = {}) {
  const response = await fetch(url, options);
  if (!response.ok) {
    const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
    throw new Error(body.error);
  }
  return response;
}

async function labels(url) {
  const response = await call(url);
  return response.status === 204 ? null : new Uint8Array(await response.arrayBuffer());
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`cannot show ${url}`));
    image.src = url;
  });
}

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
}

function renderObjects() {
  const list = $('objects');
  list.replaceChildren();
  for (const label of view.objects) {
    const item = document.createElement('li');
    item.className = label === view.selected ? 'selected' : '';
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.background = `rgb(${view.palette[label].join(',')})`;
    const remove = document.createElement('button');
    remove.className = 'remove';
    remove.textContent = '×';
    remove.title = 'Remove this object from the frame';
    remove.onclick = (event) => { event.stopPropagation(); removeObject(label); };
    item.append(swatch, `Object ${label}`, remove);
    item.onclick = () => { view.selected = label; renderObjects(); };
    list.append(item);
  }
}

function renderStatus() {
  const clip = view.clip;
  const job = view.job;
  const running = job && (job.state === 'running' || job.state === 'waiting');
  $('clip-info').textContent = clip
    ? `${clip.name}: ${clip.frames} frames, ${clip.fps.toFixed(2)} fps, ${clip.width}x${clip.height}`
      + (clip.note ? ` (${clip.note})` : '')
    : 'No clip loaded.';
  $('frame-info').textContent = clip ? `frame ${view.t} / ${clip.frames - 1} (${view.dirty ? 'edited' : view.source})` : '';
  $('annotated').textContent = view.annotated.length ? `Annotated frames: ${view.annotated.join(', ')}` : '';
  for (const id of ['propagate', 'clear', 'add-object', 'prev', 'next', 'slider']) $(id).disabled = !clip || (running && id === 'propagate');
  $('cancel').disabled = !running;
  $('upload').disabled = running;
  for (const id of ['download-zip', 'download-mp4']) $(id).classList.toggle('disabled', !clip || running);
  if (!job) {
    $('progress').value = 0;
    $('progress-text').textContent = '';
    return;
  }
  $('progress').max = job.total;
  $('progress').value = job.done;
  let text = `${job.state}: ${job.done} / ${job.total} frames from frame ${job.start}`;
  if (job.fps) text += `, ${job.fps.toFixed(2)} frames/s`;
  if (running && job.seconds_left !== null) text += `, ${Math.ceil(job.seconds_left)} s left`;
  $('progress-text').textContent = text;
  if (job.error) say(job.error);
}

// ---------------------------------------------------------------- state and frames

function takeState(state) {
  view.clip = state.clip;
  view.palette = state.palette;
  view.annotated = state.annotated;
  view.job = state.job;
  renderStatus();
}

function noteObjects(mask) {
  const present = new Set(mask);
  present.delete(0);
  present.delete(255);
  for (const label of present) if (!view.objects.includes(label)) view.objects.push(label);
  view.objects.sort((a, b) => a - b);
  if (!view.objects.includes(view.selected)) view.selected = view.objects[0] || 0;
  renderObjects();
}

async function showFrame(t) {
  if (view.dirty) await saveAnnotation();
  const token = ++view.loadToken;
  const [image, annotation, result] = await Promise.all(
    [loadImage(`/api/frame/${t}`), labels(`/api/annotation/${t}`), labels(`/api/result/${t}`)]);
  if (token !== view.loadToken) return;  // a later frame was asked for meanwhile
  Object.assign(view, { t, image, box: null, dirty: false });
  view.mask = annotation || result || new Uint8Array(view.clip.width * view.clip.height);
  view.source = annotation ? 'annotation' : result ? 'result' : 'no mask';
  $('slider').value = t;
  noteObjects(view.mask);
  renderStatus();
  draw();
}

async function openClip() {
  canvas.width = maskCanvas.width = view.clip.width;
  canvas.height = maskCanvas.height = view.clip.height;
  $('slider').max = view.clip.frames - 1;
  await showFrame(0);
}

async function saveAnnotation() {
  const response = await call(`/api/annotation/${view.t}`, { method: 'PUT', body: view.mask });
  view.annotated = (await response.json()).annotated;
  view.dirty = false;
  view.source = view.annotated.includes(view.t) ? 'annotation' : 'no mask';
  renderStatus();
}

function edited() {
  view.dirty = true;
  renderStatus();
  draw();
}

// ---------------------------------------------------------------- editing

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
  for (let y = Math.max(0, Math.floor(cy - radius)); y <= Math.min(height - 1, cy + radius); y++) {
    for (let x = Math.max(0, Math.floor(cx - radius)); x <= Math.min(width - 1, cx + radius); x++) {
      if ((x - cx) ** 2 + (y - cy) ** 2 > radius ** 2) continue;
      const i = y * width + x;
      if (paint) view.mask[i] = view.selected;
      else if (view.mask[i] === view.selected) view.mask[i] = 0;
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
  if (!view.image) return;
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

canvas.addEventListener('pointerup', (event) => {
  if (!canvas.hasPointerCapture(event.pointerId)) return;
  canvas.releasePointerCapture(event.pointerId);
  view.lastPoint = null;
  if (view.box) proposeFromBox(view.box).catch((error) => say(error.message));
});

async function proposeFromBox([x0, y0, x1, y1]) {
  const box = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)].map(Math.round);
  const t = view.t;
  const label = view.selected;
  say('GrabCut is proposing a mask…', true);
  const response = await call(`/api/grabcut?frame=${t}&box=${box.join(',')}`, { method: 'POST' });
  const inside = new Uint8Array(await response.arrayBuffer());
  view.box = null;
  if (t !== view.t) return;
  for (let i = 0; i < inside.length; i++) {
    if (view.mask[i] === label) view.mask[i] = 0;
    if (inside[i]) view.mask[i] = label;
  }
  say('');
  edited();
}

function removeObject(label) {
  view.objects = view.objects.filter((l) => l !== label);
  if (view.selected === label) view.selected = view.objects[0] || 0;
  if (view.mask && view.mask.includes(label)) {
    view.mask = view.mask.map((l) => (l === label ? 0 : l));
    edited();
  }
  renderObjects();
}

// ---------------------------------------------------------------- jobs

async function poll() {
  const state = await (await call('/api/state')).json();
  takeState(state);
  const job = state.job;
  const running = job && (job.state === 'running' || job.state === 'waiting');
  const latest = job ? job.start + job.done - 1 : -1;
  if ($('follow').checked && !view.dirty && latest >= job.start && latest !== view.t && running) await showFrame(latest);
  if (running) setTimeout(() => poll().catch((error) => say(error.message)), 500);
  else if (!view.dirty) await showFrame(view.t);
}

function guarded(handler) {
  return (event) => handler(event).catch((error) => say(error.message));
}

$('upload').addEventListener('change', guarded(async (event) => {
  const file = event.target.files[0];
  event.target.value = '';
  if (!file) return;
  say(`Loading ${file.name}…`, true);
  const response = await call(`/api/upload?name=${encodeURIComponent(file.name)}`, { method: 'POST', body: file });
  takeState(await response.json());
  Object.assign(view, { objects: [], selected: 0, dirty: false, job: null });
  await openClip();
  say(`Loaded ${file.name}. Add an object and draw a box around it.`, true);
}));

$('import').addEventListener('change', guarded(async (event) => {
  const file = event.target.files[0];
  event.target.value = '';
  if (!file) return;
  const response = await call(`/api/annotation/${view.t}/import`, { method: 'POST', body: file });
  view.dirty = false;
  await showFrame(view.t);
  noteObjects(new Uint8Array(await response.arrayBuffer()));
  takeState(await (await call('/api/state')).json());
}));

$('add-object').addEventListener('click', () => {
  const label = Math.max(0, ...view.objects) + 1;
  if (label > 254) { say('At most 254 objects.'); return; }
  view.objects.push(label);
  view.selected = label;
  renderObjects();
});

$('clear').addEventListener('click', () => { view.mask.fill(0); edited(); });
$('slider').addEventListener('input', guarded(() => showFrame(Number($('slider').value))));
$('prev').addEventListener('click', guarded(() => showFrame(Math.max(0, view.t - 1))));
$('next').addEventListener('click', guarded(() => showFrame(Math.min(view.clip.frames - 1, view.t + 1))));

$('propagate').addEventListener('click', guarded(async () => {
  await saveAnnotation();
  if (!view.annotated.includes(view.t)) { say('Mark at least one object on this frame first.'); return; }
  say('');
  view.job = await (await call(`/api/propagate?start=${view.t}`, { method: 'POST' })).json();
  renderStatus();
  await poll();
}));

$('cancel').addEventListener('click', guarded(async () => takeState(await (await call('/api/cancel', { method: 'POST' })).json())));

window.addEventListener('load', guarded(async () => {
  takeState(await (await call('/api/state')).json());
  if (!view.clip) { say('Load a video (MP4, MOV, AVI, WebM) or a zip of frames to start.', true); return; }
  await openClip();
  if (view.job && !['finished', 'cancelled', 'failed'].includes(view.job.state)) await poll();
}));
