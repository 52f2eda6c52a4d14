/* Helios liquidity page in the browser: live appends to the Plotly heatmap, the Lightweight Charts technical
 * view below it, and the two kept on one time axis with one cursor.
 *
 * Heatmap: the server sends only what is new (dashboard/figures.py build_update): heatmap columns, line
 * points and trade bubbles are appended to the traces already drawn (keeping a sliding window), walls and
 * signals are replaced; then one Plotly.redraw. The layout is not touched, so pan and zoom stay.
 *
 * Technical view: TradingView's Lightweight Charts v5 (served from the installed lwcharts package): candles,
 * VWAP with its bands, volume, CVD and OFI panes, walls as price lines, signal and bot-trade markers. Its data
 * (figures.technical_data) is small and replaced whole.
 *
 * One time axis: Lightweight Charts places bars by index ("logical" position), Plotly by time. heliosSync maps
 * between the two through the bars' open times, so a pan or zoom in either chart sets the other to the same
 * time range. The cursor readout (#cursor) shows time, price, resting size and the candle from either chart.
 *
 * For the browser tests: window.heliosTimings (performance.now() ms), window.heliosLW (the chart and series),
 * window.heliosCursor (the last readout).
 */
window.heliosTimings = window.heliosTimings || {afterplot: [], append: []};

var HELIOS_THEME = {bg: '#121212', text: '#c9d1d9', grid: '#1f1f1f', up: '#00ff84', down: '#ff4976',
                    vwap: '#ffd24d', band: 'rgba(255,210,77,0.55)', cvd: '#7fb3ff', border: '#2a2a2a'};
/* The price scale's width: figures.MARGIN_R, so both plot areas span the same pixels of the time axis. */
var LW_SCALE_PX = 80;
/* Wall labels closer than this (px) on the price axis would overlap: the smaller wall's label is folded in. */
var WALL_LABEL_PX = 18;

function heliosGraph() {
  var g = document.getElementById('graph');
  return g ? g.querySelector('.js-plotly-plot') : null;
}

/* A base64 uint8 2D typed-array spec ({dtype, bdata, shape}) as an Array of rows. */
function heliosRows(v) {
  if (Array.isArray(v)) { return v; }
  if (v && v.bdata !== undefined) {
    var raw = atob(v.bdata), shape = String(v.shape).split(','), n = +shape[0], m = +shape[1];
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    var rows = new Array(n);
    for (var r = 0; r < n; r++) { rows[r] = Array.from(bytes.subarray(r * m, (r + 1) * m)); }
    return rows;
  }
  return [];
}

function heliosSet(trace, path, value) {
  var parts = path.split('.'), o = trace;
  for (var i = 0; i < parts.length - 1; i++) { o[parts[i]] = o[parts[i]] || {}; o = o[parts[i]]; }
  o[parts[parts.length - 1]] = value;
}

/* Append to one of the page's measurement logs (timings, pushed columns, message sizes), keeping the newest
 * HELIOS_LOG_MAX (trimmed once 10 % over): a page left open for days must not grow with them. The browser
 * tests and make bench read at most a few hundred entries; a live page appends one to each of five logs a
 * second (~0.3 KB), so they stop growing after about 20 minutes at ~0.35 MB. */
var HELIOS_LOG_MAX = 1000;
function heliosLog(arr, v) {
  arr.push(v);
  if (arr.length > HELIOS_LOG_MAX * 1.1) { arr.splice(0, arr.length - HELIOS_LOG_MAX); }
}

function heliosTail(a, b, keep) {
  var out = (a || []).concat(b);
  return out.length > keep ? out.slice(out.length - keep) : out;
}

/* ---- Lightweight Charts ------------------------------------------------------------------------------- */

var heliosLW = window.heliosLW = {chart: null, series: {}, markers: null, walls: [], lines: [], data: null,
                                  times: [], tf: 60};

