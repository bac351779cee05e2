"use strict";
// While the page says something is still moving (<body data-refresh="seconds">), fetch it again and
// swap in each [data-live] region whose HTML from the server changed. Regions that did not change stay
// as they are, so a playing video or an open <details> is left alone. Stops once nothing moves.
(() => {
  const seconds = Number(document.body.dataset.refresh);
  if (!seconds) return;
  const served = new Map();
  document.querySelectorAll("[data-live]").forEach((el) => served.set(el.id, el.outerHTML));

  const tick = async () => {
    let again = true;
    try {
      const response = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
      if (response.redirected) {
        again = false; // signed out meanwhile: the next click shows the login page
      } else if (response.ok) {
        const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
        fresh.querySelectorAll("[data-live]").forEach((el) => {
          const html = el.outerHTML;
          const current = document.getElementById(el.id);
          if (current && served.get(el.id) !== html) {
            current.replaceWith(document.adoptNode(el));
            served.set(el.id, html);
          }
        });
        again = Boolean(fresh.body.dataset.refresh);
      }
    } catch {
      // The service is restarting or the network blinked: try again at the next tick.
    }
    if (again) {
      setTimeout(tick, seconds * 1000);
    } else {
      delete document.body.dataset.refresh;
    }
  };
  setTimeout(tick, seconds * 1000);
})();
