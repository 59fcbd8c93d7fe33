// Bar charts for the analytics pages (course dashboard, /admin, /me), drawn with Chart.js
// (npm chart.js, served from /static/vendor/chart.js/). One chart per <canvas>; updating a
// chart replaces its labels and values in place (no new canvas, no animation), so a live
// page redraws without flicker and a test can read what is drawn through Chart.getChart().
(function () {
  "use strict";

  var COLORS = ["#2f6fdf", "#3fb950", "#f0883e", "#a371f7", "#db61a2", "#8b949e"];

  function options(config) {
    var value = { stacked: !!config.stacked, beginAtZero: true, max: config.max,
                  ticks: { precision: config.decimals ? undefined : 0 } };
    var category = { stacked: !!config.stacked, ticks: { autoSkip: true, maxRotation: 0 } };
    return {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      indexAxis: config.horizontal ? "y" : "x",
      plugins: {
        legend: { display: (config.datasets || []).length > 1 },
        title: { display: !!config.title, text: config.title || "" },
      },
      // The value axis is y, or x for horizontal bars.
      scales: config.horizontal ? { x: value, y: category } : { x: category, y: value },
    };
  }

  function datasets(config) {
    var list = config.datasets || [{ label: config.label || "", values: config.values || [] }];
    return list.map(function (d, i) {
      return { label: d.label, data: d.values.map(Number), backgroundColor: d.color || COLORS[i % COLORS.length] };
    });
  }

  // bar(canvas, {labels, values, label?, title?, horizontal?, max?, decimals?} or {labels, datasets: [...]})
  function bar(canvas, config) {
    var existing = window.Chart.getChart(canvas);
    if (existing) {
      existing.data.labels = config.labels;
      var next = datasets(config);
      existing.data.datasets.forEach(function (d, i) { if (next[i]) d.data = next[i].data; });
      if (next.length !== existing.data.datasets.length) existing.data.datasets = next;
      existing.update("none");
      return existing;
    }
    return new window.Chart(canvas, { type: "bar", data: { labels: config.labels, datasets: datasets(config) },
                                      options: options(config) });
  }

  function dayLabel(iso) { return iso.slice(5); } // MM-DD
  function bucketLabel(b) { return b.lower + "–" + b.upper; }

  window.LmsCharts = { bar: bar, dayLabel: dayLabel, bucketLabel: bucketLabel };
})();
