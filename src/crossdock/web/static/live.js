// Live regions of panel pages. An element with data-live="BLOCK" is refreshed every data-every seconds (default
// 5) with that block of the same page, which the server renders alone when asked with the X-Live-Block header.
// Pages are complete without this script; it only saves reloading them. Refreshing pauses while the tab is
// hidden and while keyboard focus is inside the region, so that nobody loses their place.
(function () {
  "use strict";

  function refresh(region) {
    if (document.hidden || region.contains(document.activeElement)) {
      return;
    }
    fetch(window.location.href, {
      headers: { "X-Live-Block": region.dataset.live },
      credentials: "same-origin",
      cache: "no-store",
    })
      .then(function (response) {
        if (response.status === 401) {
          window.location.reload();
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (typeof html === "string" && !region.contains(document.activeElement)) {
          region.innerHTML = html;
          region.dataset.refreshedAt = new Date().toISOString();
        }
      })
      .catch(function () {
        region.dataset.offline = "true";
      });
  }

  document.querySelectorAll("[data-live]").forEach(function (region) {
    var seconds = Math.max(2, parseInt(region.dataset.every || "5", 10) || 5);
    window.setInterval(function () {
      refresh(region);
    }, seconds * 1000);
  });
})();
