/*
 * Quick Draw Lab - strokes to model input, the JavaScript twin of pipeline.predict.prepare_input,
 * and the model's output back to probabilities.
 *
 * strokes (any coordinates) -> Google's simplification (pipeline/strokes.py `simplify`) ->
 * rendering with Google's numpy_bitmap geometry (pipeline/raster.py, cairo) or the colour-coded
 * variant for stroke models. Never a crop-and-resize of canvas pixels.
 *
 * Every number of that pipeline (longer side, resample spacing, RDP epsilon, coordinate limit, the
 * too-small limit, geometry, stroke and time intensities, input size) comes from the model's
 * preprocess.json, which pipeline/export.py `preprocess_for` writes from the Python definitions.
 * There is no copy here: a file that lacks one is refused with a PreprocessConfigError naming it
 * (the page shows it). The only numbers below are cairo's own (its scan converter and pen
 * tolerance, which pipeline/raster.py leaves at cairo's defaults) and the 8-bit pixel scale.
 *
 * The renderer does not use the browser's 2D canvas: its anti-aliasing differs from cairo's. It
 * computes cairo's way instead - the stroke outline is the union of segments with cairo's polygonal
 * round caps/joins (the pen of _cairo_pen_vertices_needed at tolerance 0.1), its
 * coverage is measured on GRID_Y horizontal sample lines per pixel with exact horizontal spans
 * (cairo's "tor" scan converter for ANTIALIAS_BEST), quantised to 8 bits and composited stroke by
 * stroke with pixman's 8-bit OVER arithmetic. The colour-coded variant is pipeline/paint.py's
 * painter instead (a distance-based coverage, see `paintPath`), as the Python pipeline renders it.
 * tests/test_web.py holds the result to the Python pipeline on real drawings.
 *
 * Exposed as window.QuickDrawPreprocess (and module.exports under Node); `config` is always the
 * parsed preprocess.json of the model:
 *   readConfig(config)                   -> the settings used below; throws PreprocessConfigError
 *   simplify(strokes, config)            -> [[[x...],[y...]], ...] integers 0..longer_side
 *   render(simplified, config)           -> Uint8Array (H*W*C), row-major HWC
 *   prepare(strokes, config)             -> {data: Float32Array, shape: [H, W, C], simplified, image};
 *                                           throws DrawingTooSmall (a DrawingError) for a drawing too
 *                                           small to guess (pipeline.strokes.check_big_enough)
 *   predictProbabilities(model, x)       -> the probability tensor of an exported graph model
 * `strokes` is Google's JSON form ([[x...],[y...](,[t...])] per stroke) or lists of points
 * ([[x, y(, t)], ...] per stroke).
 */
