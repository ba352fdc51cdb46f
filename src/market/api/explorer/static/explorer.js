// verimarket explorer: refresh the live part of a page every few seconds.
//
// The server renders (and escapes) every page; this only fetches the same URL again and
// swaps the #live element for the fresh one. Off when the box is unticked (remembered),
// paused while the tab is hidden, and it backs off when the server answers with an error.
(function () {
  "use strict";
  var PERIOD_MS = 3000;
  var box = document.getElementById("auto-refresh");
  var live = document.getElementById("live");
  var stamp = document.getElementById("refreshed");
  if (!box || !live) { return; }
  var KEY = "verimarket.explorer.autoRefresh";
  box.checked = window.localStorage.getItem(KEY) !== "off";
  box.addEventListener("change", function () {
    window.localStorage.setItem(KEY, box.checked ? "on" : "off");
  });
  var delay = PERIOD_MS;
  var busy = false;

  function refresh() {
    if (!box.checked || document.hidden || busy || live.contains(document.activeElement)) { return schedule(); }
    busy = true;
    fetch(window.location.href, { headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        if (fresh) { live.replaceWith(fresh); live = fresh; }
        if (stamp) { stamp.textContent = "updated " + new Date().toLocaleTimeString(); }
        delay = PERIOD_MS;
      })
      .catch(function (err) {
        if (stamp) { stamp.textContent = "refresh failed (" + err.message + "), retrying"; }
        delay = Math.min(delay * 2, 60000);
      })
      .finally(function () { busy = false; schedule(); });
  }

  function schedule() { window.setTimeout(refresh, delay); }
  schedule();
})();
