// Times in the viewer's own zone: the page says UTC (what it shows without scripts); this
// rewrites each <time data-local> with the browser's zone. Nothing else runs here.
"use strict";
function handoverLocalTimes(root) {
  const fmt = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", timeZoneName: "short",
  });
  for (const el of root.querySelectorAll("time[data-local]")) {
    const at = new Date(el.getAttribute("datetime"));
    if (!isNaN(at)) { el.textContent = fmt.format(at); el.title = el.getAttribute("datetime"); }
    el.removeAttribute("data-local");
  }
}
document.addEventListener("DOMContentLoaded", () => handoverLocalTimes(document));
document.addEventListener("htmx:afterSwap", (e) => handoverLocalTimes(e.target));