function heliosLWCreate() {
  var el = document.getElementById('lw');
  if (!el || typeof LightweightCharts === 'undefined') { return null; }
  var L = LightweightCharts, T = HELIOS_THEME;
  var chart = L.createChart(el, {
    autoSize: true,
    layout: {background: {type: 'solid', color: T.bg}, textColor: T.text, fontSize: 11,
             panes: {separatorColor: T.border, enableResize: true}},  // keeps TradingView's attribution logo
    grid: {vertLines: {color: T.grid}, horzLines: {color: T.grid}},
    rightPriceScale: {borderColor: T.border, minimumWidth: LW_SCALE_PX},
    leftPriceScale: {visible: false},
    timeScale: {borderColor: T.border, timeVisible: true, secondsVisible: true, minBarSpacing: 0.01,
                rightOffset: 0, fixLeftEdge: false, fixRightEdge: false, tickMarkFormatter: heliosTickLabel},
    crosshair: {mode: L.CrosshairMode.Normal},
    localization: {timeFormatter: function (t) { return heliosHms(t * 1000); }},
  });
  var s = heliosLW.series, line = {priceLineVisible: false, lastValueVisible: false, crosshairMarkerVisible: false};
  s.candles = chart.addSeries(L.CandlestickSeries, {upColor: T.up, downColor: T.down, borderVisible: false,
                                                    wickUpColor: T.up, wickDownColor: T.down, title: ''}, 0);
  s.vwap = chart.addSeries(L.LineSeries, Object.assign({color: T.vwap, lineWidth: 2, title: 'VWAP'}, line), 0);
  [['u1', L.LineStyle.Dotted], ['l1', L.LineStyle.Dotted], ['u2', L.LineStyle.Dashed], ['l2', L.LineStyle.Dashed]]
    .forEach(function (b) {
      s[b[0]] = chart.addSeries(L.LineSeries, Object.assign({color: T.band, lineWidth: 1, lineStyle: b[1]}, line), 0);
    });
  s.volume = chart.addSeries(L.HistogramSeries, {priceFormat: {type: 'volume'}, title: 'volume',
                                                 priceLineVisible: false}, 1);
  s.cvd = chart.addSeries(L.LineSeries, {color: T.cvd, lineWidth: 1.5, title: 'CVD', priceLineVisible: false}, 2);
  s.ofi = chart.addSeries(L.HistogramSeries, {title: 'OFI', priceLineVisible: false}, 3);
  var panes = chart.panes();
  [4, 1, 1, 1].forEach(function (f, i) { if (panes[i] && panes[i].setStretchFactor) { panes[i].setStretchFactor(f); } });
  heliosLW.markers = L.createSeriesMarkers(s.candles, []);
  heliosLW.chart = chart;
  chart.timeScale().subscribeVisibleLogicalRangeChange(heliosSync.fromLW);
  chart.timeScale().subscribeVisibleLogicalRangeChange(heliosWallsSoon);  // autoscale moves the price axis
  chart.subscribeCrosshairMove(heliosCursorFromLW);
  return chart;
}

/* A time-axis label of the candles. Lightweight Charts puts a bar's label under the bar's centre, and a bar's
 * time is its open: labelled with that, every label would sit half a bar right of the time Plotly's axis shows
 * at the same pixel. The label names the time at the bar's centre instead (open + half a bar), so the two axes
 * agree pixel for pixel (with 15 s candles a label may read hh:mm:07.5). */
function heliosTickLabel(t) {
  return heliosHms((t + (heliosLW.tf || 0) / 2) * 1000);
}

function heliosHms(ms) {
  var d = new Date(ms), p = function (v, n) { return String(v).padStart(n || 2, '0'); };
  var frac = ms % 1000 ? '.' + p(Math.floor(d.getUTCMilliseconds() / 100), 1) : '';
  return p(d.getUTCHours()) + ':' + p(d.getUTCMinutes()) + ':' + p(d.getUTCSeconds()) + frac;
}

