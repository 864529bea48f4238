"""Interactive, offline charts for the HTML reports: uPlot embedded in the page.

Why uPlot: a well-kept, MIT-licensed charting library of ~50 KB that draws thousands of
points on a canvas, with hover values (cursor and legend) and zoom (drag to select, double
click to reset) built in. Its script and style are read from the package data
(``harness/result/assets/uplot/``, version and source in the README there) and written into
the page once (:func:`chart_assets`), so a report opens offline and fetches nothing.

Each chart is a ``<figure>`` holding a ``<div class="lbh-chart" data-chart=ID>`` and its
data as JSON in a ``<script type="application/json">`` (every ``<``, ``>`` and ``&``
escaped, so result content cannot close the script). The page's script draws every such
div on load; after drawing it sets ``data-rendered="1"`` on the div, ``data-y-max`` (the
y axis's top), ``data-budgets-offscale`` (labels of budgets drawn as edge markers) and, on
``<body>``, ``data-charts-rendered`` (the count), which the browser tests read; each uPlot
instance is ``window.lbhCharts[ID]`` (the tests hover and zoom through it).

What the charts promise (issue 17): axes fit the data (a budget line far above a 3 ms run
does not squash it: it is drawn as a labelled marker at the plot's edge); markers (abort,
interrupt, a baseline) are labelled vertical lines; the last, partial window is drawn dashed
and faded on a shaded band labelled "partial window", never as a drop to zero.
"""

from __future__ import annotations

import datetime
import html
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Dict, List, Optional, Sequence

__all__ = [
    "number_or_none",
    "Series",
    "Marker",
    "Budget",
    "SpectrumSeries",
    "chart_assets",
    "time_chart",
    "spectrum_chart",
    "spectrum_x",
    "UPLOT_VERSION",
    "COLORS",
]

#: the embedded uPlot's version (the README next to the files names its source)
UPLOT_VERSION = "1.6.32"

#: series colours in order (a Series may name its own)
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f")

_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,80}$")


@dataclass(frozen=True)
class Series:
    """One line: ``values`` aligned with the chart's ``x`` (``None``: no value, a gap)."""

    name: str
    values: Sequence[Optional[float]]
    dashed: bool = False
    color: Optional[str] = None


@dataclass(frozen=True)
class Marker:
    """A labelled vertical line at ``x`` (an abort, an interrupt, the baseline run)."""

    x: float
    label: str


@dataclass(frozen=True)
class Budget:
    """A labelled horizontal line at ``y``; off the data's scale it becomes an edge marker."""

    y: float
    label: str


@dataclass(frozen=True)
class SpectrumSeries:
    """One HDR percentile spectrum: ``percentiles`` (0–100, the last may be 100 = max) and
    the value at each, in the chart's unit."""

    name: str
    percentiles: Sequence[float]
    values: Sequence[Optional[float]]
    dashed: bool = False
    color: Optional[str] = None


# ----------------------------------------------------------------------------- assets


