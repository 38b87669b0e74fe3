/*
 * Quick Draw Lab drawing page: pointer strokes -> web/preprocess.js (Google's simplification and
 * rendering, the twin of pipeline.predict) -> a TF.js graph model exported by
 * `python -m pipeline export RUN` (listed in models/index.json) -> live top-5.
 *
 * Everything about a model's input comes from its preprocess.json; a model whose file lacks a
 * constant is refused when it loads, with the reason on the page. Its output is read by
 * QuickDrawPreprocess.predictProbabilities, the one place that unwraps what TF.js returns.
 *
 * Query parameters: ?model=NAME picks a model, ?backend=cpu|webgl|wasm forces a TF.js backend.
 * For automation: window.quickdraw = {ready, predictStrokes(strokes), strokes(), model()}.
 */
(function () {
  'use strict';

  var LIVE_INTERVAL_MS = 250;   // throttle of predictions while a stroke is being drawn
  var TOP = 5;
  var params = new URLSearchParams(window.location.search);

  var canvas = document.getElementById('drawing');
  var ctx = canvas.getContext('2d');
  var picker = document.getElementById('model-picker');
  var statusEl = document.getElementById('status');
  var predictionsEl = document.getElementById('predictions');
  var inputCanvas = document.getElementById('model-input');
  var inputInfo = document.getElementById('input-info');
  var classesEl = document.getElementById('classes');
  var classesSummary = document.getElementById('classes-summary');
  var undoButton = document.getElementById('undo');
  var clearButton = document.getElementById('clear');

  var strokes = [];          // finished strokes: [[x, y, t], ...] in canvas CSS pixels, t in ms
  var current = null;        // the stroke being drawn
  var drawingStarted = null; // performance.now() of the first point
  var activePointer = null;
  var current_model = null;  // {name, graph, labels, preprocess, settings, entry}
  var loadToken = 0;
  var predicting = false, pendingPredict = false, lastLive = 0;

  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.classList.toggle('error', !!isError);
    statusEl.dataset.state = isError ? 'error' : 'ok';
  }

  function describe(error) {
    if (!error) return 'unknown error';
    return error.message || String(error);
  }

  /* ------------------------------------------------------------ canvas and strokes */
  function setupCanvas() {
    var ratio = window.devicePixelRatio || 1;
    var rect = canvas.getBoundingClientRect();
    var w = Math.max(1, Math.round(rect.width * ratio)), h = Math.max(1, Math.round(rect.height * ratio));
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    redraw();
  }

  function redraw() {
    var ratio = canvas.width / (canvas.getBoundingClientRect().width || canvas.width);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.strokeStyle = '#1d2430';
    ctx.lineWidth = 5;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    strokes.concat(current ? [current] : []).forEach(drawStroke);
  }

  function drawStroke(points) {
    if (!points.length) return;
    ctx.beginPath();
    ctx.moveTo(points[0][0], points[0][1]);
    for (var i = 0; i < points.length; i++) ctx.lineTo(points[i][0], points[i][1]);
    if (points.length === 1) ctx.lineTo(points[0][0] + 0.01, points[0][1]);
    ctx.stroke();
  }

  function pointOf(event) {
    var rect = canvas.getBoundingClientRect();
    if (drawingStarted === null) drawingStarted = performance.now();
    return [event.clientX - rect.left, event.clientY - rect.top, Math.round(performance.now() - drawingStarted)];
  }

  function onPointerDown(event) {
    if (activePointer !== null || (event.pointerType === 'mouse' && event.button !== 0)) return;
    event.preventDefault();
    activePointer = event.pointerId;
    try { canvas.setPointerCapture(event.pointerId); } catch (e) { /* capture is a nicety */ }
    current = [pointOf(event)];
    redraw();
  }

  function onPointerMove(event) {
    if (event.pointerId !== activePointer || !current) return;
    event.preventDefault();
    var events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    if (!events.length) events = [event];
    events.forEach(function (e) { current.push(pointOf(e)); });
    redraw();
    var now = performance.now();
    if (now - lastLive >= LIVE_INTERVAL_MS) { lastLive = now; schedulePredict(); }
  }

  function onPointerUp(event) {
    if (event.pointerId !== activePointer) return;
    event.preventDefault();
    activePointer = null;
    if (current && current.length) strokes.push(current);
    current = null;
    try { canvas.releasePointerCapture(event.pointerId); } catch (e) { /* already released */ }
    redraw();
    updateButtons();
    schedulePredict();
  }

  function updateButtons() {
    undoButton.disabled = strokes.length === 0;
    clearButton.disabled = strokes.length === 0;
  }

  function undo() {
    strokes.pop();
    redraw();
    updateButtons();
    schedulePredict();
  }

  function clearAll() {
    strokes = [];
    current = null;
    drawingStarted = null;
    redraw();
    updateButtons();
    schedulePredict();
  }

  /* ------------------------------------------------------------ prediction */
  function toGoogle(list) {
    return list.map(function (s) {
      return [s.map(function (p) { return p[0]; }), s.map(function (p) { return p[1]; }),
        s.map(function (p) { return p[2] || 0; })];
    });
  }

  // Top-k of a drawing with the current model; throws DrawingError for unusable drawings.
  async function classify(googleStrokes, model) {
    var prepared = QuickDrawPreprocess.prepare(googleStrokes, model.preprocess);
    var output = tf.tidy(function () {
      var x = tf.tensor(prepared.data, [1].concat(prepared.shape), 'float32');
      return QuickDrawPreprocess.predictProbabilities(model.graph, x);
    });
    var probs;
    try { probs = await output.data(); } finally { output.dispose(); }
    var order = Array.from(probs.keys()).sort(function (a, b) { return probs[b] - probs[a] || a - b; });
    return {
      prepared: prepared,
      top: order.slice(0, TOP).map(function (i) { return {label: model.labels[i], prob: probs[i]}; }),
    };
  }

  function schedulePredict() {
    if (predicting) { pendingPredict = true; return; }
    predicting = true;
    predictNow().catch(function (error) {
      setStatus('Prediction failed: ' + describe(error), true);
    }).then(function () {
      predicting = false;
      if (pendingPredict) { pendingPredict = false; schedulePredict(); }
    });
  }

  async function predictNow() {
    var all = strokes.concat(current && current.length ? [current] : []);
    var count = strokes.length;
    if (!current_model) return;
    if (!all.length) {
      showPredictions([], count);
      showInput(null);
      setStatus('Draw something: the model guesses after every stroke.');
      return;
    }
    var result;
    try {
      result = await classify(toGoogle(all), current_model);
    } catch (error) {
      if (error && error.name === 'DrawingTooSmall') {
        // The one rule for "too small" (preprocess.json's too_small, as pipeline.predict): no guess.
        showPredictions([], current ? -1 : count);
        showInput(null);
        setStatus('Too small to guess: draw a bit more.');
        return;
      }
      if (error && error.name === 'DrawingError') {
        showPredictions([], count);
        showInput(null);
        setStatus('Cannot read this drawing: ' + error.message + '. Undo or clear and draw again.', true);
        return;
      }
      throw error;
    }
    showPredictions(result.top, current ? -1 : count);
    showInput(result.prepared);
    setStatus('Guessing with ' + current_model.name + ' (' + tf.getBackend() + ').');
  }

  function showPredictions(top, strokeCount) {
    predictionsEl.textContent = '';
    top.forEach(function (item) {
      var li = document.createElement('li');
      li.dataset.label = item.label;
      li.dataset.prob = String(item.prob);
      li.textContent = item.label + ' ' + (item.prob * 100).toFixed(1) + '%';
      var bar = document.createElement('span');
      bar.className = 'bar';
      bar.style.width = Math.max(1, Math.round(item.prob * 120)) + 'px';
      li.appendChild(bar);
      predictionsEl.appendChild(li);
    });
    // How many finished strokes these guesses cover (-1 while a stroke is in progress).
    predictionsEl.dataset.strokes = String(strokeCount);
  }

  function showInput(prepared) {
    var ictx = inputCanvas.getContext('2d');
    if (!prepared) {
      ictx.fillStyle = '#000';
      ictx.fillRect(0, 0, inputCanvas.width, inputCanvas.height);
      inputInfo.textContent = '';
      return;
    }
    var h = prepared.shape[0], w = prepared.shape[1], c = prepared.shape[2];
    if (inputCanvas.width !== w || inputCanvas.height !== h) { inputCanvas.width = w; inputCanvas.height = h; }
    var image = ictx.createImageData(w, h);
    for (var i = 0; i < w * h; i++) {
      var v = prepared.image[i * c];
      image.data[i * 4] = v;
      image.data[i * 4 + 1] = c > 1 ? prepared.image[i * c + 1] : v;
      image.data[i * 4 + 2] = v;
      image.data[i * 4 + 3] = 255;
    }
    ictx.putImageData(image, 0, 0);
    inputInfo.textContent = w + ' x ' + h + (c > 1 ? ' (2 channels: order, time)' : '') + ' input, white ink on black';
  }

  /* ------------------------------------------------------------ models */
  async function fetchJson(url) {
    var response = await fetch(url, {cache: 'no-store'});
    if (!response.ok) throw new Error(url + ' answered HTTP ' + response.status);
    try {
      return await response.json();
    } catch (error) {
      throw new Error(url + ' is not valid JSON');
    }
  }

  async function loadIndex() {
    var index;
    try {
      index = await fetchJson('models/index.json');
    } catch (error) {
      setStatus('No model list (models/index.json): ' + describe(error) +
        '. Export one with `python -m pipeline export RUN`.', true);
      return null;
    }
    var models = (index && Array.isArray(index.models)) ? index.models : [];
    picker.textContent = '';
    if (!models.length) {
      setStatus('No models exported yet: run `python -m pipeline export RUN` and reload.', true);
      return null;
    }
    models.forEach(function (entry) {
      var option = document.createElement('option');
      option.value = entry.name;
      var q = entry.quantize && entry.quantize !== 'none' ? ', ' + entry.quantize : '';
      option.textContent = entry.name + ' (' + (entry.model || '?') + ', ' + (entry.classes || '?') + ' classes' + q + ')';
      picker.appendChild(option);
    });
    var wanted = params.get('model') || index.default;
    if (!models.some(function (m) { return m.name === wanted; })) wanted = models[0].name;
    picker.value = wanted;
    picker.disabled = false;
    return models;
  }

  async function loadModel(entry) {
    var token = ++loadToken;
    current_model = null;
    picker.disabled = true;
    setStatus('Loading model ' + entry.name + '...');
    var base = String(entry.path || ('models/' + entry.name)).replace(/\/?$/, '/');
    var loaded;
    try {
      var parts = await Promise.all([
        fetchJson(base + 'labels.json'), fetchJson(base + 'preprocess.json'),
        tf.loadGraphModel(base + 'model.json'),
      ]);
      loaded = {name: entry.name, labels: parts[0], preprocess: parts[1], graph: parts[2], entry: entry};
      if (!Array.isArray(loaded.labels) || !loaded.labels.length) throw new Error('labels.json holds no class names');
      // Checked now, so an incomplete preprocess.json stops the model here with its reason, not at the first stroke.
      loaded.settings = QuickDrawPreprocess.readConfig(loaded.preprocess);
      // One warm-up run: the first prediction compiles the backend's kernels.
      var inputShape = [1, loaded.settings.size, loaded.settings.size, loaded.settings.channels];
      var out = tf.tidy(function () {
        return QuickDrawPreprocess.predictProbabilities(loaded.graph, tf.zeros(inputShape));
      });
      var size = out.shape[out.shape.length - 1];
      out.dispose();
      if (size !== loaded.labels.length) {
        throw new Error('the model has ' + size + ' outputs but labels.json names ' + loaded.labels.length + ' classes');
      }
    } catch (error) {
      if (loaded && loaded.graph) loaded.graph.dispose();
      if (token !== loadToken) return;
      picker.disabled = false;
      setStatus('Could not load model "' + entry.name + '": ' + describe(error) +
        '. Re-export it with `python -m pipeline export ' + entry.name + '`.', true);
      document.body.dataset.model = 'failed';
      return;
    }
    if (token !== loadToken) { loaded.graph.dispose(); return; }
    current_model = loaded;
    picker.disabled = false;
    classesEl.textContent = '';
    loaded.labels.forEach(function (label) {
      var li = document.createElement('li');
      li.textContent = label;
      classesEl.appendChild(li);
    });
    classesSummary.textContent = 'The ' + loaded.labels.length + ' classes ' + entry.name + ' knows';
    document.body.dataset.model = entry.name;
    schedulePredict();
  }

  /* ------------------------------------------------------------ TF.js backend */
  // WebAssembly (XNNPACK, SIMD) is the fastest CPU path for these small convnets; its binaries come
  // from vendor/ next to this page (`make web`), never a CDN. Without cross-origin isolation (a plain
  // static server) there is no SharedArrayBuffer, so TF.js picks the single-threaded SIMD binary.
  var WASM_INIT_TIMEOUT_MS = 20000;

  function hasWasm() {
    return !!(tf.wasm && tf.wasm.setWasmPaths && tf.findBackendFactory && tf.findBackendFactory('wasm'));
  }

  // true when `name` is now the backend; false (and the backend unregistered, so tf.ready() does
  // not retry it) when it fails or, for wasm, hangs.
  async function trySetBackend(name) {
    var timer = null;
    try {
      var attempt = tf.setBackend(name);
      var ok = name !== 'wasm' ? await attempt : await Promise.race([attempt, new Promise(function (resolve) {
        timer = setTimeout(function () { resolve(false); }, WASM_INIT_TIMEOUT_MS);
      })]);
      if (ok && tf.getBackend() === name) return true;
    } catch (e) { /* fall through */ } finally {
      if (timer !== null) clearTimeout(timer);
    }
    if (name === 'wasm' && tf.findBackendFactory('wasm')) {
      try { tf.removeBackend('wasm'); } catch (e) { /* already gone */ }
    }
    return false;
  }

  async function chooseBackend() {
    if (hasWasm()) tf.wasm.setWasmPaths(new URL('vendor/', document.baseURI).href);
    var wanted = params.get('backend');
    var forced = !!wanted && (wanted !== 'wasm' || hasWasm()) && await trySetBackend(wanted);
    if (!forced && hasWasm()) await trySetBackend('wasm');  // else tf.ready() picks webgl, then cpu
    await tf.ready();
    document.body.dataset.backend = tf.getBackend();
    if (wanted && !forced) setStatus('TF.js backend "' + wanted + '" is not available here; using ' + tf.getBackend() + '.', true);
  }

  async function start() {
    canvas.addEventListener('pointerdown', onPointerDown);
    canvas.addEventListener('pointermove', onPointerMove);
    canvas.addEventListener('pointerup', onPointerUp);
    canvas.addEventListener('pointercancel', onPointerUp);
    canvas.addEventListener('contextmenu', function (e) { e.preventDefault(); });
    undoButton.addEventListener('click', undo);
    clearButton.addEventListener('click', clearAll);
    window.addEventListener('resize', setupCanvas);
    setupCanvas();
    showInput(null);
    if (typeof tf === 'undefined') {
      setStatus('TensorFlow.js is missing (vendor/tf.min.js): run `make web` and reload.', true);
      document.body.dataset.model = 'failed';
      return;
    }
    await chooseBackend();
    var models = await loadIndex();
    if (!models) { document.body.dataset.model = 'none'; return; }
    picker.addEventListener('change', function () {
      var entry = models.find(function (m) { return m.name === picker.value; });
      if (entry) loadModel(entry);
    });
    await loadModel(models.find(function (m) { return m.name === picker.value; }));
  }

  var ready = start().catch(function (error) {
    setStatus('The page failed to start: ' + describe(error), true);
  });

  window.quickdraw = {
    ready: ready,
    /** Top-5 [{label, prob}] for strokes in Google's form (any coordinates), with the current model. */
    predictStrokes: async function (googleStrokes) {
      await ready;
      if (!current_model) throw new Error('no model loaded');
      return (await classify(googleStrokes, current_model)).top;
    },
    /** The finished strokes as captured, [[x, y, t], ...] per stroke, canvas CSS pixels. */
    strokes: function () { return strokes.map(function (s) { return s.map(function (p) { return p.slice(); }); }); },
    model: function () { return current_model ? current_model.name : null; },
    clear: clearAll,
  };
})();