function heliosAge(s) {
  s = Math.max(0, Math.floor(s));
  if (s < 60) { return s + 's'; }
  if (s < 3600) { return Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') + 's'; }
  return Math.floor(s / 3600) + 'h' + String(Math.floor((s % 3600) / 60)).padStart(2, '0') + 'm';
}

/* Columns {t: [...], open: [...], ...} as Lightweight Charts points; a missing value is whitespace. */
function heliosPoints(cols, key, color) {
  var out = new Array(cols.t.length);
  for (var i = 0; i < cols.t.length; i++) {
    var v = cols[key][i];
    out[i] = v === null || v === undefined ? {time: cols.t[i]} : {time: cols.t[i], value: v};
    if (color && v !== null && v !== undefined) { out[i].color = color(i, v); }
  }
  return out;
}

function heliosTechnical(lw) {
  if (!lw) { return; }
  var chart = heliosLW.chart || heliosLWCreate();
  if (!chart) { setTimeout(function () { heliosTechnical(lw); }, 100); return; }  // script not loaded yet
  var t0 = performance.now(), c = lw.series, s = heliosLW.series, T = HELIOS_THEME;
  var key = lw.digits + ' ' + lw.timeframe;
  if (heliosLW.optionsKey !== key) {  // options only when they change: not on every push
    heliosLW.optionsKey = key;
    var fmt = {type: 'price', precision: lw.digits, minMove: Math.pow(10, -lw.digits)};
    ['candles', 'vwap', 'u1', 'l1', 'u2', 'l2'].forEach(function (k) { s[k].applyOptions({priceFormat: fmt}); });
    s.candles.applyOptions({title: lw.timeframe});
  }
  var bars = new Array(c.t.length);
  for (var i = 0; i < c.t.length; i++) {
    bars[i] = {time: c.t[i], open: c.open[i], high: c.high[i], low: c.low[i], close: c.close[i]};
  }
  heliosSync.lock = true;  // setData moves the logical range; heliosSync.toLW puts Plotly's back below
  heliosSync.quietUntil = performance.now() + 50;
  s.candles.setData(bars);
  ['vwap', 'u1', 'l1', 'u2', 'l2', 'cvd'].forEach(function (k) { s[k].setData(heliosPoints(c, k)); });
  s.volume.setData(heliosPoints(c, 'volume', function (i) {
    return c.close[i] >= c.open[i] ? 'rgba(0,255,132,0.5)' : 'rgba(255,73,118,0.5)'; }));
  s.ofi.setData(heliosPoints(c, 'ofi', function (i, v) { return v >= 0 ? T.up : T.down; }));
  heliosLW.markers.setMarkers(lw.markers.map(function (m) {
    return {time: m.time, position: m.position, shape: m.shape, color: m.color, text: m.text};
  }));
  heliosLW.data = lw;
  heliosLW.times = c.t;
  heliosLW.tf = lw.tf_s;
  heliosSync.lock = false;
  heliosSync.toLW(true);
  heliosWallsSoon();
  heliosLog(window.heliosTimings.technical = window.heliosTimings.technical || [], performance.now() - t0);
}

/* Active walls as price lines on the candles, labelled with side, size and age. Labels that would overlap on
 * the price axis (closer than WALL_LABEL_PX) are folded into the bigger wall's label ("+n"): the bigger wall
 * keeps its line, the others are not drawn, so no two labels ever overlap. Redone when the price scale moves. */
/* Wall labels are placed from pixel coordinates, which exist once the chart has laid out the new data. */
function heliosWallsSoon() {
  if (heliosLW.wallsPending) { return; }
  heliosLW.wallsPending = true;
  requestAnimationFrame(function () { requestAnimationFrame(function () {
    heliosLW.wallsPending = false;
    heliosWalls();
  }); });
}

function heliosWalls() {
  var lw = heliosLW.data, s = heliosLW.series.candles;
  if (!lw || !s) { return; }
  heliosLW.lines.forEach(function (l) { s.removePriceLine(l.line); });
  heliosLW.lines = [];
  var walls = lw.walls.slice().sort(function (a, b) { return b.size - a.size; }), kept = [];
  walls.forEach(function (w) {
    var y = s.priceToCoordinate(w.price);
    if (y === null) { return; }  // outside the visible price range
    var near = kept.find(function (k) { return Math.abs(k.y - y) < WALL_LABEL_PX; });
    if (near) { near.folded += 1; return; }
    kept.push({wall: w, y: y, folded: 0});
  });
  kept.forEach(function (k) {
    var w = k.wall, title = w.side + ' ' + (+w.size.toPrecision(3)) + ' ' + lw.unit + ' · ' +
      heliosAge(lw.now_s - w.first_seen_s) + (k.folded ? ' +' + k.folded : '');
    var line = s.createPriceLine({price: w.price, color: w.side === 'bid' ? HELIOS_THEME.up : HELIOS_THEME.down,
                                  lineWidth: 1, lineStyle: LightweightCharts.LineStyle.Dashed,
                                  axisLabelVisible: true, title: title});
    heliosLW.lines.push({line: line, price: w.price, title: title, y: k.y});
  });
  heliosLW.walls = kept;
}

/* ---- one time axis -------------------------------------------------------------------------------------- */

/* Bar open times (s) <-> Lightweight Charts logical positions (bar i spans i - 0.5 .. i + 0.5). A time in a
 * gap between bars maps to the boundary; before the first and after the last bar the bar width extends. */
function heliosToLogical(t) {
  var T = heliosLW.times, tf = heliosLW.tf, n = T.length;
  if (!n) { return null; }
  if (t < T[0]) { return (t - T[0]) / tf - 0.5; }
  var lo = 0, hi = n - 1;
  while (lo < hi) { var mid = (lo + hi + 1) >> 1; if (T[mid] <= t) { lo = mid; } else { hi = mid - 1; } }
  var frac = (t - T[lo]) / tf;
  return lo - 0.5 + (lo === n - 1 ? frac : Math.min(1, frac));
}

function heliosToTime(l) {
  var T = heliosLW.times, tf = heliosLW.tf, n = T.length;
  if (!n) { return null; }
  var i = Math.floor(l + 0.5), frac = l + 0.5 - i;
  if (i < 0) { return T[0] + (l + 0.5) * tf; }
  if (i >= n) { return T[n - 1] + (l + 0.5 - (n - 1)) * tf; }
  return T[i] + frac * tf;
}

function heliosPlotlyRangeMs(gd) {
  var ax = gd && gd._fullLayout && gd._fullLayout.xaxis;
  if (!ax || !ax.range) { return null; }
  return [ax.r2l(ax.range[0]), ax.r2l(ax.range[1])];
}

var heliosSync = window.heliosSync = {
  lock: false, lastLW: null, lastPlotly: null,
  /* Plotly's time range onto Lightweight Charts (after a Plotly pan/zoom, a redraw, or new LW data). */
  toLW: function (force) {
    var gd = heliosGraph(), chart = heliosLW.chart, r = heliosPlotlyRangeMs(gd);
    if (!chart || !r || !heliosLW.times.length) { return; }
    // Lightweight Charts' visible logical range {from, to} names the bars whose centres are at the edges: the
    // plot spans from - 0.5 .. to + 0.5. (Set as the edges, the candles were drawn one bar wider than Plotly's
    // range and half a bar off.)
    var from = heliosToLogical(r[0] / 1000) + 0.5, to = heliosToLogical(r[1] / 1000) - 0.5;
    var cur = heliosSync.lastLW;
    if (!force && cur && Math.abs(cur.from - from) < 1e-3 && Math.abs(cur.to - to) < 1e-3) { return; }
    heliosSync.lastLW = {from: from, to: to};
    heliosSync.lock = true;
    heliosSync.quietUntil = performance.now() + 50;
    chart.timeScale().setVisibleLogicalRange({from: from, to: to});
    heliosSync.lock = false;
  },
  /* Lightweight Charts' range onto Plotly (after a pan/zoom in the candles). */
  fromLW: function (r) {
    // Lightweight Charts may report a range change a frame after we set it (setData, toLW): only a change
    // that is not ours, seen in the chart's current range, goes to Plotly.
    if (!r || heliosSync.lock || performance.now() < (heliosSync.quietUntil || 0)) { return; }
    r = heliosLW.chart.timeScale().getVisibleLogicalRange() || r;
    var last = heliosSync.lastLW;
    if (last && Math.abs(last.from - r.from) < 1e-3 && Math.abs(last.to - r.to) < 1e-3) { return; }  // our own
    var gd = heliosGraph(), a = heliosToTime(r.from - 0.5), b = heliosToTime(r.to + 0.5);  // see toLW
    if (!gd || !gd.layout || a === null || b === null) { return; }
    heliosSync.lastLW = {from: r.from, to: r.to};
    heliosSync.lastPlotly = [a * 1000, b * 1000];
    Plotly.relayout(gd, {'xaxis.range': [a * 1000, b * 1000]});
  },
  watch: function (gd) {
    gd.on('plotly_relayout', function (ev) {
      var keys = Object.keys(ev || {});
      if (keys.some(function (k) { return k.indexOf('xaxis.range') === 0 || k === 'xaxis.autorange'; })) {
        var r = heliosPlotlyRangeMs(gd), p = heliosSync.lastPlotly;
        heliosProfileVisible(gd, false);
        if (p && r && Math.abs(p[0] - r[0]) < 1 && Math.abs(p[1] - r[1]) < 1) { return; }  // came from LW
        heliosSync.lastPlotly = r;
        heliosSync.toLW();
      }
    });
    // A redraw with an auto range (a live append, a new figure) moves the time range without a relayout; the
    // visible-range profile follows every range change (it redraws only when its range or cells changed).
    gd.on('plotly_afterplot', function () {
      heliosReleaseOldTraces(gd);
      heliosClipTimeLabels(gd);
      heliosSync.toLW();
      heliosProfileVisible(gd, false);
    });
    gd.on('plotly_relayout', function () { heliosClipTimeLabels(gd); });
    gd.on('plotly_hover', heliosCursorFromPlotly);
  },
};

/* After a new figure is drawn (a redraw, another pair or view), the traces live.js grew are no longer drawn, but
 * Dash still holds the figure they belong to (React's previous props of the graph, and the graph's event
 * handlers bind the props of their first render): a whole window of heatmap rows, bubbles and footprint cells
 * (~0.5-1 MB) for as long as the page runs. Their arrays are emptied once another figure is drawn. */
function heliosReleaseOldTraces(gd) {
  var drawn = gd.data, old = heliosReleaseOldTraces.drawn;
  heliosReleaseOldTraces.drawn = drawn;
  if (!old || old === drawn || !drawn) { return; }
  old.forEach(function (tr) {
    if (!tr || drawn.indexOf(tr) >= 0) { return; }
    ['x', 'y', 'z', 'text', 'customdata'].forEach(function (k) { if (tr[k] !== undefined) { tr[k] = []; } });
    if (tr.marker && Array.isArray(tr.marker.size)) { tr.marker.size = []; }
    if (tr.marker && Array.isArray(tr.marker.color)) { tr.marker.color = []; }
  });
}

/* The heatmap's time labels cut by the page's edge are hidden, as Plotly's default "ticklabeloverflow" would.
 * The figure turns that default off (figures.py _layout): Plotly measures each label for it through a cache
 * keyed by the label's text and pixel position, which a sliding time axis changes on every push, so the cache
 * grew by ~10 entries (~4 KB of heap) a push up to its 10,000-entry reset (~4 MB). Measured here, nothing
 * is kept. */
function heliosClipTimeLabels(gd) {
  var box = gd.getBoundingClientRect(), labels = gd.querySelectorAll('.xaxislayer-above .xtick > text');
  for (var i = 0; i < labels.length; i++) {
    var t = labels[i];
    t.style.display = '';
    var r = t.getBoundingClientRect();
    if (r.width && (r.left < box.left - 0.5 || r.right > box.right + 0.5)) { t.style.display = 'none'; }
  }
}

/* ---- one cursor ----------------------------------------------------------------------------------------- */

/* Resting size (base units) at a time (ms) and price in the heatmap as drawn: its colour level read back
 * through the figure's thresholds (meta.thr): a level stands for sizes between two thresholds. */
function heliosRestingSize(ms, price) {
  var gd = heliosGraph(), meta = window.heliosMeta;
  if (!gd || !gd.data || !gd.data.length || !meta || !meta.thr) { return null; }
  var hm = gd.data[0], xs = hm.x, n = xs.length;
  if (!n) { return null; }
  var lo = 0, hi = n - 1;
  while (lo < hi) { var mid = (lo + hi) >> 1; if (xs[mid] < ms) { lo = mid + 1; } else { hi = mid; } }
  if (lo > 0 && Math.abs(xs[lo - 1] - ms) < Math.abs(xs[lo] - ms)) { lo -= 1; }
  if (Math.abs(xs[lo] - ms) > meta.disp_us / 2000) { return null; }
  var row = heliosRows(hm.z)[lo], bin = Math.round((price - hm.y0) / hm.dy);
  if (!row || bin < 0 || bin >= row.length) { return null; }
  var level = row[bin], thr = meta.thr;
  if (!level) { return 0; }
  var a = level >= 2 ? thr[level - 2] : 0, b = level - 1 < thr.length ? thr[level - 1] : thr[thr.length - 1];
  return level >= 255 ? thr[thr.length - 1] : Math.sqrt(Math.max(a, 1e-12) * b);
}

function heliosCandleAt(tsec) {
  var lw = heliosLW.data, T = heliosLW.times;
  if (!lw || !T.length || tsec < T[0] || tsec >= T[T.length - 1] + heliosLW.tf) { return null; }
  var i = Math.min(T.length - 1, Math.max(0, Math.round(heliosToLogical(tsec))));
  if (tsec < T[i] || tsec >= T[i] + heliosLW.tf) { return null; }
  var c = lw.series, out = {time: T[i]};
  ['open', 'high', 'low', 'close', 'volume', 'vwap', 'cvd', 'ofi'].forEach(function (k) { out[k] = c[k][i]; });
  return out;
}

function heliosCursorShow(src, ms, price) {
  var el = document.getElementById('cursor'), lw = heliosLW.data, meta = window.heliosMeta || {};
  var digits = (lw && lw.digits) || meta.digits || 2, unit = (lw && lw.unit) || '';
  var size = price === null ? null : heliosRestingSize(ms, price), c = heliosCandleAt(ms / 1000);
  var f = function (v, d) { return v === null || v === undefined ? '–' : (+v).toFixed(d); };
  var parts = [heliosHms(ms)];
  if (price !== null) { parts.push('price ' + f(price, digits)); }
  parts.push('resting ' + (size === null ? '–' : (+size.toPrecision(3)) + ' ' + unit));
  if (c) {
    parts.push('O ' + f(c.open, digits) + ' H ' + f(c.high, digits) + ' L ' + f(c.low, digits) + ' C ' +
               f(c.close, digits) + ' · vol ' + f(c.volume, 4) + ' · VWAP ' + f(c.vwap, digits) + ' · CVD ' +
               f(c.cvd, 3) + ' · OFI ' + f(c.ofi, 3));
  }
  window.heliosCursor = {src: src, ms: ms, price: price, size: size, candle: c};
  if (el) { el.textContent = parts.join('  ·  '); }
}

function heliosCursorFromPlotly(ev) {
  // Only a real mouse over the heatmap: the hover heliosCursorFromLW draws here must not echo back.
  if (!ev || !(ev.event instanceof MouseEvent)) { return; }
  var p = ev.points && ev.points[0];
  if (!p) { return; }
  var ms = typeof p.x === 'number' ? p.x : Date.parse(String(p.x).replace(' ', 'T') + 'Z'), price = +p.y;
  heliosCursorShow('plotly', ms, price);
  var chart = heliosLW.chart, c = heliosCandleAt(ms / 1000);
  if (chart && c) { chart.setCrosshairPosition(price, c.time, heliosLW.series.candles); }
}

function heliosCursorFromLW(param) {
  // Only a real mouse over the candles: setCrosshairPosition (from a heatmap hover) comes without one.
  if (!param || !param.sourceEvent || param.time === undefined || !param.point) { return; }
  var price = null;
  var paneIndex = param.paneIndex === undefined ? 0 : param.paneIndex;
  if (paneIndex === 0) { price = heliosLW.series.candles.coordinateToPrice(param.point.y); }
  var l = heliosLW.chart.timeScale().coordinateToLogical(param.point.x);
  var tsec = l === null ? param.time : heliosToTime(l);
  heliosCursorShow('lw', tsec * 1000, price);
  var gd = heliosGraph();
  if (gd && gd.data && gd.data.length && price !== null && window.Plotly && Plotly.Fx) {
    try { Plotly.Fx.hover(gd, {xval: tsec * 1000, yval: price}, 'xy'); } catch (e) { /* outside the heatmap */ }
  }
}

/* ---- live appends over the push socket (dashboard/push.py) ------------------------------------------------ */

/* Apply one "columns" message to the figure drawn with ``meta``: true if applied. A message built for another
 * figure, or not continuing from the newest column the page holds (from_seq), is dropped, so no column is
 * ever drawn twice. */
function heliosApply(upd, meta) {
  var gd = heliosGraph();
  if (!upd || !meta || !gd || !gd.data || !gd.data.length || upd.fig_id !== meta.fig_id ||
      upd.from_seq !== meta.seq) {
    return false;  // checked by heliosPushColumns; kept so a stray call can never draw a column twice
  }
  var t0 = performance.now(), T = upd.trace, keep = upd.keep, d = gd.data;
  var hm = d[T.heatmap];
  hm.z = heliosTail(heliosRows(hm.z), upd.heat.z, keep);
  hm.x = heliosTail(hm.x, upd.heat.x, keep);
  Object.keys(upd.lines).forEach(function (name) {
    var tr = d[T[name]];
    tr.x = heliosTail(tr.x, upd.heat.x, keep);
    tr.y = heliosTail(tr.y, upd.lines[name], keep);
  });
  // Bubbles left of the heatmap's sliding window go with its columns: the page's memory and its redraw time
  // stay flat however long it runs (the cap bounds a window dense with trades).
  var x0 = hm.x.length ? hm.x[0] - upd.meta.disp_us / 2000 : -Infinity;
  ['buys', 'sells'].forEach(function (name) {
    var tr = d[T[name]], b = upd[name], cap = upd.bubble_cap, xs = tr.x || [], cut = 0;
    while (cut < xs.length && xs[cut] < x0) { cut++; }
    ['x', 'y', 'customdata'].forEach(function (k) { tr[k] = (tr[k] || []).slice(cut); });
    tr.marker.size = (tr.marker.size || []).slice(cut);
    tr.x = heliosTail(tr.x, b.x, cap);
    tr.y = heliosTail(tr.y, b.y, cap);
    tr.customdata = heliosTail(tr.customdata, b.v, cap);
    tr.marker.size = heliosTail(tr.marker.size, b.s, cap);
  });
  Object.keys(upd.replace).forEach(function (name) {
    var tr = d[T[name]], attrs = upd.replace[name];
    Object.keys(attrs).forEach(function (k) { heliosSet(tr, k, attrs[k]); });
  });
  if (upd.footprint && T.footprint !== undefined) { heliosFootprintMerge(d, T, upd.footprint); }
  window.heliosMeta = upd.meta;
  heliosProfileVisible(gd, true);
  Plotly.redraw(gd).then(function () {
    var t1 = performance.now();
    heliosLog(window.heliosTimings.append, {ms: t1 - t0, cols: upd.heat.x.length});
    heliosTechnical(upd.lw);
    var t2 = performance.now();
    // Lightweight Charts paints in its next animation frame: the update is on screen after that frame.
    requestAnimationFrame(function () {
      heliosLog(window.heliosTimings.update = window.heliosTimings.update || [],
                {plotly: t1 - t0, lw: performance.now() - t1, lw_js: t2 - t1, total: performance.now() - t0});
    });
  });
  return true;
}

/* Footprint cells of a push: the page's cells from ``from_x`` on (the candle the new columns fall in, and
 * later) are replaced, and those of candles left of the figure's sliding window (before ``trim_x``) dropped. */
function heliosFootprintMerge(d, T, fp) {
  ['footprint', 'bid_imbalance', 'ask_imbalance'].forEach(function (name) {
    var tr = d[T[name]], add = fp[name], keys = ['x', 'y'].concat(name === 'footprint' ? ['text', 'customdata'] : []);
    var xs = tr.x || [], keep = [];
    for (var i = 0; i < xs.length; i++) { if (xs[i] >= fp.trim_x && xs[i] < fp.from_x) { keep.push(i); } }
    keys.forEach(function (k) {
      var old = tr[k] || [];
      tr[k] = keep.map(function (i) { return old[i]; }).concat(add[k]);
    });
  });
}

/* ---- volume profile of the visible range ----------------------------------------------------------------- */

/* The value area by the rules of helios_orderflow/signals/volume_profile.py (value_area): the POC is the bin
 * with most volume (a tie: nearest the middle of the range, then the lower); grow from it ``step`` bins at a
 * time towards the side whose next bins hold more (both on a tie) until it holds ``pct`` % of the volume.
 * Returns [poc, lo, hi] indices into ``v``, or null without volume. */
function heliosValueArea(v, pct, step) {
  var n = v.length, total = 0, top = -1, i;
  for (i = 0; i < n; i++) { total += v[i]; if (v[i] > top) { top = v[i]; } }
  if (!(total > 0)) { return null; }
  var poc = -1, best = Infinity;
  for (i = 0; i < n; i++) {
    if (v[i] === top && Math.abs(2 * i - (n - 1)) < best) { best = Math.abs(2 * i - (n - 1)); poc = i; }
  }
  var target = pct / 100 * total - 1e-9 * total, lo = poc, hi = poc, inside = v[poc];
  var sum = function (a, b) { var t = 0; for (var k = a; k <= b; k++) { t += v[k]; } return t; };
  while (inside < target && (lo > 0 || hi < n - 1)) {
    var upEnd = Math.min(hi + step, n - 1), downEnd = Math.max(lo - step, 0);
    var up = hi < n - 1 ? sum(hi + 1, upEnd) : -1, down = lo > 0 ? sum(downEnd, lo - 1) : -1;
    if (up >= down) { hi = upEnd; inside += up; }
    if (down >= up) { lo = downEnd; inside += down; }
  }
  return [poc, lo, hi];
}

/* The profile of the candles whose centre is on screen, summed from the footprint cells (bid + ask per bin),
 * drawn as bars from the heatmap's right edge with its POC, VAH and VAL (window.heliosProfile holds the
 * numbers). ``inPlace``: only set the traces' data (the caller redraws). */
function heliosProfileVisible(gd, inPlace) {
  var meta = window.heliosMeta, T = meta && meta.trace;
  if (!gd || !gd.data || !T || T.profile_visible === undefined || !gd.data[T.footprint]) { return; }
  var r = heliosPlotlyRangeMs(gd), fp = gd.data[T.footprint], xs = fp.x || [], ys = fp.y || [], cd = fp.customdata || [];
  var ax = gd.layout && gd.layout.xaxis, hx = gd.data[T.heatmap].x;
  if (inPlace && (!ax || ax.autorange !== false) && hx && hx.length) {
    // A push into an auto-ranged figure: the range after this redraw is the heatmap's new extent.
    r = [hx[0] - meta.disp_us / 2000, hx[hx.length - 1] + meta.disp_us / 2000];
  }
  if (!r) { r = [-Infinity, Infinity]; }
  var bs = meta.bin_size, vol = {}, lo = Infinity, hi = -Infinity, candles = {}, sum = 0, first = null, last = null;
  for (var i = 0; i < xs.length; i++) {
    if (xs[i] < r[0] || xs[i] > r[1]) { continue; }
    var b = Math.floor(ys[i] / bs), c = cd[i];  // y is the bin's centre
    vol[b] = (vol[b] || 0) + c[0] + c[1];
    sum += c[0] + c[1];
    candles[xs[i]] = 1;
    first = first === null || xs[i] < first ? xs[i] : first;
    last = last === null || xs[i] > last ? xs[i] : last;
    if (b < lo) { lo = b; }
    if (b > hi) { hi = b; }
  }
  // What the profile is made of (not the exact range): a redraw that moves the range by less than a candle
  // leaves it as it is, without drawing again, unless the figure's traces were replaced since it was drawn (a
  // figure the server sent again, e.g. on a change of view, comes with an empty visible profile).
  var sig = [meta.fig_id, first, last, sum, lo, hi, meta.va_pct, meta.va_step].join();
  if (!inPlace && heliosProfileVisible.sig === sig && heliosProfileVisible.trace === gd.data[T.profile_levels]) {
    return;
  }
  heliosProfileVisible.sig = sig;
  heliosProfileVisible.trace = gd.data[T.profile_levels];
  var out = {x: [], y: [], customdata: [], color: []}, lv = {x: [], y: [], text: []}, prof = null;
  if (hi >= lo) {
    var v = [], top = 0;
    for (var k = lo; k <= hi; k++) { v.push(vol[k] || 0); if ((vol[k] || 0) > top) { top = vol[k]; } }
    var va = heliosValueArea(v, meta.va_pct, meta.va_step), d = meta.digits;
    for (k = 0; k < v.length; k++) {
      if (!v[k]) { continue; }
      out.x.push(v[k] / top);
      out.y.push(+((lo + k + 0.5) * bs).toFixed(d));
      out.customdata.push(+v[k].toFixed(8));
      out.color.push(k === va[0] ? 'rgba(255,176,0,0.95)' : (k >= va[1] && k <= va[2] ? 'rgba(255,176,0,0.6)'
                                                                                       : 'rgba(220,220,220,0.45)'));
    }
    prof = {poc: +((lo + va[0] + 0.5) * bs).toFixed(d), vah: +((lo + va[2] + 1) * bs).toFixed(d),
            val: +((lo + va[1]) * bs).toFixed(d), first_bin: lo, volume: v, candles: Object.keys(candles).length};
    [['POC', prof.poc], ['VAH', prof.vah], ['VAL', prof.val]].forEach(function (p) {
      lv.x.push(0, 1, null); lv.y.push(p[1], p[1], null); lv.text.push('', p[0] + ' ' + p[1].toFixed(d), null);
    });
  }
  window.heliosProfile = prof;
  var bars = gd.data[T.profile_visible], lines = gd.data[T.profile_levels];
  bars.x = out.x; bars.y = out.y; bars.customdata = out.customdata; bars.marker.color = out.color;
  lines.x = lv.x; lines.y = lv.y; lines.text = lv.text;
  if (!inPlace) { Plotly.redraw(gd); }
}

/* The socket: reconnects with backoff (0.25 s doubling to 5 s, +-25 % jitter) and resubscribes with the meta it
 * holds, so the server resumes right after the newest column the page has. ``columns`` logs every column
 * received (its x, arrival Date.now() and the server's send time) for the browser tests. */
var heliosPush = window.heliosPush = {ws: null, backoff: 250, meta: null, opens: 0, closes: 0, columns: [],
                                      applied: 0, dropped: 0, redraws: 0, pending: [], bytes: [],
                                      logColumns: true};

function heliosPushSend(msg) {
  var ws = heliosPush.ws;
  if (ws && ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify(msg)); }
}

