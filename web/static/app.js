// minishop's only script (served from this origin; the CSP allows no other).
// 1. A form marked data-once can be sent once: its button is disabled after
//    the first submit, so a double click sends one request (the server
//    would place one order anyway: the form carries one Idempotency-Key).
// 2. An element with data-live follows its server-sent events: each
//    `update` replaces its content; `end` replaces it a last time and stops.
// 3. A list with data-feed puts each `entry` event it receives on top,
//    keeping the newest 200.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-once")) return;
  if (form.dataset.sent === "1") {
    event.preventDefault();
    return;
  }
  form.dataset.sent = "1";
  for (const button of form.querySelectorAll("button")) {
    button.setAttribute("aria-disabled", "true");
    button.classList.add("busy");
  }
});

function follow(element) {
  const source = new EventSource(element.dataset.live);
  source.addEventListener("update", (e) => {
    element.innerHTML = e.data;
  });
  source.addEventListener("end", (e) => {
    if (e.data && e.data !== "expired") element.innerHTML = e.data;
    source.close();
    element.dataset.ended = "1";
    for (const form of document.querySelectorAll("form.cancel")) form.remove();
  });
  // On an error the browser reconnects by itself; nothing to do.
}

function feed(list) {
  const source = new EventSource(list.dataset.feed);
  source.addEventListener("entry", (e) => {
    list.insertAdjacentHTML("afterbegin", e.data);
    while (list.children.length > 200) list.lastElementChild.remove();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const element of document.querySelectorAll("[data-live]")) follow(element);
  for (const list of document.querySelectorAll("[data-feed]")) feed(list);
});
