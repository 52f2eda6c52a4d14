/* Helios liquidity page: apply live updates in the browser without a full figure redraw.
 *
 * The server sends only what is new (see dashboard/figures.py build_update): heatmap columns, line points
 * and trade bubbles are appended to the traces already drawn (keeping a sliding window), walls, signals
 * and candles are replaced; then one Plotly.redraw. The layout is not touched, so pan and zoom stay.
 * Timings (performance.now(), ms) are kept in window.heliosTimings for the browser test.
 */
window.heliosTimings = window.heliosTimings || {afterplot: [], append: []};

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

function heliosTail(a, b, keep) {
  var out = (a || []).concat(b);
  return out.length > keep ? out.slice(out.length - keep) : out;
}

window.dash_clientside = Object.assign({}, window.dash_clientside, {
  helios: {
    apply: function (upd, meta) {
      var nu = window.dash_clientside.no_update;
      var gd = heliosGraph();
      if (!upd || !meta || !gd || !gd.data || upd.fig_id !== meta.fig_id || upd.from_seq !== meta.seq) {
        return nu;  // stale: built for another figure or already applied
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
      ['buys', 'sells'].forEach(function (name) {
        var tr = d[T[name]], b = upd[name], cap = upd.bubble_cap;
        tr.x = heliosTail(tr.x, b.x, cap);
        tr.y = heliosTail(tr.y, b.y, cap);
        tr.customdata = heliosTail(tr.customdata, b.v, cap);
        tr.marker.size = heliosTail(tr.marker.size, b.s, cap);
      });
      Object.keys(upd.replace).forEach(function (name) {
        var tr = d[T[name]], attrs = upd.replace[name];
        Object.keys(attrs).forEach(function (k) { heliosSet(tr, k, attrs[k]); });
      });
      Plotly.redraw(gd).then(function () {
        window.heliosTimings.append.push({ms: performance.now() - t0, cols: upd.heat.x.length});
      });
      return upd.meta;
    }
  }
});

/* Record when each full render finishes (the browser test reads window.heliosTimings.afterplot). */
(function watch() {
  var gd = heliosGraph();
  if (gd && gd.on && !gd._heliosWatched) {
    gd._heliosWatched = true;
    gd.on('plotly_afterplot', function () { window.heliosTimings.afterplot.push(performance.now()); });
  }
  setTimeout(watch, 100);
})();