function heliosPushSubscribe() {
  var m = heliosPush.meta;
  if (m && m.pair) { heliosPushSend({type: 'subscribe', pair: m.pair, meta: m.empty ? null : m}); }
}

function heliosSetProps(id, props) {
  var dc = window.dash_clientside;
  if (dc && dc.set_props) { dc.set_props(id, props); }
  // Dash's renderer records every change of a callback input made in the browser for its undo button (off
  // here), without bound: a page pushed every second would grow by a few KB a second for as long as it is
  // open. Only the newest entries are kept.
  var st = window.store && window.store.getState ? window.store.getState() : null;
  var past = st && st.history && st.history.past;
  if (past && past.length > 20) { past.splice(0, past.length - 20); }
}

/* A "columns" message for the figure the page shows: applied once the graph has drawn that figure (it may
 * arrive first: a new figure's columns are pushed as soon as the page subscribes), in arrival order. */
function heliosPushColumns(msg) {
  var meta = heliosPush.meta, gd = heliosGraph();
  if (!meta || msg.fig_id !== meta.fig_id || msg.from_seq < meta.seq) {
    heliosPush.dropped += 1;  // built for another figure, or columns the page already has
    return true;
  }
  var drawn = gd && gd.data && gd.data.length && gd.layout && gd.layout.meta && gd.layout.meta.fig_id === meta.fig_id;
  if (!drawn) { return false; }
  if (msg.from_seq > meta.seq) {  // a gap (cannot happen on one socket): ask again from what the page holds
    heliosPushSubscribe();
    return true;
  }
  var now = Date.now(), resumed = heliosPush.fresh;  // the first batch after a (re)connect: made while away
  heliosApply(msg, meta);
  heliosPush.applied += 1;
  heliosPush.fresh = false;
  if (heliosPush.logColumns) {
    msg.heat.x.forEach(function (x) {
      heliosLog(heliosPush.columns, {x: x, at: msg.received || now, sent: msg.sent_ms, resumed: resumed}); });
  }
  heliosPush.meta = msg.meta;
  heliosSetProps('meta', {data: msg.meta});
  return true;
}

