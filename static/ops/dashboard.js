// Draws the operations dashboard's charts with Chart.js (static/vendor/chartjs) from the JSON
// block the page carries (#dashboard-charts): the CSP allows no inline script, and a JSON data
// block is not executed. Each <canvas data-chart="name"> gets the chart of that name.
(function () {
  "use strict";

  const PALETTE = ["#2f5bd3", "#e0813a", "#1f7a4d", "#a02828", "#7a4fc9", "#0f8a9d", "#8a5a00"];

  const FORMATS = {
    usd: (v) => "$" + Number(v).toPrecision(3),
    percent: (v) => Math.round(v * 100) + "%",
    ms: (v) => Math.round(v) + " ms",
    count: (v) => String(v),
    chars: (v) => String(Math.round(v)),
  };

  function config(spec) {
    const format = FORMATS[spec.format] || FORMATS.count;
    const line = spec.type === "line";
    return {
      type: spec.type,
      data: {
        labels: spec.labels,
        datasets: spec.datasets.map((ds, i) => ({
          label: ds.label,
          data: ds.data,
          backgroundColor: PALETTE[i % PALETTE.length] + (line ? "33" : "cc"),
          borderColor: PALETTE[i % PALETTE.length],
          borderWidth: line ? 2 : 0,
          pointRadius: line ? 2 : 0,
          spanGaps: true, // a day without answers has no rate: draw through it
        })),
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: spec.stacked, ticks: { maxRotation: 0, autoSkip: true } },
          y: {
            stacked: spec.stacked,
            beginAtZero: true,
            ticks: { callback: (value) => format(value) },
          },
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: {
            callbacks: {
              label: (ctx) =>
                ctx.dataset.label + ": " + (ctx.parsed.y === null ? "-" : format(ctx.parsed.y)),
            },
          },
        },
      },
    };
  }

  function draw() {
    const source = document.getElementById("dashboard-charts");
    if (!source || typeof window.Chart === "undefined") return;
    const specs = JSON.parse(source.textContent);
    const drawn = {};
    document.querySelectorAll("canvas[data-chart]").forEach((canvas) => {
      const spec = specs[canvas.dataset.chart];
      if (spec) drawn[canvas.dataset.chart] = new window.Chart(canvas, config(spec));
    });
    window.ragappCharts = drawn; // for the browser test and for poking at in devtools
    document.getElementById("dashboard").dataset.chartsReady = String(Object.keys(drawn).length);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
