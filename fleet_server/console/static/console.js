// nanofleet console: draws the device metrics with uPlot, keeps them current when htmx
// swaps in a fresh fragment, and asks before forms marked data-confirm are sent.
(function () {
  "use strict";
  const plots = new Map();
  const colours = ["#0b5cad", "#c0392b", "#2a9d8f", "#8a5cc2"];

  function data() {
    const el = document.getElementById("metrics-data");
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }

  function draw() {
    const d = data();
    if (!d || typeof uPlot === "undefined") return;
    document.querySelectorAll(".plot[data-series]").forEach(function (el) {
      const names = el.dataset.series.split(",");
      const rows = [d.ts || []].concat(names.map(function (n) { return d[n] || []; }));
      const has = rows[0].length > 0;
      el.dataset.points = String(rows[0].length);
      let plot = plots.get(el);
      if (!has) {
        if (plot) { plot.destroy(); plots.delete(el); }
        el.innerHTML = '<p class="none">No data in this window yet.</p>';
        return;
      }
      if (plot) { plot.setData(rows); return; }
      el.innerHTML = "";
      const opts = {
        width: Math.max(280, el.clientWidth - 4), height: 170,
        series: [{}].concat(names.map(function (n, i) {
          return { label: n.replace(/_/g, " "), stroke: colours[i % colours.length], width: 2,
                   fill: names.length === 1 ? "rgba(11,92,173,0.08)" : undefined, spanGaps: true };
        })),
        // Times in UTC, as everywhere on the console's pages.
        // Rates and sizes read best from zero.
        scales: { y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
        axes: [{ values: function (u, splits) {
                   const short = splits.length > 1 && splits[splits.length - 1] - splits[0] < 600;
                   return splits.map(function (t) {
                     return new Date(t * 1000).toISOString().slice(11, short ? 19 : 16);
                   });
                 } },
               { label: el.dataset.unit, size: 60 }],
        legend: { show: names.length > 1 },
        cursor: { drag: { x: true, y: false } },
      };
      plot = new uPlot(opts, rows, el);
      plots.set(el, plot);
    });
  }

  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSettle", draw);
  window.addEventListener("resize", function () {
    plots.forEach(function (plot, el) { plot.setSize({ width: Math.max(280, el.clientWidth - 4), height: 170 }); });
  });
  // The device page's judging and mute options live outside its refreshed part; a
  // "mute" or "right" button's form takes them when it is sent (without scripts a mute
  // sends its own: 7 days, here; a "right" the alert's own category).
  function put(form, name, value) {
    let field = form.querySelector('input[name="' + name + '"]');
    if (!field) {
      field = document.createElement("input");
      field.type = "hidden";
      field.name = name;
      form.appendChild(field);
    }
    field.value = value;
  }
  function muteOptions(form) {
    const opts = document.getElementById("mute-options");
    if (!opts) return;
    put(form, "days", opts.elements.days.value);
    put(form, "all_devices", opts.elements.all_devices.checked ? "on" : "");
    put(form, "any_source", opts.elements.any_source.checked ? "on" : "");
    put(form, "reason", opts.elements.reason.value);
  }
  function verdictOptions(form) {
    const opts = document.getElementById("verdict-options");
    if (opts && opts.elements.label.value.trim()) put(form, "label", opts.elements.label.value.trim());
  }
  document.addEventListener("submit", function (ev) {
    const form = ev.target;
    if (!(form instanceof HTMLFormElement)) return;
    if (form.id === "mute-options" || form.id === "verdict-options") {  // not sent by themselves
      ev.preventDefault();
      return;
    }
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      ev.preventDefault();
      return;
    }
    if (form.classList.contains("mute")) muteOptions(form);
    if (form.classList.contains("right")) verdictOptions(form);
  });
})();
