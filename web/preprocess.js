/*
 * Quick Draw Lab - strokes to model input, the JavaScript twin of pipeline.predict.prepare_input.
 *
 * strokes (any coordinates) -> Google's simplification (pipeline/strokes.py `simplify`) ->
 * rendering with Google's numpy_bitmap geometry (pipeline/raster.py, cairo) or the colour-coded
 * variant for stroke models. Never a crop-and-resize of canvas pixels.
 *
 * The renderer does not use the browser's 2D canvas: its anti-aliasing differs from cairo's. It
 * computes cairo's way instead - the stroke outline is the union of segments with cairo's polygonal
 * round caps/joins (the pen of _cairo_pen_vertices_needed at tolerance 0.1), its
 * coverage is measured on GRID_Y horizontal sample lines per pixel with exact horizontal spans
 * (cairo's "tor" scan converter for ANTIALIAS_BEST), quantised to 8 bits and composited stroke by
 * stroke with pixman's 8-bit OVER arithmetic. tests/test_web.py holds the result to the Python
 * pipeline on real drawings.
 *
 * Exposed as window.QuickDrawPreprocess (and module.exports under Node):
 *   simplify(strokes)                    -> [[[x...],[y...]], ...] integers 0..255
 *   render(simplified, size, options)    -> Uint8Array (size*size*channels), row-major HWC
 *   prepare(strokes, config)             -> {data: Float32Array, shape: [H, W, C], simplified, image}
 * `strokes` is Google's JSON form ([[x...],[y...](,[t...])] per stroke) or lists of points
 * ([[x, y(, t)], ...] per stroke).
 */