function heliosPushDrain() {
  var q = heliosPush.pending;
  while (q.length && heliosPushColumns(q[0])) { q.shift(); }
  if (q.length) { setTimeout(heliosPushDrain, 30); }
}

function heliosPushMessage(msg) {
  if (msg.type === 'columns') {
    msg.received = Date.now();
    heliosPush.pending.push(msg);
    if (heliosPush.pending.length === 1) { heliosPushDrain(); }
  } else if (msg.type === 'redraw') {
    heliosPush.redraws += 1;
    heliosSetProps('redraw', {data: Date.now()});
  } else if (msg.type === 'health') {
    heliosSetProps('health', {children: msg.text, className: 'health ' + msg.level});
  } else if (msg.type === 'range') {
    var props = {max: msg.max, marks: msg.marks};
    if (heliosPush.meta && heliosPush.meta.follow) { props.value = [Math.max(0, msg.max - msg.window_s), msg.max]; }
    heliosSetProps('range', props);
  }
}

function heliosPushConnect() {
  var el = document.getElementById('lw');
  if (!el) { setTimeout(heliosPushConnect, 100); return; }
  var url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + (el.dataset.ws || '/_helios/ws');
  var ws = new WebSocket(url);
  heliosPush.ws = ws;
  ws.onopen = function () {
    heliosPush.backoff = 250;
    heliosPush.opens += 1;
    heliosPush.fresh = true;
    heliosPushSubscribe();
  };
  ws.onmessage = function (ev) {
    var msg = JSON.parse(ev.data);
    if (msg.type === 'columns' && heliosPush.bytes) {  // payload sizes, for make bench (bounded)
      heliosLog(heliosPush.bytes, new TextEncoder().encode(ev.data).length);
    }
    heliosPushMessage(msg);
  };
  ws.onclose = function () {
    if (heliosPush.ws !== ws) { return; }
    heliosPush.ws = null;
    heliosPush.closes += 1;
    var delay = heliosPush.backoff * (0.75 + 0.5 * Math.random());
    heliosPush.backoff = Math.min(5000, heliosPush.backoff * 2);
    setTimeout(heliosPushConnect, delay);
  };
}
heliosPushConnect();

/* ---- Dash callbacks -------------------------------------------------------------------------------------- */

window.dash_clientside = Object.assign({}, window.dash_clientside, {
  helios: {
    /* A new figure (pair, timeframe, scale, range or follow changed): the socket follows it. */
    subscribe: function (meta) {
      var cur = heliosPush.meta;
      if (meta) { window.heliosMeta = meta; }
      if (meta && (!cur || cur.fig_id !== meta.fig_id)) {
        heliosPush.meta = meta;
        heliosPushSubscribe();
      }
      return 'push';
    },
    technical: function (lw, meta) {
      if (meta) { window.heliosMeta = meta; }
      heliosTechnical(lw);
      return 'lw';
    }
  }
});

/* Record when each full render finishes (the browser test reads window.heliosTimings.afterplot), keep the
 * figure's meta for the cursor readout, and hook the time-axis sync onto each new graph div. */
(function watch() {
  var gd = heliosGraph();
  if (gd && gd.on && !gd._heliosWatched) {
    gd._heliosWatched = true;
    gd.on('plotly_afterplot', function () { heliosLog(window.heliosTimings.afterplot, performance.now()); });
    heliosSync.watch(gd);
  }
  setTimeout(watch, 100);
})();
