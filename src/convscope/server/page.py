"""The explorer's single page: plain HTML and JavaScript, no build step and no network at run time.
It uses only the JSON API (``/docs`` documents it)."""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html><html lang='en'><head><meta charset='utf-8'>
<meta name='viewport' content='width=device-width,initial-scale=1'><title>convscope explorer</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d232a}
header{background:#1d232a;color:#fff;padding:10px 24px}
main{display:flex;gap:24px;padding:16px 24px;flex-wrap:wrap}
.panel{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:12px}
label{font-size:13px;margin-right:10px} select,input{font-size:13px}
#map{width:448px;height:448px;display:block;cursor:crosshair;background:#eee}
table{font-size:13px;border-collapse:collapse} td{padding:2px 8px}
#error{color:#b91c1c;font-size:13px;min-height:1em} .small{font-size:12px;color:#4a5561}
progress{width:224px}
</style></head><body>
<header><b>convscope explorer</b> <span id='model' class='small'></span>
<a href='/docs' style='color:#cfe0ff;font-size:13px;margin-left:16px'>API</a></header>
<main>
<div class='panel'>
 <div><label>upload <input id='file' type='file' accept='image/*'></label>
 <label>or a sample <select id='sample'><option value=''>-</option></select></label></div>
 <div style='margin:8px 0'>
  <label>method <select id='method'></select></label>
  <label>class <select id='target'><option value='top1'>top-1</option></select></label>
  <label>layer <select id='layer'></select></label></div>
 <img id='map' alt='map'>
 <div id='what' class='small'></div><div id='error'></div>
</div>
<div class='panel' style='min-width:300px'>
 <h3 style='margin-top:0'>Predictions</h3><table id='preds'></table>
 <h3>At the pointer</h3><div id='where' class='small'>hover the map</div><table id='acts'></table>
 <h3>Unit</h3><div id='unit' class='small'>click a unit above</div>
 <progress id='fvprog' max='1' value='0' hidden></progress>
 <div><img id='fv' alt='feature visualization' hidden width='160' height='160'>
 <img id='card' alt='top patches' hidden></div>
</div></main>
<script>
var state = {id: null, info: null};
function $(id) { return document.getElementById(id); }
function error(msg) { $('error').textContent = msg || ''; }
async function api(url, opts) {
  var r = await fetch(url, opts);
  var body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
function option(sel, value, text) {
  var o = document.createElement('option'); o.value = value; o.textContent = text; sel.appendChild(o);
}
async function init() {
  var info = state.info = await api('/api/info');
  $('model').textContent = info.model;
  info.methods.forEach(function (m) { option($('method'), m, m); });
  $('method').value = 'gradcam';
  info.layers.forEach(function (l) { option($('layer'), l, l); });
  $('layer').value = info.default_layer;
  info.samples.forEach(function (s) { option($('sample'), s, s); });
}
async function use(result) {
  state.id = result.id; error('');
  var p = await api('/api/images/' + state.id + '/predictions?k=5');
  var t = $('preds'); t.textContent = '';
  var sel = $('target'); sel.textContent = ''; option(sel, 'top1', 'top-1');
  p.predictions.forEach(function (row) {
    var tr = t.insertRow(), a = tr.insertCell(), b = tr.insertCell();
    a.textContent = row.name; b.textContent = (100 * row.probability).toFixed(1) + '%';
    tr.className = 'pred';
    option(sel, String(row.index), row.name);
  });
  refresh();
}
function refresh() {
  if (!state.id) return;
  var q = '?method=' + encodeURIComponent($('method').value) + '&target=' +
    encodeURIComponent($('target').value) + '&layer=' + encodeURIComponent($('layer').value);
  error('');
  api('/api/images/' + state.id + '/explain' + q).then(function (e) {
    $('what').textContent = e.method + ' for ' + e.target + (e.layer ? ' at ' + e.layer : '');
    $('map').src = '/api/images/' + state.id + '/map' + q;
  }).catch(function (e) { error(e.message); });
}
$('file').addEventListener('change', async function () {
  var f = this.files[0]; if (!f) return;
  try { use(await api('/api/images', {method: 'POST', body: f,
    headers: {'Content-Type': f.type || 'application/octet-stream'}})); }
  catch (e) { error(e.message); }
});
$('sample').addEventListener('change', async function () {
  if (!this.value) return;
  try { use(await api('/api/samples/' + encodeURIComponent(this.value), {method: 'POST'})); }
  catch (e) { error(e.message); }
});
['method', 'target', 'layer'].forEach(function (id) { $(id).addEventListener('change', refresh); });
var pending = null;
$('map').addEventListener('mousemove', function (ev) {
  if (!state.id) return;
  var box = this.getBoundingClientRect();
  var x = (ev.clientX - box.left) / box.width, y = (ev.clientY - box.top) / box.height;
  clearTimeout(pending);
  pending = setTimeout(function () {
    var layer = $('layer').value;
    api('/api/images/' + state.id + '/activations?layer=' + encodeURIComponent(layer) +
        '&x=' + x.toFixed(3) + '&y=' + y.toFixed(3)).then(function (a) {
      $('where').textContent = a.layer + ' at row ' + a.position[0] + ', column ' + a.position[1];
      var t = $('acts'); t.textContent = '';
      a.top.forEach(function (u) {
        var tr = t.insertRow(), c = tr.insertCell(), v = tr.insertCell();
        var link = document.createElement('a'); link.href = '#'; link.textContent = u.unit;
        link.addEventListener('click', function (e) { e.preventDefault(); openUnit(u.unit); });
        c.appendChild(link); v.textContent = u.value.toFixed(3);
      });
    }).catch(function (e) { error(e.message); });
  }, 80);
});
async function openUnit(unit) {
  $('unit').textContent = unit + ': feature visualization queued';
  $('fv').hidden = true; $('card').hidden = true;
  if (state.info.site) {
    api('/api/units/' + encodeURIComponent(unit) + '/top').then(function (t) {
      if (t.card) { $('card').src = t.card; $('card').hidden = false; }
    }).catch(function () {});
  }
  try {
    var job = await api('/api/units/' + encodeURIComponent(unit) + '/featurevis', {method: 'POST'});
    var bar = $('fvprog'); bar.hidden = false; bar.max = job.steps; bar.value = 0;
    while (true) {
      await new Promise(function (r) { setTimeout(r, 300); });
      job = await api('/api/jobs/' + job.id);
      bar.value = job.step;
      $('unit').textContent = unit + ': ' + job.state + ' (' + job.step + '/' + job.steps + ')';
      if (job.state === 'done') { $('fv').src = job.image; $('fv').hidden = false; break; }
      if (job.state === 'failed') { error(job.error); break; }
    }
  } catch (e) { error(e.message); }
}
init().catch(function (e) { error(e.message); });
</script></body></html>
"""