def _asset(name: str) -> str:
    return resources.files("harness.result").joinpath("assets", "uplot", name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def chart_assets() -> str:
    """The ``<style>`` and ``<script>`` every page with charts carries once, in its
    ``<head>`` or before the first chart: uPlot (minified), its CSS, and the small script
    that draws each ``.lbh-chart`` from its JSON when the page has loaded."""
    lib = _asset("uPlot.iife.min.js")
    css = _asset("uPlot.min.css")
    for text in (lib, css):
        if "</script" in text.lower() or "</style" in text.lower():  # would end the element early
            raise ValueError("embedded asset contains a closing tag")
    return (f"<style>{css}\n{_CSS}</style>\n"
            f"<script>{lib}</script>\n<script>{_JS}</script>\n")


_CSS = """
.lbh-figure{margin:0 0 8px 0;min-width:360px;flex:1 1 620px;max-width:900px}
.lbh-figure figcaption{font-weight:600;margin:4px 0}
.lbh-chart{min-height:60px;width:100%}
.lbh-chart.nodata{color:#777;border:1px dashed #ccc;padding:20px;text-align:center}
.lbh-chart .u-legend{font-size:12px;text-align:left}
.lbh-chart .u-legend .u-series.lbh-hidden{display:none}
.lbh-chart-error{color:#b00}
.lbh-chart-hint{color:#777;font-size:11px}
"""

# Draws every .lbh-chart from its JSON; no network, no eval. Budget lines, markers and the
# partial-window band are drawn on the canvas in the draw hook, so they follow zoom.
_JS = r"""
(function(){
"use strict";
var RED="#b00020";
function num(v){return typeof v==="number"&&isFinite(v);}
function fmt(v){
  if(!num(v))return "–";var a=Math.abs(v);
  if(a>=1e9)return +(v/1e9).toPrecision(3)+"G";if(a>=1e6)return +(v/1e6).toPrecision(3)+"M";
  if(a>=1e4)return +(v/1e3).toPrecision(3)+"k";if(a>=100)return v.toFixed(0);
  if(a>=1)return +v.toPrecision(3)+"";if(a===0)return "0";return +v.toPrecision(2)+"";}
function fmtU(v,unit){var s=fmt(v);return (unit&&num(v))?s+" "+unit:s;}
function pctOf(x){if(!num(x))return "–";var p=100*(1-1/x);var d=Math.max(0,Math.ceil(Math.log10(x))-1);return p.toFixed(Math.min(d,6))+"%";}
function decade(v){var k=Math.round(Math.log10(v));if(k<=0)return "0%";if(k===1)return "90%";return "99"+(k>2?"."+"9".repeat(k-2):"")+"%";}
function draw(u,spec){
  var ctx=u.ctx,px=uPlot.pxRatio||1,b=u.bbox,off=[];
  ctx.save();
  ctx.font=(11*px)+"px system-ui,sans-serif";
  ctx.beginPath();ctx.rect(b.left,b.top,b.width,b.height);ctx.clip();
  if(spec.partial_from!=null){
    var x0=u.valToPos(spec.partial_from,"x",true);
    if(x0<b.left+b.width){x0=Math.max(x0,b.left);
      ctx.fillStyle="rgba(120,120,120,0.12)";ctx.fillRect(x0,b.top,b.left+b.width-x0,b.height);
      ctx.fillStyle="#555";ctx.textAlign="left";ctx.textBaseline="bottom";
      ctx.fillText("partial window",x0+3*px,b.top+b.height-3*px);}
  }
  var ys=u.scales.y,ymin=ys.min,ymax=ys.max;
  var nAbove=(spec.budgets||[]).filter(function(bd){return bd.y>ymax;}).length;
  (spec.budgets||[]).forEach(function(bd){
    ctx.strokeStyle=RED;ctx.fillStyle=RED;ctx.lineWidth=1.5*px;
    if(bd.y>=ymin&&bd.y<=ymax){
      var y=u.valToPos(bd.y,"y",true);ctx.setLineDash([6*px,4*px]);
      ctx.beginPath();ctx.moveTo(b.left,y);ctx.lineTo(b.left+b.width,y);ctx.stroke();ctx.setLineDash([]);
      ctx.textAlign="right";ctx.textBaseline="bottom";ctx.fillText(bd.label,b.left+b.width-4*px,y-2*px);
    }else{
      var above=bd.y>ymax;off.push(bd.label);
      var ty=above?b.top+4*px+off.length*13*px-13*px:b.top+b.height-4*px-(off.length-1)*13*px;
      ctx.textAlign="right";ctx.textBaseline=above?"top":"bottom";
      ctx.fillText((above?"▲ ":"▼ ")+bd.label+(above?" (above the scale)":" (below the scale)"),b.left+b.width-4*px,ty);
    }
  });
  (spec.markers||[]).forEach(function(m,i){
    var x=u.valToPos(m.x,"x",true);if(x<b.left-1||x>b.left+b.width+1)return;
    ctx.strokeStyle="#6a1b9a";ctx.fillStyle="#6a1b9a";ctx.lineWidth=2*px;ctx.setLineDash([3*px,3*px]);
    ctx.beginPath();ctx.moveTo(x,b.top);ctx.lineTo(x,b.top+b.height);ctx.stroke();ctx.setLineDash([]);
    var w=ctx.measureText(m.label).width,right=x+4*px+w<b.left+b.width;
    ctx.textAlign=right?"left":"right";ctx.textBaseline="top";
    ctx.fillText(m.label,right?x+4*px:x-4*px,b.top+4*px+(nAbove+i)*13*px);
  });
  ctx.restore();
  u.root.parentNode.setAttribute("data-budgets-offscale",off.join("|"));
  u.root.parentNode.setAttribute("data-y-max",String(ymax));
}
function build(el,spec){
  var colors=spec.colors,x=spec.x,data=[x],series=[{}],hidden=[],partOf={};
  var xl=spec.x_labels;
  if(spec.kind==="spectrum"){
    series[0]={label:"percentile",value:function(u,v,si,i){return (xl&&i!=null&&xl[i]!=null)?xl[i]:pctOf(v);}};
  }else if(spec.x_time){
    series[0]={label:spec.x_label||"time",value:function(u,v,si,i){return (xl&&i!=null&&xl[i]!=null)?xl[i]:(num(v)?new Date(v*1000).toISOString().replace("T"," ").slice(0,19):"–");}};
  }else{
    series[0]={label:spec.x_label||"x",value:function(u,v,si,i){return (xl&&i!=null&&xl[i]!=null)?xl[i]:fmt(v);}};
  }
  spec.series.forEach(function(s,k){
    var c=s.color||colors[k%colors.length],idx=data.length;
    data.push(s.values);
    var pv=s.partial_values;
    series.push({label:s.name,stroke:c,width:1.6,dash:s.dashed?[6,4]:undefined,spanGaps:!!spec.span_gaps,
      points:{show:spec.points?true:undefined,size:5},
      value:(function(pv){return function(u,v,si,i){
        if(v==null&&pv&&i!=null&&pv[i]!=null)return fmtU(pv[i],spec.y_unit)+" (partial window)";
        return fmtU(v,spec.y_unit);};})(pv)});
    if(pv){data.push(pv);partOf[idx]=data.length-1;hidden.push(data.length-1);
      series.push({label:s.name+" (partial)",stroke:c,alpha:0.45,width:1.6,dash:[5,4],spanGaps:true,
        points:{show:true,size:5},value:function(u,v){return fmtU(v,spec.y_unit);}});}
  });
  var xs=x.filter(num),x0=Math.min.apply(null,xs),x1=Math.max.apply(null,xs);
  var mk=(spec.markers||[]).map(function(m){return m.x;}).filter(num);
  if(spec.partial_from!=null)mk.push(spec.partial_from);
  var lo=Math.min.apply(null,[x0].concat(mk)),hi=Math.max.apply(null,[x1].concat(mk));
  var xscale={time:!!spec.x_time,range:function(u,mn,mx){
    if(mn==null||mx==null)return [lo,hi];
    if(mn<=x0&&mx>=x1){mn=Math.min(mn,lo);mx=Math.max(mx,hi);}
    if(mx<=mn){mx=mn+1;mn=mn-(spec.kind==="spectrum"?0:1);}
    return [mn,mx];}};
  if(spec.kind==="spectrum"){xscale.distr=3;xscale.log=10;}
  var yscale={range:function(u,mn,mx){
    if(!num(mn)||!num(mx)){mn=0;mx=1;}
    var a=spec.y_min!=null?Math.min(spec.y_min,mn):mn,b=spec.y_max!=null?spec.y_max:mx;
    if(b<=a)b=a+(Math.abs(a)>0?Math.abs(a)*0.1:1);
    var pad=(b-a)*0.06;return [spec.y_min!=null&&a===spec.y_min?a:a-pad,spec.y_max!=null?b:b+pad];}};
  var xaxis={label:spec.x_label,labelSize:18,stroke:"#444",grid:{stroke:"#eee"},ticks:{stroke:"#ccc"}};
  if(spec.kind==="spectrum"){
    xaxis.splits=function(u){var s=u.scales.x,out=[],e=Math.floor(Math.log10(s.min)),t=Math.ceil(Math.log10(s.max));
      for(var k=e;k<=t;k++){var v=Math.pow(10,k);if(v>=s.min*0.999&&v<=s.max*1.001)out.push(v);}return out;};
    xaxis.values=function(u,sp){return sp.map(decade);};
  }else if(!spec.x_time){xaxis.values=function(u,sp){return sp.map(fmt);};}
  var yaxis={label:spec.y_label||spec.y_unit||"",labelSize:18,stroke:"#444",grid:{stroke:"#eee"},ticks:{stroke:"#ccc"},size:56,
    values:function(u,sp){return sp.map(fmt);}};
  var width=Math.max(340,Math.min(el.clientWidth||640,900));
  var opts={width:width,height:spec.height||280,series:series,scales:{x:xscale,y:yscale},axes:[xaxis,yaxis],
    legend:{live:true},cursor:{drag:{x:true,y:false,setScale:true},focus:{prox:16}},focus:{alpha:0.35},
    hooks:{draw:[function(u){draw(u,spec);}],
      setSeries:[function(u,si,o){if(si!=null&&partOf[si]!=null&&o&&o.show!=null)u.setSeries(partOf[si],{show:o.show},false);}]}};
  var u=new uPlot(opts,data,el);
  var rows=el.querySelectorAll(".u-legend .u-series");
  hidden.forEach(function(i){if(rows[i])rows[i].classList.add("lbh-hidden");});
  (window.lbhCharts=window.lbhCharts||{})[el.getAttribute("data-chart")]=u;
  el.setAttribute("data-rendered","1");
  el.setAttribute("data-series",String(spec.series.length));
  return u;
}
function renderAll(){
  var n=0,plots=[];
  document.querySelectorAll(".lbh-chart[data-spec]").forEach(function(el){
    var holder=document.getElementById(el.getAttribute("data-spec"));
    if(!holder)return;
    try{var spec=JSON.parse(holder.textContent);plots.push([el,build(el,spec)]);n++;}
    catch(e){el.setAttribute("data-rendered","error");
      var p=document.createElement("p");p.className="lbh-chart-error";p.textContent="chart failed: "+e;el.appendChild(p);
      console.error("chart "+el.getAttribute("data-chart")+" failed: "+e);}
  });
  document.body.setAttribute("data-charts-rendered",String(n));
  var t=null;window.addEventListener("resize",function(){clearTimeout(t);t=setTimeout(function(){
    plots.forEach(function(p){var w=Math.max(340,Math.min(p[0].clientWidth||640,900));
      if(Math.abs(w-p[1].width)>8)p[1].setSize({width:w,height:p[1].height});});},150);});
}
if(document.readyState==="loading")document.addEventListener("DOMContentLoaded",renderAll);else renderAll();
})();
"""


# ----------------------------------------------------------------------------- charts


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def number_or_none(v: Any) -> Optional[float]:
    """A JSON-safe number: NaN and infinities (which JSON cannot carry) become gaps."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _json_for_script(obj: Any) -> str:
    """JSON that cannot end its ``<script>`` element whatever strings it carries."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _check_id(chart_id: str) -> None:
    if not _ID.match(chart_id):
        raise ValueError(f"chart_id: must be a letter then letters, digits, '-' or '_', got {chart_id!r}")


def _figure(chart_id: str, title: str, spec: Dict[str, Any], has_data: bool, notes: Sequence[str]) -> str:
    head = f'<figure class="lbh-figure" id="fig-{_esc(chart_id)}"><figcaption>{_esc(title)}</figcaption>'
    note_html = "".join(f'<div class="lbh-chart-hint">{_esc(n)}</div>' for n in notes)
    if not has_data:
        return (head + f'<div class="lbh-chart nodata" data-chart="{_esc(chart_id)}">no data</div>'
                + note_html + "</figure>")
    return (head + f'<div class="lbh-chart" data-chart="{_esc(chart_id)}" data-spec="spec-{_esc(chart_id)}"></div>'
            f'<script type="application/json" id="spec-{_esc(chart_id)}">{_json_for_script(spec)}</script>'
            + note_html + "</figure>")


def _budget_notes(budgets: Sequence[Budget], values: Sequence[Optional[float]], unit: str) -> List[str]:
    """Text for budgets off the data's full range (the canvas marks them at the edge too)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return []
    hi, lo = max(vals), min(vals)
    out = []
    for b in budgets:
        if b.y > hi * 1.06 + 1e-12 and b.y > 0:
            out.append(f"{b.label}: above every value (max {hi:.4g} {unit}); marked at the top edge")
        elif b.y < lo:
            out.append(f"{b.label}: below every value (min {lo:.4g} {unit}); marked at the bottom edge")
    return out


def _x_text(x: float, x_time: bool) -> str:
    """An x position as a reader wants it in a note: a UTC time for a time axis, else a number."""
    if x_time:
        return datetime.datetime.fromtimestamp(x, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{x:.4g}"


def time_chart(
    chart_id: str,
    title: str,
    x: Sequence[float],
    series: Sequence[Series],
    *,
    y_unit: str,
    y_label: Optional[str] = None,
    x_label: str = "time since start (s)",
    markers: Sequence[Marker] = (),
    budgets: Sequence[Budget] = (),
    partial_from: Optional[float] = None,
    y_min: Optional[float] = 0.0,
    y_max: Optional[float] = None,
    x_time: bool = False,
    x_labels: Optional[Sequence[str]] = None,
    points: bool = False,
    height: int = 280,
) -> str:
    """A ``<figure>`` with an interactive line chart over ``x`` (sorted ascending).

    ``partial_from``: points with ``x >= partial_from`` belong to a partial window; they
    are drawn dashed and faded (joined to the last full point) on a shaded band, and the
    hover value says "(partial window)". ``y_min``/``y_max``: fixed ends of the y axis
    (``None``: fit the data; the default 0 keeps rates and latencies anchored at zero).
    ``x_time``: x is unix seconds (date ticks). ``x_labels``: text shown for each x on
    hover (a run id in a trend). ``points``: draw every point (sparse series)."""
    _check_id(chart_id)
    xs = [float(v) for v in x]
    if any(not math.isfinite(v) for v in xs):
        raise ValueError(f"{chart_id}: x values must be finite numbers")
    if any(b < a for a, b in zip(xs, xs[1:])):
        raise ValueError(f"{chart_id}: x values must be in ascending order")
    spec_series: List[Dict[str, Any]] = []
    all_vals: List[Optional[float]] = []
    for k, s in enumerate(series):
        vals = [number_or_none(v) for v in s.values]
        if len(vals) != len(xs):
            raise ValueError(f"{chart_id}: series {s.name!r} has {len(vals)} values for {len(xs)} x values")
        all_vals.extend(vals)
        entry: Dict[str, Any] = {"name": str(s.name), "dashed": bool(s.dashed), "color": s.color}
        if partial_from is not None and any(xv >= partial_from for xv in xs):
            first_partial = next(i for i, xv in enumerate(xs) if xv >= partial_from)
            main = [v if i < first_partial else None for i, v in enumerate(vals)]
            part: List[Optional[float]] = [v if i >= first_partial else None for i, v in enumerate(vals)]
            # joined to the last full point so the dashed segment continues the line
            last_full = next((i for i in range(first_partial - 1, -1, -1) if vals[i] is not None), None)
            if last_full is not None:
                part[last_full] = vals[last_full]
            entry["values"], entry["partial_values"] = main, part
        else:
            entry["values"] = vals
        spec_series.append(entry)
    has_data = bool(xs) and any(v is not None for v in all_vals)
    spec = {
        "kind": "time",
        "x": xs,
        "x_label": x_label,
        "x_time": bool(x_time),
        "x_labels": None if x_labels is None else [str(v) for v in x_labels],
        "y_unit": y_unit,
        "y_label": y_label if y_label is not None else y_unit,
        "series": spec_series,
        "markers": [{"x": float(m.x), "label": str(m.label)} for m in markers if number_or_none(m.x) is not None],
        "budgets": [{"y": float(b.y), "label": str(b.label)} for b in budgets if number_or_none(b.y) is not None],
        "partial_from": None if partial_from is None else float(partial_from),
        "y_min": y_min,
        "y_max": y_max,
        "colors": list(COLORS),
        "points": bool(points),
        "height": int(height),
    }
    notes = _budget_notes(budgets, all_vals, y_unit)
    notes += [f"marker at {_x_text(m.x, x_time)}: {m.label}" for m in markers]
    return _figure(chart_id, title, spec, has_data, notes)


def spectrum_x(percentile: float) -> float:
    """The spectrum's x for a percentile: ``1/(1-p)`` (90 % -> 10, 99 % -> 100, ...)."""
    return 1.0 / (1.0 - percentile / 100.0)


def spectrum_chart(
    chart_id: str,
    title: str,
    series: Sequence[SpectrumSeries],
    *,
    y_unit: str = "ms",
    y_label: Optional[str] = None,
    budgets: Sequence[Budget] = (),
    markers: Sequence[Marker] = (),
    height: int = 300,
) -> str:
    """A ``<figure>`` with the HDR percentile spectrum: x is ``1/(1-p)`` on a log axis
    labelled in percent (0 %, 90 %, 99 %, 99.9 % ...), the max (p = 100) one decade past the
    highest percentile of any series and labelled "max". Several series (two runs) share
    the axis; each keeps its own points (gaps between them are spanned)."""
    _check_id(chart_id)
    finite = [spectrum_x(p) for s in series for p in s.percentiles if 0 <= p < 100]
    max_x = 10 * max(finite) if finite else 10.0
    grid: Dict[float, str] = {}
    per: List[Dict[float, Optional[float]]] = []
    for s in series:
        if len(s.percentiles) != len(s.values):
            raise ValueError(f"{chart_id}: series {s.name!r}: {len(s.values)} values for {len(s.percentiles)} percentiles")
        pts: Dict[float, Optional[float]] = {}
        for p, v in zip(s.percentiles, s.values):
            p = float(p)
            if not 0 <= p <= 100:
                raise ValueError(f"{chart_id}: percentile {p} outside 0–100")
            xv = max_x if p >= 100 else round(spectrum_x(p), 9)
            grid[xv] = "max" if p >= 100 else f"p{_pct_text(p)}"
            pts[xv] = number_or_none(v)
        per.append(pts)
    xs = sorted(grid)
    spec_series = [{"name": str(s.name), "dashed": bool(s.dashed), "color": s.color,
                    "values": [pts.get(xv) for xv in xs]} for s, pts in zip(series, per)]
    all_vals = [v for pts in per for v in pts.values()]
    spec = {
        "kind": "spectrum",
        "x": xs,
        "x_label": "percentile (log scale of 1/(1-p); last point: max)",
        "x_time": False,
        "x_labels": [grid[xv] for xv in xs],
        "y_unit": y_unit,
        "y_label": y_label if y_label is not None else y_unit,
        "series": spec_series,
        "markers": [{"x": spectrum_x(m.x) if m.x < 100 else max_x, "label": str(m.label)} for m in markers],
        "budgets": [{"y": float(b.y), "label": str(b.label)} for b in budgets if number_or_none(b.y) is not None],
        "partial_from": None,
        "y_min": 0.0,
        "y_max": None,
        "colors": list(COLORS),
        "span_gaps": True,
        "points": False,
        "height": int(height),
    }
    has_data = bool(xs) and any(v is not None for v in all_vals)
    return _figure(chart_id, title, spec, has_data, _budget_notes(budgets, all_vals, y_unit))


def _pct_text(p: float) -> str:
    """99.9 -> '99.9', 99.99001 -> '99.99', 50 -> '50' (enough digits to tell nines apart)."""
    if p >= 100:
        return "100"
    digits = max(1, min(6, math.ceil(-math.log10(max(1e-9, 100 - p))) + 1))
    text = f"{p:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