(function (root) {
  'use strict';

  // cairo's, not the pipeline's: sample lines per pixel row of its tor scan converter (GRID_Y) ...
  var GRID_Y = 15;
  // ... each sample line through the middle of its band.
  var SUB_OFFSET = 0.5;
  // cairo's default tolerance (device pixels): how closely the pen polygon follows the circle.
  var TOLERANCE = 0.1;
  // Full scale of the 8-bit images (and of cairo's 8-bit colour conversion).
  var FULL = 255;

  function DrawingError(message) {
    this.name = 'DrawingError';
    this.message = message;
  }
  DrawingError.prototype = Object.create(Error.prototype);

  // A drawing too small to guess: narrower than preprocess.json's too_small.min_extent in both
  // directions, in the coordinates it was drawn in (pipeline.strokes.check_big_enough). Scaled up to
  // the simplification's longer side, a tap would become a full-width line.
  function DrawingTooSmall(message) {
    this.name = 'DrawingTooSmall';
    this.message = message;
  }
  DrawingTooSmall.prototype = Object.create(DrawingError.prototype);

  // preprocess.json is missing, incomplete or describes something this code does not implement: a
  // problem of the model's files (re-export it), never of the drawing.
  function PreprocessConfigError(message) {
    this.name = 'PreprocessConfigError';
    this.message = message;
  }
  PreprocessConfigError.prototype = Object.create(Error.prototype);

  /* ------------------------------------------------------------ preprocess.json */
  // Every field of preprocess.json and what it must hold: 'number' / 'boolean', or the list of the
  // values this code implements (its one way of aligning, rounding, capping, laying out...).
  var FIELDS = {
    'representation': ['bitmap28', 'strokes'],
    'image_size': 'number',
    'time_channel': 'boolean',
    'colour_coded': 'boolean',
    'input.height': 'number',
    'input.width': 'number',
    'input.channels': 'number',
    'input.dtype': ['float32'],
    'input.range': [[0, FULL]],
    'input.layout': ['NHWC'],
    'simplify.align': ['top-left'],
    'simplify.longer_side': 'number',
    'simplify.resample_spacing': 'number',
    'simplify.rdp_epsilon': 'number',
    'simplify.round': ['half-to-even'],
    'simplify.max_abs_coordinate': 'number',
    'too_small.min_extent': 'number',
    'geometry.drawing_side': 'number',
    'geometry.line_width': 'number',
    'geometry.padding': 'number',
    'geometry.line_cap': ['round'],
    'geometry.line_join': ['round'],
    'geometry.centre': [true],
    'stroke_intensity.first': 'number',
    'stroke_intensity.step': 'number',
    'stroke_intensity.floor': 'number',
    'time_intensity.start': 'number',
    'time_intensity.drop': 'number',
  };

  function field(config, path) {
    var value = config;
    var parts = path.split('.');
    for (var i = 0; i < parts.length; i++) {
      if (value === null || typeof value !== 'object' || !Object.prototype.hasOwnProperty.call(value, parts[i])) return undefined;
      value = value[parts[i]];
    }
    return value;
  }

  /** The settings of a model's preprocess.json, checked: every field present, of its type, and
   * consistent; otherwise a PreprocessConfigError that names what is wrong. */
  function readConfig(config) {
    if (!config || typeof config !== 'object' || Array.isArray(config)) {
      throw new PreprocessConfigError('preprocess.json is missing or not an object');
    }
    var missing = [], wrong = [];
    Object.keys(FIELDS).forEach(function (path) {
      var value = field(config, path), want = FIELDS[path];
      if (value === undefined) { missing.push(path); return; }
      if (Array.isArray(want)) {
        var text = JSON.stringify(value);
        if (!want.some(function (w) { return JSON.stringify(w) === text; })) {
          wrong.push(path + ' is ' + text + ' but this page implements only ' + want.map(function (w) { return JSON.stringify(w); }).join(' or '));
        }
      } else if (want === 'number' ? !(typeof value === 'number' && isFinite(value)) : typeof value !== want) {
        wrong.push(path + ' is ' + JSON.stringify(value) + ', not a ' + want);
      }
    });
    if (missing.length) throw new PreprocessConfigError('preprocess.json lacks ' + missing.join(', '));
    if (wrong.length) throw new PreprocessConfigError('preprocess.json: ' + wrong.join('; '));
    var colour = config.colour_coded, timeChannel = colour && config.time_channel;
    var input = config.input;
    if (colour !== (config.representation === 'strokes')) {
      wrong.push('colour_coded is ' + colour + ' for the ' + config.representation + ' representation');
    }
    if (input.height !== input.width || input.height !== config.image_size) {
      wrong.push('input ' + input.height + ' x ' + input.width + ' does not match image_size ' + config.image_size);
    }
    if (input.channels !== (timeChannel ? 2 : 1)) {
      wrong.push('input.channels is ' + input.channels + ' but the drawing renders to ' + (timeChannel ? 2 : 1));
    }
    if (wrong.length) throw new PreprocessConfigError('preprocess.json: ' + wrong.join('; '));
    return {
      size: input.height, channels: input.channels, colourCoded: colour, timeChannel: timeChannel,
      simplify: {side: config.simplify.longer_side, spacing: config.simplify.resample_spacing,
        epsilon: config.simplify.rdp_epsilon, maxAbs: config.simplify.max_abs_coordinate},
      minExtent: config.too_small.min_extent,
      geometry: {side: config.geometry.drawing_side, lineWidth: config.geometry.line_width,
        padding: config.geometry.padding},
      stroke: {first: config.stroke_intensity.first, step: config.stroke_intensity.step,
        floor: config.stroke_intensity.floor},
      time: {start: config.time_intensity.start, drop: config.time_intensity.drop},
    };
  }

  /* ------------------------------------------------------------ parsing */
  function toPointLists(strokes, maxAbs) {
    if (!Array.isArray(strokes)) throw new DrawingError('a drawing must be a list of strokes');
    var out = [];
    for (var i = 0; i < strokes.length; i++) {
      var s = strokes[i];
      if (!Array.isArray(s) || s.length === 0) continue;
      var pts = [];
      if (isGoogleStroke(s)) {
        for (var j = 0; j < s[0].length; j++) pts.push([+s[0][j], +s[1][j]]);
      } else {
        for (var k = 0; k < s.length; k++) {
          var p = s[k];
          if (Array.isArray(p)) pts.push([+p[0], +p[1]]);
          else if (p && typeof p === 'object') pts.push([+p.x, +p.y]);
        }
      }
      for (var q = 0; q < pts.length; q++) {
        if (!isFinite(pts[q][0]) || !isFinite(pts[q][1])) {
          throw new DrawingError('stroke ' + i + ' contains NaN or infinite coordinates');
        }
        if (Math.abs(pts[q][0]) > maxAbs || Math.abs(pts[q][1]) > maxAbs) {
          throw new DrawingError('stroke ' + i + ' has coordinates beyond +-' + maxAbs.toExponential() + ': not a drawing');
        }
      }
      if (pts.length) out.push(pts);
    }
    return out;
  }

  function hasTimeColumn(strokes) {
    return strokes.some(function (s) {
      if (!Array.isArray(s) || !s.length) return false;
      if (isGoogleStroke(s)) return s.length === 3;
      return s.some(function (p) { return (Array.isArray(p) && p.length >= 3) || (p && p.t !== undefined); });
    });
  }

  function isGoogleStroke(s) {
    // [[x...],[y...]] or [[x...],[y...],[t...]] with equal lengths; a 2- or 3-point stroke in point
    // form ([[x,y],[x,y]]) has inner lists of length 2/3 too, so require the inner lists to have the
    // same length as each other and be more than a point's worth OR consistent with Google form.
    if (!(s.length === 2 || s.length === 3)) return false;
    if (!Array.isArray(s[0]) || !Array.isArray(s[1])) return false;
    var n = s[0].length;
    for (var i = 1; i < s.length; i++) if (!Array.isArray(s[i]) || s[i].length !== n) return false;
    // Ambiguous only for point form with s.length (2|3) points of n (2|3) values; callers passing
    // point form should use objects {x, y} or strokes of >= 4 points. Google form is the default.
    return true;
  }

  /* ------------------------------------------------------------ simplification (strokes.simplify) */
  function roundHalfEven(v) {
    // numpy.round: halves go to the even neighbour.
    var r = Math.round(v);
    if (Math.abs(v % 1) === 0.5 && r % 2 !== 0) r -= 1;
    return r === 0 ? 0 : r;
  }

  // Points every `spacing` of arc length along the whole stroke plus its last point
  // (strokes._resample: numpy.arange positions, numpy.interp along the cumulative arc length).
  function resample(points, spacing) {
    // Google writes a one-point stroke as two equal points, and keeps both ends of a zero-length one.
    if (points.length < 2) return [points[0], points[0]];
    var arc = [0];
    for (var i = 1; i < points.length; i++) {
      arc.push(arc[i - 1] + Math.hypot(points[i][0] - points[i - 1][0], points[i][1] - points[i - 1][1]));
    }
    var total = arc[arc.length - 1];
    if (total === 0) return [points[0], points[points.length - 1]];
    var positions = [];
    var count = Math.ceil(total / spacing);
    for (var k = 0; k < count; k++) positions.push(k * spacing);
    if (positions[positions.length - 1] !== total) positions.push(total);
    var out = [], j = 0, last = arc.length - 1;
    for (var p = 0; p < positions.length; p++) {
      var x = positions[p];
      // the largest j with arc[j] <= x (numpy.interp's search), positions only grow
      while (j < last && arc[j + 1] <= x) j++;
      out.push([interp(x, arc, points, j, 0), interp(x, arc, points, j, 1)]);
    }
    return out;
  }

  function interp(x, arc, points, j, axis) {
    if (j >= arc.length - 1 || arc[j] === x) return points[j][axis];
    var slope = (points[j + 1][axis] - points[j][axis]) / (arc[j + 1] - arc[j]);
    return slope * (x - arc[j]) + points[j][axis];
  }

  function rdp(points, epsilon) {
    var n = points.length;
    if (n < 3) return points.slice();
    var keep = new Uint8Array(n);
    keep[0] = keep[n - 1] = 1;
    var stack = [[0, n - 1]];
    while (stack.length) {
      var range = stack.pop(), first = range[0], last = range[1];
      if (last - first < 2) continue;
      var a = points[first], b = points[last];
      var dx = b[0] - a[0], dy = b[1] - a[1];
      var norm = Math.hypot(dx, dy);
      var best = -1, bestIndex = -1;
      for (var i = first + 1; i < last; i++) {
        var p = points[i];
        var d = norm === 0 ? Math.hypot(p[0] - a[0], p[1] - a[1])
          : Math.abs(dy * (p[0] - a[0]) - dx * (p[1] - a[1])) / norm;
        if (d > best) { best = d; bestIndex = i; }
      }
      if (best > epsilon) {
        keep[bestIndex] = 1;
        stack.push([first, bestIndex]);
        stack.push([bestIndex, last]);
      }
    }
    var out = [];
    for (var j = 0; j < n; j++) if (keep[j]) out.push(points[j]);
    return out;
  }

  // strokes.is_simplified: integers in 0..longer_side and no time column (Google's own simplified files
  // do not always touch the edges, so nothing stricter holds). Canvas strokes carry time: always simplified.
  function isSimplified(strokes, hasTime, side) {
    if (!strokes.length || hasTime) return false;
    for (var i = 0; i < strokes.length; i++) {
      for (var j = 0; j < strokes[i].length; j++) {
        var p = strokes[i][j];
        if (p[0] < 0 || p[1] < 0 || p[0] > side || p[1] > side) return false;
        if (p[0] !== Math.round(p[0]) || p[1] !== Math.round(p[1])) return false;
      }
    }
    return true;
  }

  function simplifyPoints(strokes, settings) {
    var side = settings.side;
    var minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    strokes.forEach(function (s) {
      s.forEach(function (p) {
        minX = Math.min(minX, p[0]); minY = Math.min(minY, p[1]);
        maxX = Math.max(maxX, p[0]); maxY = Math.max(maxY, p[1]);
      });
    });
    var extent = Math.max(maxX - minX, maxY - minY);
    return strokes.map(function (s) {
      var scaled = s.map(function (p) {
        return extent > 0 ? [(p[0] - minX) / extent * side, (p[1] - minY) / extent * side]
          : [p[0] - minX, p[1] - minY];
      });
      return rdp(resample(scaled, settings.spacing), settings.epsilon).map(function (p) {
        return [roundHalfEven(p[0]), roundHalfEven(p[1])];
      });
    });
  }

  /** Google-simplified strokes ([[x...],[y...]] per stroke) for a drawing in any coordinates;
   * already simplified drawings pass through unchanged (like pipeline.strokes.to_simplified). */
  function simplify(strokes, config) {
    return simplifyWith(strokes, readConfig(config).simplify);
  }

  /** The longer side of the drawing's bounding box in its own coordinates (0 for no points). */
  function extent(pts) {
    var minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity, any = false;
    pts.forEach(function (s) {
      s.forEach(function (p) {
        any = true;
        minX = Math.min(minX, p[0]); minY = Math.min(minY, p[1]);
        maxX = Math.max(maxX, p[0]); maxY = Math.max(maxY, p[1]);
      });
    });
    return any ? Math.max(maxX - minX, maxY - minY) : 0;
  }

  // minExtent: refuse a drawing too small to guess (prepare), as pipeline.predict.prepare_input does.
  function simplifyWith(strokes, settings, minExtent) {
    var pts = toPointLists(strokes, settings.maxAbs);
    if (!pts.length) throw new DrawingError('the drawing is empty: draw at least one stroke');
    if (minExtent !== undefined) {
      var span = extent(pts);
      if (span < minExtent) {
        throw new DrawingTooSmall('the drawing is too small to guess (it spans ' + span.toFixed(1) +
          ' px; at least ' + minExtent + ' px are needed): draw a bit more');
      }
    }
    var simple = isSimplified(pts, hasTimeColumn(strokes), settings.side) ? pts : simplifyPoints(pts, settings);
    return simple.map(function (s) {
      return [s.map(function (p) { return p[0]; }), s.map(function (p) { return p[1]; })];
    });
  }

  /* ------------------------------------------------------------ rendering (raster.py) */
  function mulUn8(a, b) {
    // pixman's MUL_UN8: a * b / 255, rounded
    var t = a * b + 0x80;
    return ((t >> 8) + t) >> 8;
  }

  // cairo draws round caps and joins with a polygonal pen: for the tolerance 0.1 px, the vertices
  // needed for a circle of device radius r (_cairo_pen_vertices_needed), at angles 2*pi*i/n.
  function penVertices(r, tolerance) {
    var n;
    if (tolerance >= 4 * r) n = 1;
    else if (tolerance >= r) n = 4;
    else {
      n = Math.ceil(2 * Math.PI / Math.acos(1 - tolerance / r));
      if (n % 2) n++;
      if (n < 4) n = 4;
    }
    var out = [];
    for (var i = 0; i < n; i++) {
      var theta = 2 * Math.PI * i / n;
      out.push([r * Math.cos(theta), r * Math.sin(theta)]);
    }
    return out;
  }

  function convexHull(points) {
    var pts = points.slice().sort(function (p, q) { return p[0] - q[0] || p[1] - q[1]; });
    if (pts.length < 3) return pts;
    function cross(o, a, b) { return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]); }
    var lower = [], upper = [], i;
    for (i = 0; i < pts.length; i++) {
      while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], pts[i]) <= 0) lower.pop();
      lower.push(pts[i]);
    }
    for (i = pts.length - 1; i >= 0; i--) {
      while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], pts[i]) <= 0) upper.pop();
      upper.push(pts[i]);
    }
    upper.pop(); lower.pop();
    return lower.concat(upper);
  }

  // The outline of one segment: the exact-width rectangle plus the pen polygon at both ends.
  function segmentPolygon(a, b, r, pen) {
    var pts = [];
    for (var i = 0; i < pen.length; i++) {
      pts.push([a[0] + pen[i][0], a[1] + pen[i][1]]);
      pts.push([b[0] + pen[i][0], b[1] + pen[i][1]]);
    }
    var dx = b[0] - a[0], dy = b[1] - a[1], len = Math.hypot(dx, dy);
    if (len > 0) {
      var nx = -dy / len * r, ny = dx / len * r;
      pts.push([a[0] + nx, a[1] + ny], [a[0] - nx, a[1] - ny], [b[0] + nx, b[1] + ny], [b[0] - nx, b[1] - ny]);
    }
    var hull = convexHull(pts);
    var minY = Infinity, maxY = -Infinity;
    hull.forEach(function (p) { minY = Math.min(minY, p[1]); maxY = Math.max(maxY, p[1]); });
    return {hull: hull, minY: minY, maxY: maxY};
  }

  function polygonSpan(poly, c) {
    if (c < poly.minY || c > poly.maxY) return null;
    var hull = poly.hull, lo = Infinity, hi = -Infinity;
    for (var i = 0; i < hull.length; i++) {
      var p = hull[i], q = hull[(i + 1) % hull.length];
      if ((p[1] <= c && q[1] >= c) || (q[1] <= c && p[1] >= c)) {
        var x = p[1] === q[1] ? Math.min(p[0], q[0]) : p[0] + (c - p[1]) * (q[0] - p[0]) / (q[1] - p[1]);
        var x2 = p[1] === q[1] ? Math.max(p[0], q[0]) : x;
        lo = Math.min(lo, x); hi = Math.max(hi, x2);
      }
    }
    return lo <= hi ? [lo, hi] : null;
  }

  // Coverage (0..1 per pixel) of one stroke: a polyline of device points, round caps and joins.
  function strokeCoverage(points, size, r, gridY) {
    var pen = penVertices(r, TOLERANCE);
    var cov = new Float64Array(size * size);
    var polys = [];
    if (points.length === 1) polys.push(segmentPolygon(points[0], points[0], r, pen));
    for (var s = 0; s + 1 < points.length; s++) polys.push(segmentPolygon(points[s], points[s + 1], r, pen));
    var minY = Infinity, maxY = -Infinity;
    polys.forEach(function (p) { minY = Math.min(minY, p.minY); maxY = Math.max(maxY, p.maxY); });
    var rowStart = Math.max(0, Math.floor(minY)), rowEnd = Math.min(size - 1, Math.floor(maxY));
    var spans = [], weight = 1 / gridY;
    for (var row = rowStart; row <= rowEnd; row++) {
      for (var g = 0; g < gridY; g++) {
        var c = row + (g + SUB_OFFSET) / gridY;
        spans.length = 0;
        for (var k = 0; k < polys.length; k++) {
          var span = polygonSpan(polys[k], c);
          if (span) spans.push(span);
        }
        mergeSpans(cov, row * size, size, spans, weight);
      }
    }
    return cov;
  }

  function mergeSpans(cov, offset, size, spans, weight) {
    if (!spans.length) return;
    spans.sort(function (p, q) { return p[0] - q[0]; });
    var lo = spans[0][0], hi = spans[0][1];
    for (var m = 1; m <= spans.length; m++) {
      if (m < spans.length && spans[m][0] <= hi) { hi = Math.max(hi, spans[m][1]); continue; }
      addSpan(cov, offset, size, lo, hi, weight);
      if (m < spans.length) { lo = spans[m][0]; hi = spans[m][1]; }
    }
  }

  function addSpan(cov, offset, size, lo, hi, weight) {
    lo = Math.max(lo, 0); hi = Math.min(hi, size);
    if (hi <= lo) return;
    var first = Math.floor(lo), last = Math.min(size - 1, Math.floor(hi));
    for (var px = first; px <= last; px++) {
      var overlap = Math.min(hi, px + 1) - Math.max(lo, px);
      if (overlap > 0) cov[offset + px] += overlap * weight;
    }
  }

  function composite(image, channel, channels, cov, grey) {
    for (var i = 0; i < cov.length; i++) {
      if (cov[i] <= 0) continue;
      var a = Math.min(FULL, Math.round(cov[i] * FULL));
      var at = i * channels + channel;
      image[at] = Math.min(FULL, mulUn8(grey, a) + mulUn8(image[at], FULL - a));
    }
  }

  function toDevice(simplified, size, geometry) {
    // raster.py: scale size / (side + 2*padding + line_width), translate by half the total
    // padding, centre by (side - max) / 2.
    var totalPadding = geometry.padding * 2 + geometry.lineWidth;
    var scale = size / (geometry.side + totalPadding);
    var maxX = -Infinity, maxY = -Infinity;
    simplified.forEach(function (s) {
      for (var i = 0; i < s[0].length; i++) { maxX = Math.max(maxX, s[0][i]); maxY = Math.max(maxY, s[1][i]); }
    });
    var ox = (geometry.side - maxX) / 2 + totalPadding / 2, oy = (geometry.side - maxY) / 2 + totalPadding / 2;
    return {
      scale: scale,
      strokes: simplified.map(function (s) {
        var pts = [];
        for (var i = 0; i < s[0].length; i++) pts.push([(s[0][i] + ox) * scale, (s[1][i] + oy) * scale]);
        return pts;
      }),
    };
  }

  /** uint8 image (H*W*C, HWC) of simplified strokes, as the model of preprocess.json `config` sees it. */
  function render(simplified, config) {
    return renderWith(simplified, readConfig(config));
  }

  function renderWith(simplified, settings) {
    if (!simplified || !simplified.length) throw new DrawingError('the drawing is empty: nothing to render');
    var size = settings.size;
    var device = toDevice(simplified, size, settings.geometry);
    var r = settings.geometry.lineWidth / 2 * device.scale;
    var colour = settings.colourCoded, timeChannel = settings.timeChannel;
    var channels = settings.channels;
    var image = new Uint8Array(size * size * channels);
    var n = device.strokes.length, i;
    if (!colour) {
      // raster.render_bitmap: white ink on black.
      for (i = 0; i < n; i++) composite(image, 0, 1, strokeCoverage(device.strokes[i], size, r, GRID_Y), FULL);
      return image;
    }
    // Colour-coded (raster.render_colour_coded, painted by pipeline/paint.py): last stroke first so
    // earlier strokes lie on top.
    var stroke = settings.stroke;
    var canvas = new Float32Array(size * size), distance = new Float32Array(size * size);
    for (i = n - 1; i >= 0; i--) {
      var grey = Math.max(stroke.first - stroke.step * i, stroke.floor) / FULL;
      paintPath(canvas, distance, device.strokes[i], size, r, grey);
    }
    toBytes(canvas, image, 0, channels);
    if (timeChannel) {
      // Point order as time (simplified strokes carry no t), scaled 0..1 over the drawing; every
      // segment a path of its own at the ink of its first point (paint.py `paint_timed`).
      var total = 0;
      device.strokes.forEach(function (s) { total += s.length; });
      var span = total - 1, counter = [], at = 0;
      device.strokes.forEach(function (s) { counter.push(at); at += s.length; });
      canvas.fill(0);
      for (i = n - 1; i >= 0; i--) {
        var pts = device.strokes[i];
        var t0 = counter[i];
        if (pts.length === 1) {
          paintPath(canvas, distance, pts, size, r, timeInk(t0, span, settings.time));
          continue;
        }
        for (var j = 0; j + 1 < pts.length; j++) {
          paintPath(canvas, distance, [pts[j], pts[j + 1]], size, r, timeInk(t0 + j, span, settings.time));
        }
      }
      toBytes(canvas, image, 1, 2);
    }
    return image;
  }

  function timeInk(index, span, time) {
    var t = span > 0 ? index / span : 0;
    return time.start - time.drop * t;
  }

  /* The colour-coded painter, pipeline/paint.py's `_paint_path` step for step (Float32Array where it
   * has float32, so the two agree to the rounding): every pixel near the path gets the distance from its
   * centre to the polyline (the nearest segment: a path crossing itself is inked once), the coverage
   * of a round-capped line of half-width r is clamp(r + 1/2 - distance, 0, 1), and the path's ink
   * (0..1) is laid over the canvas with it. */
  function paintPath(canvas, distance, points, size, r, ink) {
    var reach = r + 0.5, far = 1e30;
    var loX = far, loY = far, hiX = -far, hiY = -far, i, row, col;
    for (i = 0; i < points.length; i++) {
      loX = Math.min(loX, points[i][0]); hiX = Math.max(hiX, points[i][0]);
      loY = Math.min(loY, points[i][1]); hiY = Math.max(hiY, points[i][1]);
    }
    var c0 = Math.max(0, Math.floor(loX - reach)), c1 = Math.min(size - 1, Math.ceil(hiX + reach));
    var r0 = Math.max(0, Math.floor(loY - reach)), r1 = Math.min(size - 1, Math.ceil(hiY + reach));
    if (c0 > c1 || r0 > r1) return;
    // Squared distances: one square root per pixel, not per segment.
    for (row = r0; row <= r1; row++) distance.fill(far, row * size + c0, row * size + c1 + 1);
    var segments = Math.max(1, points.length - 1);
    for (i = 0; i < segments; i++) {
      var a = points[i], b = points.length > 1 ? points[i + 1] : points[i];
      var ax = a[0], ay = a[1], dx = b[0] - ax, dy = b[1] - ay, length2 = dx * dx + dy * dy;
      var inverse = length2 > 0 ? 1 / length2 : 0;
      var s0 = Math.max(c0, Math.floor(Math.min(ax, ax + dx) - reach));
      var s1 = Math.min(c1, Math.ceil(Math.max(ax, ax + dx) + reach));
      var t0 = Math.max(r0, Math.floor(Math.min(ay, ay + dy) - reach));
      var t1 = Math.min(r1, Math.ceil(Math.max(ay, ay + dy) + reach));
      for (row = t0; row <= t1; row++) {
        var qy = row + 0.5 - ay;
        for (col = s0; col <= s1; col++) {
          var qx = col + 0.5 - ax;
          var u = Math.min(1, Math.max(0, (qx * dx + qy * dy) * inverse));
          var ex = qx - u * dx, ey = qy - u * dy, d2 = ex * ex + ey * ey;
          if (d2 < distance[row * size + col]) distance[row * size + col] = d2;
        }
      }
    }
    var reach2 = reach * reach;
    for (row = r0; row <= r1; row++) {
      for (col = c0; col <= c1; col++) {
        var d2min = distance[row * size + col];
        if (d2min < reach2) {
          var cover = Math.min(reach - Math.sqrt(d2min), 1);
          canvas[row * size + col] = canvas[row * size + col] * (1 - cover) + ink * cover;
        }
      }
    }
  }

  function toBytes(canvas, image, channel, channels) {
    for (var i = 0; i < canvas.length; i++) image[i * channels + channel] = Math.floor(Math.min(FULL, canvas[i] * FULL + 0.5));
  }

  /** The model input for a drawing: config is the model's preprocess.json. */
  function prepare(strokes, config) {
    var settings = readConfig(config);
    var simplified = simplifyWith(strokes, settings.simplify, settings.minExtent);
    var image = renderWith(simplified, settings);
    return {data: Float32Array.from(image), image: image, shape: [settings.size, settings.size, settings.channels],
      simplified: simplified};
  }

  /* ------------------------------------------------------------ model output */
  /** The probability tensor of a graph model exported by pipeline/export.py for the input tensor x.
   * The export has one output, its softmax probabilities; TF.js returns a lone output as a Tensor
   * and several as an array or a name -> Tensor map, so those must hold exactly one. The page
   * (web/app.js) and the export's browser verification (pipeline/export.py) both read the output
   * here. Call it inside tf.tidy: any other tensor predict() made is then freed. */
  function predictProbabilities(model, x) {
    var tf = root.tf;
    if (!tf) throw new Error('TensorFlow.js (tf) is not loaded');
    var output = model.predict(x);
    if (output instanceof tf.Tensor) return output;
    var outputs = Array.isArray(output) ? output : (output && typeof output === 'object' ? Object.values(output) : []);
    if (outputs.length !== 1 || !(outputs[0] instanceof tf.Tensor)) {
      throw new Error('the model returned ' + outputs.length + ' outputs; an exported model has one, its probabilities');
    }
    return outputs[0];
  }

  var api = {
    readConfig: readConfig, simplify: simplify, render: render, prepare: prepare,
    predictProbabilities: predictProbabilities,
    DrawingError: DrawingError, DrawingTooSmall: DrawingTooSmall, PreprocessConfigError: PreprocessConfigError,
  };
  root.QuickDrawPreprocess = api;
  if (typeof module !== 'undefined' && module.exports) module.exports = api;
})(typeof window !== 'undefined' ? window : globalThis);
