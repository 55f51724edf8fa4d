// The operator console's only script of its own: the session curve (uPlot), drawn from
// the data the page carries (#curve-data) and drawn again when a live update replaces it.
"use strict";

(function () {
  let chart = null;

  function draw() {
    const holder = document.getElementById("chart");
    const source = document.getElementById("curve-data");
    if (!holder || !source || typeof uPlot === "undefined") return;
    const curve = JSON.parse(source.dataset.curve || "{}");
    const data = [curve.t || [], curve.energy_wh || [], curve.power_w || []];
    if (chart) {
      chart.setData(data);
      return;
    }
    const width = Math.max(320, Math.min(holder.clientWidth || 900, 1100));
    chart = new uPlot({
      width: width,
      height: 300,
      scales: { x: { time: false } },
      axes: [
        { label: "seconds since the start" },
        { scale: "Wh", label: "energy (Wh)" },
        { scale: "W", side: 1, label: "power (W)", grid: { show: false } },
      ],
      series: [
        { label: "s" },
        { label: "energy Wh", scale: "Wh", stroke: "#1769aa", width: 2, spanGaps: true },
        { label: "power W", scale: "W", stroke: "#c0392b", width: 1, spanGaps: true },
      ],
    }, data, holder);
    holder.dataset.points = String(data[0].length);
  }

  function redraw() {
    draw();
    const holder = document.getElementById("chart");
    const source = document.getElementById("curve-data");
    if (holder && source) {
      const curve = JSON.parse(source.dataset.curve || "{}");
      holder.dataset.points = String((curve.t || []).length);
    }
  }

  document.addEventListener("DOMContentLoaded", redraw);
  document.addEventListener("htmx:afterSettle", redraw);
})();
