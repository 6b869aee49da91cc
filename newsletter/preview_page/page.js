// The preview page: tabs, the width switch, and live reload over server-sent events.
// After each build the server sends {"version": n, "ok": bool}; the page fetches its panels
// again and loads the new email into a hidden frame, scrolls it to where the reader was,
// then swaps it in, so the email never flashes blank and the place is kept.
(() => {
  "use strict";

  const body = document.body;
  const box = document.getElementById("frame-box");
  let version = Number(body.dataset.version);
  let busy = false;
  let again = false;

  // --- tabs (WAI-ARIA tabs pattern: arrow keys move between tabs)
  const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
  function select(tab) {
    for (const other of tabs) {
      const chosen = other === tab;
      other.setAttribute("aria-selected", String(chosen));
      other.tabIndex = chosen ? 0 : -1;
      document.getElementById(other.getAttribute("aria-controls")).hidden = !chosen;
    }
  }
  tabs.forEach((tab, index) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(index + step + tabs.length) % tabs.length];
      select(next);
      next.focus();
    });
  });

  // --- width switch
  for (const input of document.querySelectorAll('input[name="width"]')) {
    input.addEventListener("change", () => {
      box.style.width = input.value + "px";
    });
  }

  // --- live reload
  function activeFrame() {
    return box.querySelector("iframe[data-active]");
  }

  function swapIn(nextVersion) {
    const old = activeFrame();
    let x = 0;
    let y = 0;
    try {
      x = old.contentWindow.scrollX;
      y = old.contentWindow.scrollY;
    } catch (error) {
      // The old frame showed an error page or nothing: start at the top.
    }
    const frame = document.createElement("iframe");
    frame.className = "email-frame loading";
    frame.title = old.title;
    frame.setAttribute("sandbox", old.getAttribute("sandbox"));
    frame.setAttribute("aria-hidden", "true");
    return new Promise((resolve) => {
      frame.addEventListener("load", () => {
        try {
          frame.contentWindow.scrollTo(x, y);
        } catch (error) {
          // Nothing to scroll.
        }
        frame.classList.remove("loading");
        frame.removeAttribute("aria-hidden");
        frame.setAttribute("data-active", "");
        frame.dataset.version = String(nextVersion);
        old.remove();
        resolve();
      }, { once: true });
      frame.src = "/_preview/email.html?v=" + nextVersion;
      box.appendChild(frame);
    });
  }

  // The newest build the server announced: {version, ok}. Bursts of saves coalesce: while one
  // refresh runs, later announcements only mark that another round is needed.
  let latest = null;

  async function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      do {
        again = false;
        const target = latest;
        // Fetch the panels and load the new email at the same time.
        const parts = fetch("/_preview/parts.json", { cache: "no-store" }).then((r) => r.json());
        const swapped = target.ok ? swapIn(target.version) : Promise.resolve();
        const data = await parts;
        for (const [id, html] of Object.entries(data.parts)) {
          const element = document.getElementById(id);
          if (element) element.innerHTML = html;
        }
        document.title = data.title;
        if (!data.ok) body.dataset.state = "error";
        await swapped;
        if (data.ok) body.dataset.state = "ok";
        version = Math.max(target.version, data.version);
        body.dataset.version = String(version);
        if (latest.version !== version) again = true;
      } while (again);
    } catch (error) {
      // The server is restarting or gone; the event stream reconnects and we try again then.
      console.warn("preview: could not refresh", error);
    } finally {
      busy = false;
    }
  }

  const events = new EventSource("/_preview/events");
  events.addEventListener("build", (event) => {
    latest = JSON.parse(event.data);
    if (latest.version !== version) refresh();
  });
})();