(function (root) {
  'use strict';

  // pipeline/strokes.py
  var SIMPLIFIED_SIDE = 255;
  var RESAMPLE_SPACING = 1.0;
  var RDP_EPSILON = 2.0;
  var MAX_ABS_COORDINATE = 1e6;
  // pipeline/raster.py GEOMETRY (preprocess.json carries the exported model's copy)
  var DEFAULT_GEOMETRY = {drawing_side: 256.0, line_width: 16.0, padding: 16.0};
  var COLOUR_STEP = 24;
  var COLOUR_FLOOR = 64;
  // Sample lines per pixel row of cairo's tor scan converter (GRID_Y).
  var GRID_Y = 15;
  // ... each sample line through the middle of its band.
  var SUB_OFFSET = 0.5;
  // cairo's default tolerance (device pixels): how closely the pen polygon follows the circle.
  var TOLERANCE = 0.1;

  function DrawingError(message) {
    this.name = 'DrawingError';
    this.message = message;
  }
  DrawingError.prototype = Object.create(Error.prototype);

  /* ------------------------------------------------------------ parsing */
  function toPointLists(strokes) {
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
        if (Math.abs(pts[q][0]) > MAX_ABS_COORDINATE || Math.abs(pts[q][1]) > MAX_ABS_COORDINATE) {
          throw new DrawingError('stroke ' + i + ' has coordinates beyond +-1e6: not a drawing');
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

  // strokes.is_simplified: integers in 0..255 and no time column (Google's own simplified files do
  // not always touch the edges, so nothing stricter holds). Canvas strokes carry time: always simplified.
  function isSimplified(strokes, hasTime) {
    if (!strokes.length || hasTime) return false;
    for (var i = 0; i < strokes.length; i++) {
      for (var j = 0; j < strokes[i].length; j++) {
        var p = strokes[i][j];
        if (p[0] < 0 || p[1] < 0 || p[0] > SIMPLIFIED_SIDE || p[1] > SIMPLIFIED_SIDE) return false;
        if (p[0] !== Math.round(p[0]) || p[1] !== Math.round(p[1])) return false;
      }
    }
    return true;
  }

  function simplifyPoints(strokes) {
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
        return extent > 0 ? [(p[0] - minX) / extent * SIMPLIFIED_SIDE, (p[1] - minY) / extent * SIMPLIFIED_SIDE]
          : [p[0] - minX, p[1] - minY];
      });
      return rdp(resample(scaled, RESAMPLE_SPACING), RDP_EPSILON).map(function (p) {
        return [roundHalfEven(p[0]), roundHalfEven(p[1])];
      });
    });
  }

  /** Google-simplified strokes ([[x...],[y...]] per stroke) for a drawing in any coordinates;
   * already simplified drawings pass through unchanged (like pipeline.strokes.to_simplified). */
  function simplify(strokes) {
    var pts = toPointLists(strokes);
    if (!pts.length) throw new DrawingError('the drawing is empty: draw at least one stroke');
    var simple = isSimplified(pts, hasTimeColumn(strokes)) ? pts : simplifyPoints(pts);
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
      var a = Math.min(255, Math.round(cov[i] * 255));
      var at = i * channels + channel;
      image[at] = Math.min(255, mulUn8(grey, a) + mulUn8(image[at], 255 - a));
    }
  }

  function geometryOf(options) {
    var g = (options && options.geometry) || DEFAULT_GEOMETRY;
    return {side: +g.drawing_side || 256, lineWidth: +g.line_width || 16, padding: +g.padding || 16};
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

  /** uint8 image (size*size*channels, HWC) of simplified strokes.
   * options: {colourCoded: false, timeChannel: false, geometry: GEOMETRY, gridY: 15} */
  function render(simplified, size, options) {
    options = options || {};
    size = size || 28;
    if (!simplified || !simplified.length) throw new DrawingError('the drawing is empty: nothing to render');
    var geometry = geometryOf(options);
    var gridY = options.gridY || GRID_Y;
    var device = toDevice(simplified, size, geometry);
    var r = geometry.lineWidth / 2 * device.scale;
    var colour = !!options.colourCoded, timeChannel = colour && !!options.timeChannel;
    var channels = timeChannel ? 2 : 1;
    var image = new Uint8Array(size * size * channels);
    var n = device.strokes.length, i;
    if (!colour) {
      for (i = 0; i < n; i++) composite(image, 0, 1, strokeCoverage(device.strokes[i], size, r, gridY), 255);
      return image;
    }
    // Colour-coded (raster.render_colour_coded): last stroke first so earlier strokes lie on top.
    for (i = n - 1; i >= 0; i--) {
      var grey = Math.max(255 - COLOUR_STEP * i, COLOUR_FLOOR);
      composite(image, 0, channels, strokeCoverage(device.strokes[i], size, r, gridY), grey);
    }
    if (timeChannel) {
      // Point order as time (simplified strokes carry no t), scaled 0..1 over the drawing.
      var total = 0;
      device.strokes.forEach(function (s) { total += s.length; });
      var span = total - 1, counter = [], at = 0;
      device.strokes.forEach(function (s) { counter.push(at); at += s.length; });
      for (i = n - 1; i >= 0; i--) {
        var pts = device.strokes[i];
        var t0 = counter[i];
        if (pts.length === 1) {
          composite(image, 1, 2, strokeCoverage(pts, size, r, gridY), timeGrey(t0, span));
          continue;
        }
        for (var j = 0; j + 1 < pts.length; j++) {
          composite(image, 1, 2, strokeCoverage([pts[j], pts[j + 1]], size, r, gridY), timeGrey(t0 + j, span));
        }
      }
    }
    return image;
  }

  function timeGrey(index, span) {
    var t = span > 0 ? index / span : 0;
    // cairo turns the double colour into 8 bits by rounding (1.0 - 0.75 t) * 255
    return Math.round((1.0 - 0.75 * t) * 255);
  }

  /** The model input for a drawing: config is an export's preprocess.json. */
  function prepare(strokes, config) {
    config = config || {representation: 'bitmap28', image_size: 28};
    var simplified = simplify(strokes);
    var colour = config.representation === 'strokes';
    var size = colour ? (config.image_size || 64) : 28;
    var timeChannel = colour && !!config.time_channel;
    var image = render(simplified, size, {colourCoded: colour, timeChannel: timeChannel, geometry: config.geometry});
    var channels = timeChannel ? 2 : 1;
    return {data: Float32Array.from(image), image: image, shape: [size, size, channels], simplified: simplified};
  }

  var api = {
    simplify: simplify, render: render, prepare: prepare, DrawingError: DrawingError,
    constants: {SIMPLIFIED_SIDE: SIMPLIFIED_SIDE, RESAMPLE_SPACING: RESAMPLE_SPACING, RDP_EPSILON: RDP_EPSILON,
      GRID_Y: GRID_Y, COLOUR_STEP: COLOUR_STEP, COLOUR_FLOOR: COLOUR_FLOOR},
  };
  root.QuickDrawPreprocess = api;
  if (typeof module !== 'undefined' && module.exports) module.exports = api;
})(typeof window !== 'undefined' ? window : globalThis);
