"""The review page: a small local web server (stdlib only) over suspects.json and decisions.

``GET /`` the page; ``GET /api/state`` suspects with their decisions; ``GET /thumb/<path>`` a
thumbnail of a clean photo; ``POST /api/decide`` records keep / remove / relabel / clear at
once (one atomic write of ``review/decisions.json``). POSTs must be JSON, which a page from
another site cannot send to this server without a CORS preflight it never answers.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from PIL import Image

from landmarks.review import decisions
from landmarks.review.suspects import OUTLIER
from landmarks.storage import read_json

log = logging.getLogger(__name__)

THUMB_SIDE = 200


@dataclass(frozen=True)
class ReviewSite:
    clean_dir: Path
    suspects_path: Path
    decisions_path: Path
    max_items: int = 200  # the most suspect photos shown; flagged ones are always shown


class ReviewApp:
    """Everything the handler needs; the suspects file is re-read when it changes."""

    def __init__(self, site: ReviewSite) -> None:
        self.site = site
        self.store = decisions.DecisionStore(site.decisions_path)
        self._lock = threading.Lock()
        self._thumbs: dict[str, bytes] = {}
        self._loaded_mtime: int | None = None
        self._data: dict[str, Any] = {}

    def data(self) -> dict[str, Any]:
        path = self.site.suspects_path
        if not path.exists():
            raise FileNotFoundError(
                f"no suspects at {path}: run `landmarks suspects` (or `landmarks run`) first"
            )
        mtime = path.stat().st_mtime_ns
        with self._lock:
            if mtime != self._loaded_mtime:
                self._data = read_json(path)
                self._loaded_mtime = mtime
            return self._data

    def shown(self) -> list[dict[str, Any]]:
        suspects = self.data()["suspects"]
        return [
            s
            for i, s in enumerate(suspects)
            if i < self.site.max_items or OUTLIER in s.get("flags", [])
        ]

    def state(self) -> dict[str, Any]:
        data = self.data()
        verdicts = self.store.load()
        photos = []
        for s in self.shown():
            photos.append({**s, "key": s["pixel_hash"], "decision": verdicts.get(s["pixel_hash"])})
        shown_keys = {p["key"] for p in photos}
        earlier = [
            {**d, "key": key}
            for key, d in verdicts.items()
            if key not in shown_keys and d.get("path")
        ]
        return {
            "classes": data["class_names"],
            "accuracy": data.get("accuracy"),
            "num_scored": len(data["suspects"]),
            "photos": photos,
            "earlier": earlier,
        }

    def photo(self, key: str) -> dict[str, Any] | None:
        for s in self.data()["suspects"]:
            if s["pixel_hash"] == key:
                return s
        d = self.store.load().get(key)
        if d is not None:
            return {**d, "label": d["label"]}
        return None

    def decide(self, payload: dict[str, Any]) -> dict[str, Any]:
        key = str(payload.get("key", ""))
        action = str(payload.get("action", ""))
        photo = self.photo(key)
        if photo is None:
            raise decisions.DecisionError(f"unknown photo {key!r}")
        if action == "clear":
            return {"key": key, "cleared": self.store.clear(key), "decision": None}
        variants = photo.get("phash") if isinstance(photo.get("phash"), list) else None
        if not variants:
            variants = decisions.photo_variants(self.clean_file(photo["path"]), photo.get("phash"))
        decision = self.store.decide(
            {**photo, "phash_variants": variants},
            action,
            new_label=payload.get("new_label"),
            by=decisions.BY_PERSON,
        )
        return {"key": key, "decision": decision}

    def clean_file(self, rel: str) -> Path:
        root = self.site.clean_dir.resolve()
        path = (root / rel).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise FileNotFoundError(rel)
        return path

    def thumbnail(self, rel: str) -> bytes:
        with self._lock:
            cached = self._thumbs.get(rel)
        if cached is not None:
            return cached
        with Image.open(self.clean_file(rel)) as im:
            im.draft("RGB", (THUMB_SIDE, THUMB_SIDE))
            thumb = im.convert("RGB")
            thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
            buf = io.BytesIO()
            thumb.save(buf, format="JPEG", quality=85)
        data = buf.getvalue()
        with self._lock:
            self._thumbs[rel] = data
        return data


class _Handler(BaseHTTPRequestHandler):
    app: ReviewApp  # set on the subclass made by make_server
    server_version = "landmarks-review"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        log.debug("review %s: " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8")
            elif path == "/api/state":
                self._json(HTTPStatus.OK, self.app.state())
            elif path.startswith("/thumb/"):
                rel = unquote(path[len("/thumb/") :])
                self._send(HTTPStatus.OK, self.app.thumbnail(rel), "image/jpeg", cache=True)
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page {path}"})
        except FileNotFoundError as exc:
            self._json(HTTPStatus.NOT_FOUND, {"error": str(exc)})

    def do_POST(self) -> None:  # noqa: N802 (stdlib name)
        if self.path != "/api/decide":
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {self.path}"})
            return
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send application/json"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            payload = json.loads(self.rfile.read(length) or b"{}")
            self._json(HTTPStatus.OK, self.app.decide(payload))
        except (json.JSONDecodeError, decisions.DecisionError, FileNotFoundError) as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})


def make_server(site: ReviewSite, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A ready server (port 0 picks a free one: ``server.server_address[1]``); call
    ``serve_forever()`` on it, and ``shutdown()`` from another thread to stop."""
    app = ReviewApp(site)
    app.data()  # fail now, with a clear message, if there is nothing to review
    handler = type("ReviewHandler", (_Handler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Review suspects - landmarks</title>
<style>
 body{font-family:system-ui,sans-serif;margin:0;background:#f4f4f2;color:#222}
 header{position:sticky;top:0;background:#1f2933;color:#fff;padding:8px 16px;z-index:2}
 header h1{font-size:18px;margin:0 0 4px}
 header p{margin:0;font-size:13px;opacity:.85}
 kbd{background:#fff;color:#111;border-radius:3px;padding:0 4px;font-size:12px}
 section{padding:8px 16px}
 section h2{font-size:16px;margin:12px 0 6px}
 .grid{display:flex;flex-wrap:wrap;gap:10px}
 .card{width:210px;background:#fff;border:3px solid #ddd;border-radius:6px;padding:5px;
  font-size:12px;position:relative}
 .card.focus{border-color:#2563eb;box-shadow:0 0 0 2px #93c5fd}
 .card img{width:200px;height:150px;object-fit:cover;display:block;border-radius:3px}
 .card.remove img{opacity:.35;filter:grayscale(1)}
 .card.remove{border-color:#dc2626}
 .card.keep{border-color:#16a34a}
 .card.relabel{border-color:#d97706}
 .meta{margin:4px 0;line-height:1.35}
 .flag{display:inline-block;border-radius:3px;padding:0 4px;margin-right:3px;color:#fff}
 .flag.swap{background:#d97706}.flag.outlier{background:#7c3aed}.flag.doubtful{background:#6b7280}
 .verdict{font-weight:600}
 .actions{display:flex;gap:3px;flex-wrap:wrap}
 .actions button,.actions select{font-size:11px;padding:2px 4px}
</style></head>
<body>
<header><h1>Suspects: photos whose label the model doubts</h1>
<p id="summary">loading...</p>
<p>Keys: <kbd>j</kbd>/<kbd>&rarr;</kbd> next, <kbd>k</kbd>/<kbd>&larr;</kbd> previous,
<kbd>a</kbd> keep, <kbd>x</kbd>/<kbd>Delete</kbd> remove, <kbd>r</kbd> relabel to the
suggested class, <kbd>u</kbd> undo. Every decision is saved at once.</p></header>
<main id="main"></main>
<script>
let state = null, order = [], focus = 0;
const esc = s => String(s).replace(/[&<>"']/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;',
  '"':'&quot;',"'":'&#39;'}[c]));
function verdict(d){
  if(!d) return '';
  if(d.action==='relabel') return 'relabel &rarr; '+esc(d.new_label)+' ('+esc(d.by)+')';
  return esc(d.action)+' ('+esc(d.by)+')';
}
function card(p, i){
  const d = p.decision, cls = d ? d.action : '';
  const flags = (p.flags||[]).map(f=>'<span class="flag '+esc(f)+'">'+esc(f)+'</span>').join('');
  const opts = state.classes.filter(c=>c!==p.label)
    .map(c=>'<option value="'+esc(c)+'">'+esc(c)+'</option>').join('');
  const sugg = p.suggested!==p.label ? 'suggested <b>'+esc(p.suggested)+'</b> ('
    +Math.round(100*p.suggested_confidence)+'%)' : 'model agrees';
  return '<div class="card '+cls+'" id="card-'+i+'" data-key="'+esc(p.key)+'" data-index="'+i
    +'"><img loading="lazy" alt="'+esc(p.path)+'" src="/thumb/'+encodeURI(p.path)+'">'
    +'<div class="meta">'+flags+'score <b>'+p.score.toFixed(2)+'</b><br>'+sugg
    +'<br><span class="verdict">'+verdict(d)+'</span></div>'
    +'<div class="actions"><button data-act="keep">keep</button>'
    +'<button data-act="remove">remove</button>'
    +(p.suggested!==p.label
      ? '<button data-act="relabel">&rarr; '+esc(p.suggested)+'</button>' : '')
    +'<select data-act="relabel-to"><option value="">relabel...</option>'+opts+'</select>'
    +(d ? '<button data-act="clear">undo</button>' : '')+'</div></div>';
}
function render(){
  const byClass = {};
  state.photos.forEach(p => (byClass[p.label] = byClass[p.label] || []).push(p));
  order = [];
  let html = '';
  Object.keys(byClass).sort().forEach(c => {
    const list = byClass[c].sort((a,b)=>b.score-a.score);
    html += '<section><h2>'+esc(c)+' ('+list.length+')</h2><div class="grid">';
    list.forEach(p => { html += card(p, order.length); order.push(p); });
    html += '</div></section>';
  });
  if(state.earlier.length){
    html += '<section><h2>Earlier decisions on photos not in this list ('+state.earlier.length
      +')</h2><ul>'+state.earlier.map(d=>'<li>'+esc(d.path)+': '+verdict(d)+'</li>').join('')
      +'</ul></section>';
  }
  document.getElementById('main').innerHTML = html;
  summary();
  setFocus(Math.min(focus, order.length-1));
}
function summary(){
  const decided = state.photos.filter(p=>p.decision).length;
  document.getElementById('summary').textContent = state.photos.length+' suspects shown of '
    +state.num_scored+' photos scored (out-of-fold accuracy '
    +Math.round(100*(state.accuracy||0))+'%), '+decided+' decided.';
}
function setFocus(i){
  if(i<0 || !order.length) return;
  document.querySelectorAll('.card.focus').forEach(e=>e.classList.remove('focus'));
  focus = i;
  const el = document.getElementById('card-'+i);
  if(el){ el.classList.add('focus'); el.scrollIntoView({block:'nearest'}); }
}
async function decide(i, action, newLabel){
  const p = order[i];
  const res = await fetch('/api/decide', {method:'POST',
    headers:{'Content-Type':'application/json'},
    body: JSON.stringify({key:p.key, action:action, new_label:newLabel||null})});
  const body = await res.json();
  if(!res.ok){ alert(body.error); return; }
  p.decision = body.decision;
  const el = document.getElementById('card-'+i);
  el.outerHTML = card(p, i);
  summary();
  document.body.dataset.saved = String(Number(document.body.dataset.saved||0)+1);
  setFocus(action==='clear' ? i : Math.min(i+1, order.length-1));
}
document.addEventListener('click', e => {
  const c = e.target.closest('.card'); if(!c) return;
  const i = Number(c.dataset.index), act = e.target.dataset.act;
  setFocus(i);
  if(act==='relabel') decide(i, 'relabel', order[i].suggested);
  else if(act && act!=='relabel-to') decide(i, act);
});
document.addEventListener('change', e => {
  if(e.target.dataset.act==='relabel-to' && e.target.value){
    decide(Number(e.target.closest('.card').dataset.index), 'relabel', e.target.value);
  }
});
document.addEventListener('keydown', e => {
  if(e.target.tagName==='SELECT' || e.ctrlKey || e.metaKey || e.altKey) return;
  const k = e.key;
  if(k==='j' || k==='ArrowRight'){ setFocus(Math.min(focus+1, order.length-1)); }
  else if(k==='k' || k==='ArrowLeft'){ setFocus(Math.max(focus-1, 0)); }
  else if(k==='a'){ decide(focus, 'keep'); }
  else if(k==='x' || k==='Delete'){ decide(focus, 'remove'); }
  else if(k==='r' && order[focus] && order[focus].suggested!==order[focus].label){
    decide(focus, 'relabel', order[focus].suggested); }
  else if(k==='u'){ decide(focus, 'clear'); }
  else return;
  e.preventDefault();
});
fetch('/api/state').then(r=>r.json()).then(s=>{ state=s; render();
  document.body.dataset.ready='1'; });
</script></body></html>
"""
